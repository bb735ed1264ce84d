package gateway

// What proxyd's public listener allows an unauthenticated client: how long it may take, how
// big its request header may be, how many connections it may hold, and which TLS it may speak.
// The numbers and why are in the package comment (# Limits) and in README.md.

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"gatehouse/connlimit"
	"gatehouse/reply"
)

// Defaults of proxyd's limit flags. The systemd unit's LimitNOFILE, MemoryMax and GOMEMLIMIT
// are chosen for these (e2e's TestUnitLimits checks they agree).
const (
	DefaultReadHeaderTimeout    = 10 * time.Second
	DefaultReadTimeout          = 30 * time.Second
	DefaultWriteTimeout         = 60 * time.Second
	DefaultIdleTimeout          = 30 * time.Second
	DefaultMaxHeaderBytes       = 16 << 10
	DefaultMaxConns             = 512
	DefaultMaxConnsPerClient    = 64
	DefaultMaxRequests          = 512
	DefaultMaxRequestsPerClient = 64
	// DefaultMaxStreams is the HTTP/2 streams one connection may have open at once: Go's
	// default is 250, nginx's 128; 100 is what RFC 9113 asks a server to allow at least.
	DefaultMaxStreams = 100
)

// UpstreamMaxConns caps proxyd's connections to the upstream application: authenticated
// requests (which leave the requests-in-flight cap once authenticated) beyond it wait for one.
const UpstreamMaxConns = 1024

// FilesNeeded is how many file descriptors proxyd may hold with these caps: one per client
// connection, one to apid per request in flight (an unauthenticated or API request holds its
// slot until answered), UpstreamMaxConns, and 128 besides (listeners, the generation file,
// the auth log, config reads, /metrics scrapes, idle connections to apid).
func (l *Limits) FilesNeeded() int {
	if l.MaxConns == 0 || l.MaxRequests == 0 {
		return 0 // unbounded
	}
	return l.MaxConns + l.MaxRequests + UpstreamMaxConns + 128
}

// Limits are proxyd's limits on its public listener (flags of the same names).
type Limits struct {
	ReadHeaderTimeout time.Duration // TLS handshake and request header
	ReadTimeout       time.Duration // TLS handshake, header and body of a request
	WriteTimeout      time.Duration // from the end of the header to the end of the answer
	IdleTimeout       time.Duration // a keep-alive connection between requests, an idle HTTP/2 connection
	MaxHeaderBytes    int
	MaxConns          int // open connections in all; 0: no cap
	MaxConnsPerClient int // open connections per client address (IPv6: per /64); 0: no cap
	// Requests in flight until authenticated (see requestLimit), in all and per client.
	MaxRequests          int
	MaxRequestsPerClient int
}

// DefaultLimits are the limits proxyd's flags default to.
func DefaultLimits() Limits {
	return Limits{
		ReadHeaderTimeout: DefaultReadHeaderTimeout, ReadTimeout: DefaultReadTimeout, WriteTimeout: DefaultWriteTimeout,
		IdleTimeout: DefaultIdleTimeout, MaxHeaderBytes: DefaultMaxHeaderBytes,
		MaxConns: DefaultMaxConns, MaxConnsPerClient: DefaultMaxConnsPerClient,
		MaxRequests: DefaultMaxRequests, MaxRequestsPerClient: DefaultMaxRequestsPerClient,
	}
}

func (l *Limits) flags(fl *flag.FlagSet) {
	fl.DurationVar(&l.ReadHeaderTimeout, "read-header-timeout", DefaultReadHeaderTimeout, "time a client has for the TLS handshake and a request's header")
	fl.DurationVar(&l.ReadTimeout, "read-timeout", DefaultReadTimeout, "time a client has for the TLS handshake and a whole request, body included (lifted for authenticated requests to --upstream)")
	fl.DurationVar(&l.WriteTimeout, "write-timeout", DefaultWriteTimeout, "time from the end of a request's header to the end of its answer (lifted for authenticated requests to --upstream)")
	fl.DurationVar(&l.IdleTimeout, "idle-timeout", DefaultIdleTimeout, "time a keep-alive or HTTP/2 connection may stay idle between requests")
	fl.IntVar(&l.MaxHeaderBytes, "max-header-bytes", DefaultMaxHeaderBytes, "request line and header size; larger is answered 431 (net/http allows 4096 bytes of slack above it)")
	fl.IntVar(&l.MaxConns, "max-conns", DefaultMaxConns, "connections open at once in all; more are closed at once (0: no cap)")
	fl.IntVar(&l.MaxConnsPerClient, "max-conns-per-client", DefaultMaxConnsPerClient, "connections open at once from one client address, IPv6 per /64; --trusted-proxies are exempt (0: no cap)")
	fl.IntVar(&l.MaxRequests, "max-requests", DefaultMaxRequests, "requests in flight at once in all until authenticated (HTTP/2 multiplexes many on a connection); more are answered 503 at once (0: no cap)")
	fl.IntVar(&l.MaxRequestsPerClient, "max-requests-per-client", DefaultMaxRequestsPerClient, "requests in flight at once from one client address until authenticated; --trusted-proxies are exempt (0: no cap)")
}

