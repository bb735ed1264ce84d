package gateway

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"gatehouse/authfail"
	"gatehouse/connlimit"
	"gatehouse/layout"
	"gatehouse/lifecycle"
	"gatehouse/revocation"
	"gatehouse/shmem"
	"gatehouse/ticket"
	"gatehouse/tokenshadow"
	"gatehouse/users"
)

// Main runs proxyd with command-line args until ctx is done. apid must have started once
// (it makes the generation file, keys and certificate). It logs "listening" with the address
// once the port accepts, after "metrics listening" with the address of /metrics (see
// --metrics-listen and metrics.go). It attaches apid's page of generation counters read-only
// (shmem.Dial), and follows a new one (shmem.Cache.Watch). SIGHUP re-reads the TLS pair, authkey.pub and csrf.key and
// drops the token and user caches (package lifecycle: sd_notify, drain).
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
	metricsListen := fl.String("metrics-listen", DefaultMetricsListen, "loopback HTTP address of /metrics (empty: none)")
	hostOnly := fl.String("host-cookie-only", DefaultHostCookieOnly, "comma-separated places that take only the __Host- ticket cookie, not the legacy <prefix>AuthCookie: upstream, auth, pages (empty: the legacy cookie everywhere; /api2 always takes it)")
	tokenCache := fl.Bool("token-cache", true, "cache verified API token secrets; false makes every token check read token.shadow's state and run crypt (about 1 ms): a benchmark and debugging switch, never for production")
	apidTimeout := fl.Duration("apid-timeout", DefaultApidTimeout, "a call to apid without an answer for this long makes proxyd check that apid is alive (GET /ping, which gets as long); no answer to that either: 503 naming apid")
	apidMaxWait := fl.Duration("apid-max-wait", DefaultApidMaxWait, "the most a call to apid may take while apid is alive; keep it above apid's --lock-timeout, so that apid's own 503 naming a lock comes first")
	var lim Limits
	lim.flags(fl)
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *apidTimeout <= 0 || *apidMaxWait < *apidTimeout {
		return fmt.Errorf("checking --apid-timeout %v and --apid-max-wait %v: want 0 < timeout <= max wait", *apidTimeout, *apidMaxWait)
	}
	if err := lim.check(); err != nil {
		return err
	}
	if *metricsListen != "" {
		if err := checkLoopback(*metricsListen); err != nil {
			return err
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	tp, err := authfail.ParseTrusted(*trusted)
	if err != nil {
		return err
	}
	// Trusted proxies carry many clients over their connections: not held to the per-client cap.
	conns, err := connlimit.New(connlimit.Options{Max: lim.MaxConns, PerClient: lim.MaxConnsPerClient, Exempt: tp, Log: log})
	if err != nil {
		return err
	}
	inflight, err := connlimit.New(connlimit.Options{Max: lim.MaxRequests, PerClient: lim.MaxRequestsPerClient, Exempt: tp, What: "requests", Log: log})
	if err != nil {
		return err
	}
	lim.checkFiles(log)
	var up *url.URL
	if *upstream != "" {
		if up, err = url.Parse(*upstream); err != nil || up.Host == "" {
			return fmt.Errorf("parsing --upstream %q: want an absolute URL", *upstream)
		}
	}
	// apid's page of generation counters, read-only; without apid, a private page until apid
	// serves it (Watch below follows it).
	gen, err := shmem.Dial(d.ShmemSocket())
	if err != nil {
		log.Warn("config version page not attached: caches are re-read from disk at least every health check until apid serves it", "err", err)
		gen = shmem.Private(err)
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
	var cert certificate
	if err := cert.load(d.ProxyCert(), d.ProxyKey()); err != nil {
		return err
	}
	tokens, err := tokenshadow.Open(tokenshadow.Options{Path: d.TokenShadow(), LockPath: d.Lock("token.shadow"), Generations: gen, NoCache: !*tokenCache})
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
	tickets := ticket.NewCache(verifier, 10_000)
	reg := newRegistry()
	var metrics *Metrics // nil counts nothing
	if *metricsListen != "" {
		if metrics, err = NewMetrics(reg, MetricSources{Tokens: tokens, Tickets: tickets, Generations: gen, Conns: conns, Requests: inflight}); err != nil {
			return err
		}
	}
	s, err := New(Options{
		Prefix: *prefix, Tickets: tickets, Metrics: metrics, CSRF: csrf, Tokens: tokens, Users: us,
		Revocations: rev, Generations: gen, Guard: guard, Trusted: tp, ApidSocket: d.Socket(), Upstream: up,
		ApidTimeout: *apidTimeout, ApidMaxWait: *apidMaxWait,
		Version: Version{Version: "3.4.1", Release: "3.4", Repoid: "gatehouse"}, Log: log, HostCookieOnly: splitList(*hostOnly),
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
	// A new page (apid restarted without the service manager's store): proxyd follows it.
	go gen.Watch(wctx, shmem.WatchOptions{Socket: d.ShmemSocket(), Report: func(e shmem.Event) { e.Log(log) }})
	var msrv *http.Server
	if *metricsListen != "" {
		if msrv, err = startMetrics(*metricsListen, reg, log); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		if msrv != nil {
			msrv.Close()
		}
		return fmt.Errorf("listening on %s: %w", *listen, err)
	}
	ln = conns.Listener(ln)
	srv := lim.server(requestLimit(inflight, s), tlsConfig(cert.get), slog.NewLogLogger(log.Handler(), slog.LevelWarn))
	// SIGHUP: the TLS pair first, then keys and caches; the new pair serves only if both load.
	reload := func() error {
		next, err := loadCertificate(d.ProxyCert(), d.ProxyKey())
		if err != nil {
			return err
		}
		if err := s.Reload(); err != nil {
			return err
		}
		cert.p.Store(next)
		return nil
	}
	if msrv != nil {
		// Registered after the generation file's Close, so it runs before it: /metrics reads
		// the shared counters.
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			msrv.Shutdown(sctx)
		}()
	}
	log.Info("listening", "addr", ln.Addr().String())
	// Serve returns only once the handlers have drained (or after 5 s), so that the deferred
	// closes (the shared-memory mapping above all) never pull memory from under a request.
	return lifecycle.Serve(ctx, srv, ln, lifecycle.Options{TLS: true, Reload: reload, Log: log})
}

// certificate is the TLS pair proxyd serves, replaced whole on reload: handshakes that start
// after a reload get the new pair, connections already open keep theirs.
type certificate struct {
	p atomic.Pointer[tls.Certificate]
}

func (c *certificate) load(certPath, keyPath string) error {
	next, err := loadCertificate(certPath, keyPath)
	if err != nil {
		return err
	}
	c.p.Store(next)
	return nil
}

func (c *certificate) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.p.Load(), nil }

// loadCertificate reads a PEM certificate chain and its key; it fails when they do not match.
func loadCertificate(certPath, keyPath string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("loading TLS certificate %s with key %s: %w", certPath, keyPath, err)
	}
	return &c, nil
}

// splitList splits a comma-separated flag value; blanks around names and empty names go.
func splitList(v string) []string {
	var out []string
	for f := range strings.SplitSeq(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
