package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"gatehouse/authfail"
	"gatehouse/layout"
	"gatehouse/revocation"
	"gatehouse/shmem"
	"gatehouse/ticket"
	"gatehouse/tokenshadow"
	"gatehouse/users"
)

// Main runs proxyd with command-line args until ctx is done. apid must have started once
// (it makes the generation file, keys and certificate). It logs "listening" with the address
// once the port accepts.
func Main(ctx context.Context, args []string, stderr io.Writer) error {
	fl := flag.NewFlagSet("proxyd", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var d layout.Dirs
	fl.StringVar(&d.Config, "config-dir", layout.DefaultConfigDir, "configuration directory")
	fl.StringVar(&d.Run, "run-dir", layout.DefaultRunDir, "runtime directory (apid socket, generation file)")
	listen := fl.String("listen", ":8007", "HTTPS address")
	upstream := fl.String("upstream", "", "URL of the application behind Gatehouse (empty: none)")
	trusted := fl.String("trusted-proxies", "", "comma-separated addresses or CIDRs whose X-Forwarded-For is believed")
	authLog := fl.String("auth-log", "/var/log/gatehouse/auth.log", "file for failed authentications (fail2ban)")
	burst := fl.Int("fail-burst", 10, "failed authentications a client may make before 429")
	refill := fl.Duration("fail-refill", 6*time.Second, "one failure is forgiven per this interval")
	delay := fl.Duration("fail-delay", 3*time.Second, "how long a failed authentication's answer is held back (negative: none)")
	prefix := fl.String("prefix", "PBS", "ticket and cookie product prefix")
	if err := fl.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	tp, err := authfail.ParseTrusted(*trusted)
	if err != nil {
		return err
	}
	var up *url.URL
	if *upstream != "" {
		if up, err = url.Parse(*upstream); err != nil || up.Host == "" {
			return fmt.Errorf("parsing --upstream %q: want an absolute URL", *upstream)
		}
	}
	gen, err := shmem.Open(d.Generations())
	if err != nil {
		return fmt.Errorf("%w (has apid started?)", err)
	}
	defer gen.Close()
	verifier, err := ticket.LoadKeyRing(d.AuthPub(), d.AuthRetired(), time.Now())
	if err != nil {
		return err
	}
	csrf, err := ticket.LoadCSRFKey(d.CSRFKey())
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(d.ProxyCert(), d.ProxyKey())
	if err != nil {
		return fmt.Errorf("loading TLS certificate %s: %w", d.ProxyCert(), err)
	}
	tokens, err := tokenshadow.Open(tokenshadow.Options{Path: d.TokenShadow(), LockPath: d.Lock("token.shadow"), Generations: gen})
	if err != nil {
		return err
	}
	us, err := users.Open(users.Options{Path: d.UserCfg(), LockPath: d.Lock("user.cfg"), Generations: gen})
	if err != nil {
		return err
	}
	rev, err := revocation.Open(revocation.Options{Path: d.Revocations(), Generations: gen})
	if err != nil {
		return err
	}
	guard, err := authfail.Open(authfail.Options{LogPath: *authLog, Burst: *burst, Refill: *refill, Delay: *delay})
	if err != nil {
		return err
	}
	defer guard.Close()
	s, err := New(Options{
		Prefix: *prefix, Tickets: ticket.NewCache(verifier, 10_000), CSRF: csrf, Tokens: tokens, Users: us,
		Revocations: rev, Generations: gen, Guard: guard, Trusted: tp, ApidSocket: d.Socket(), Upstream: up,
		Version: Version{Version: "3.4.1", Release: "3.4", Repoid: "gatehouse"}, Log: log,
		LoadKeys: func() (*ticket.Verifier, *ticket.CSRFKey, error) {
			v, err := ticket.LoadKeyRing(d.AuthPub(), d.AuthRetired(), time.Now())
			if err != nil {
				return nil, nil, err
			}
			k, err := ticket.LoadCSRFKey(d.CSRFKey())
			return v, k, err
		},
	})
	if err != nil {
		return err
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	report := func(err error) { log.Error("watching config", "err", err) }
	go tokens.Watch(wctx, tokenshadow.WatchInterval, report)
	go us.Watch(wctx, users.WatchInterval, report)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", *listen, err)
	}
	srv := &http.Server{
		Handler:           s,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// Main returns only once Shutdown has drained the handlers (or given up after 5 s), so that
	// the deferred closes (the shared-memory mapping above all) never pull memory from under a
	// running request.
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("listening", "addr", ln.Addr().String())
	if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving %s: %w", *listen, err)
	}
	<-drained
	return nil
}