// check refuses values that would turn a protection off by accident.
func (l *Limits) check() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"read-header-timeout", l.ReadHeaderTimeout}, {"read-timeout", l.ReadTimeout}, {"write-timeout", l.WriteTimeout}, {"idle-timeout", l.IdleTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("checking --%s %v: want a positive duration", d.name, d.v)
		}
	}
	if l.MaxHeaderBytes < 1024 {
		return fmt.Errorf("checking --max-header-bytes %d: want at least 1024 (a PBS ticket cookie alone may take most of that)", l.MaxHeaderBytes)
	}
	if l.MaxConns < 0 || l.MaxConnsPerClient < 0 || l.MaxRequests < 0 || l.MaxRequestsPerClient < 0 {
		return errors.New("checking --max-conns, --max-conns-per-client, --max-requests and --max-requests-per-client: want 0 (no cap) or more")
	}
	return nil
}

// server is proxyd's public http.Server with these limits.
func (l *Limits) server(h http.Handler, tc *tls.Config, errLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		TLSConfig:         tc,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: DefaultMaxStreams},
		ErrorLog:          errLog,
	}
}

// checkFiles warns when the open-file limit is below what the caps may need (FilesNeeded).
func (l *Limits) checkFiles(log *slog.Logger) {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return
	}
	if need := l.FilesNeeded(); need > 0 && r.Cur < uint64(need) {
		log.Warn("open-file limit below what the connection and request caps may need: accepts and dials may fail with EMFILE",
			"max_conns", l.MaxConns, "max_requests", l.MaxRequests, "rlimit_nofile", r.Cur, "need", need)
	}
}

// requestLimit holds each request's slot in in (a Limiter counting requests in flight per
// client, trusted proxies exempt) from its arrival until it is answered, or until it has
// authenticated for the upstream application (proxyUpstream calls authenticated): what an
// unauthenticated client can make proxyd hold at once, whatever it multiplexes on HTTP/2. Over
// a cap the request is answered 503 at once, its body unread.
func requestLimit(in *connlimit.Limiter, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, _ := netip.ParseAddrPort(r.RemoteAddr)
		release, _, ok := in.Acquire(ap.Addr())
		if !ok {
			w.Header().Set("Retry-After", "1")
			reply.Error(w, http.StatusServiceUnavailable, "too many requests in flight")
			return
		}
		defer release()
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), slotKey{}, release)))
	})
}

type slotKey struct{}

// authenticated releases r's request slot early: r has authenticated and goes to the
// upstream application, whose streams and long transfers must not hold it.
func authenticated(r *http.Request) {
	if release, ok := r.Context().Value(slotKey{}).(func()); ok {
		release()
	}
}

// tlsConfig is Mozilla's "intermediate" server profile: TLS 1.2 and 1.3; on TLS 1.2 only
// ECDHE key exchange with AEAD ciphers (AES-GCM, ChaCha20-Poly1305), no CBC, SHA-1 MACs,
// RSA key exchange or 3DES (Go has no DHE); key exchange on X25519, P-256 or P-384, after
// Go's hybrid post-quantum groups (TLS 1.3 only), which clients that offer them prefer. TLS
// 1.3's suites are all AEAD and not configurable in Go.
func tlsConfig(get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		GetCertificate: get,
		MinVersion:     tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		CurvePreferences: []tls.CurveID{
			tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024,
			tls.X25519, tls.CurveP256, tls.CurveP384,
		},
	}
}

// liftDeadlines removes the server-wide read and write deadlines from an authenticated
// request's connection (HTTP/1) or stream (HTTP/2): streamed answers, long uploads and
// downloads and WebSockets to the upstream application last as long as the application and
// the client keep them. Unauthenticated requests, the API and the pages keep the short ones.
func liftDeadlines(w http.ResponseWriter) error {
	rc := http.NewResponseController(w)
	return errors.Join(rc.SetReadDeadline(time.Time{}), rc.SetWriteDeadline(time.Time{}))
}

// upstreamTransport is http.DefaultTransport's setup with at most UpstreamMaxConns
// connections to the upstream application.
func upstreamTransport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxConnsPerHost = UpstreamMaxConns
	tr.MaxIdleConnsPerHost = 64
	return tr
}
