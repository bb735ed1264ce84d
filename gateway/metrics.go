package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"gatehouse/connlimit"
	"gatehouse/credential"
	"gatehouse/params"
	"gatehouse/shmem"
	"gatehouse/ticket"
	"gatehouse/tokenshadow"
)

// DefaultMetricsListen is proxyd's default --metrics-listen: plain HTTP, loopback only, since
// /metrics is not authenticated.
const DefaultMetricsListen = "127.0.0.1:9807"

// authMethod is the method label of gatehouse_auth_attempts_total.
type authMethod uint8

const (
	methodTicket   authMethod = iota // a ticket cookie
	methodToken                      // an API token header
	methodPassword                   // POST /access/ticket with a password
	methodTFA                        // POST /access/ticket with tfa-challenge (the second step)
	methodRenewal                    // POST /access/ticket whose password is a ticket
	numMethods
)

func (m authMethod) String() string {
	switch m {
	case methodTicket:
		return "ticket"
	case methodToken:
		return "token"
	case methodPassword:
		return "password"
	case methodTFA:
		return "tfa"
	case methodRenewal:
		return "renewal"
	}
	return "method(" + strconv.Itoa(int(m)) + ")"
}

// authResult is the result label of gatehouse_auth_attempts_total.
type authResult uint8

const (
	resultSuccess     authResult = iota
	resultFailure                // refused credentials (401), or apid's 4xx for a ticket call
	resultRateLimited            // 429 before any check
	numResults
)

func (r authResult) String() string {
	switch r {
	case resultSuccess:
		return "success"
	case resultFailure:
		return "failure"
	case resultRateLimited:
		return "ratelimited"
	}
	return "result(" + strconv.Itoa(int(r)) + ")"
}

// ticketCallMethod tells which kind of POST /access/ticket the parameters p make, as apid
// decides it: the second TFA step, a renewal (the password is a ticket) or a password login.
func ticketCallMethod(prefix string, p map[string]string) authMethod {
	switch {
	case p["tfa-challenge"] != "":
		return methodTFA
	case strings.HasPrefix(p["password"], prefix+":"):
		return methodRenewal
	}
	return methodPassword
}

// MetricSources are the counters other packages keep, read when /metrics is scraped. Each may
// be nil; its metrics are then left out.
type MetricSources struct {
	Tokens      *tokenshadow.Store
	Tickets     *ticket.Cache
	Generations *shmem.Cache
	Conns       *connlimit.Limiter // the public listener's connection caps
	Requests    *connlimit.Limiter // the caps on requests in flight until authenticated
}

// Metrics counts what a Server does for Prometheus. A nil *Metrics counts nothing, so that
// tests (and a proxyd without --metrics-listen) need no registry. The per-request cost is an
// atomic add per authentication and one histogram observation (see BenchmarkInstrument).
type Metrics struct {
	attempts   [numMethods][numResults]prometheus.Counter // every pair exported from the start, at 0
	keyReloads prometheus.Counter
	tokenHits  prometheus.Counter // counted here: the caches count only their slow paths
	ticketHits prometheus.Counter
	duration   *prometheus.HistogramVec
	apid       [numApidReasons]prometheus.Counter // every reason exported from the start, at 0
	configErrs [numConfigFiles]prometheus.Counter
}

// NewMetrics registers the gateway's metrics, and those src provides, with reg.
func NewMetrics(reg prometheus.Registerer, src MetricSources) (*Metrics, error) {
	attempts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_auth_attempts_total",
		Help: "Authentication attempts seen by proxyd, by method (ticket, token, password, tfa, renewal) and result (success, failure, ratelimited).",
	}, []string{"method", "result"})
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_reloads_total",
		Help: "Reloads proxyd made because a shared generation counter moved, by what it reloaded.",
	}, []string{"what"})
	m := &Metrics{
		keyReloads: reloads.WithLabelValues("keys"),
		tokenHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_token_cache_hits_total",
			Help: "API token checks accepted from the verified-secret cache (a refusal is never a hit).",
		}),
		ticketHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_ticket_cache_hits_total",
			Help: "Ticket checks answered from the verified-ticket cache.",
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatehouse_http_request_duration_seconds",
			Help:    "Time proxyd took to answer a request on the public port, by ServeMux route pattern and status code.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "code"}),
	}
	for meth := range numMethods {
		for res := range numResults {
			m.attempts[meth][res] = attempts.WithLabelValues(meth.String(), res.String())
		}
	}
	apid := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_apid_failures_total",
		Help: "Calls to apid answered 503 or 502 by proxyd, by reason: timeout (no answer in time, apid stopped or hung), unreachable (no socket, connection refused), broken (the connection failed before the answer), invalid (an answer proxyd cannot use).",
	}, []string{"reason"})
	for r := range numApidReasons {
		m.apid[r] = apid.WithLabelValues(r.String())
	}
	configErrs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_config_errors_total",
		Help: "Requests whose credential could not be checked because a config file is broken (unreadable, unparsable, unsafe permissions), by file.",
	}, []string{"file"})
	for f := range numConfigFiles {
		m.configErrs[f] = configErrs.WithLabelValues(f.String())
	}
	cs := []prometheus.Collector{attempts, reloads, m.tokenHits, m.ticketHits, m.duration, apid, configErrs}
	counter := func(name, help string, labels prometheus.Labels, f func() uint64) {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(f()) }))
	}
	if t := src.Tokens; t != nil {
		counter("gatehouse_token_cache_misses_total", "API token checks that took the slow path (file read, crypt): every refusal, and acceptances not cached.", nil,
			func() uint64 { return t.Stats().Misses })
		counter("gatehouse_token_crypt_checks_total", "crypt(3) verifications of API token secrets: one per slow path, an unknown token id's included.", nil,
			func() uint64 { return t.Stats().Crypts })
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_token_slow_paths_in_flight",
			Help: "API token slow-path hash computations running now.",
		}, func() float64 { return float64(t.Stats().InFlight) }))
	}
	if c := src.Tickets; c != nil {
		counter("gatehouse_ticket_cache_misses_total", "Ticket checks that verified a signature.", nil,
			func() uint64 { return c.Stats().Misses })
	}
	if g := src.Generations; g != nil {
		for _, k := range []shmem.Counter{shmem.User, shmem.TokenShadow, shmem.TFA, shmem.Keys} {
			counter("gatehouse_generation_bumps_total", "Value of a shared generation counter: each bump (a change apid made durable) adds 1.",
				prometheus.Labels{"counter": k.String()}, func() uint64 { return g.Load(k) })
		}
	}
	if l := src.Conns; l != nil {
		for _, r := range connlimit.Reasons() {
			counter("gatehouse_connections_refused_total", "Connections to the public port closed at once because a cap was reached: reason total (--max-conns) or per_client (--max-conns-per-client).",
				prometheus.Labels{"reason": r.String()}, func() uint64 { return l.Refused(r) })
		}
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_connections_open",
			Help: "Connections to the public port open now (counted toward --max-conns).",
		}, func() float64 { return float64(l.Open()) }))
	}
	if l := src.Requests; l != nil {
		for _, r := range connlimit.Reasons() {
			counter("gatehouse_requests_refused_total", "Requests answered 503 at once because a cap on requests in flight was reached: reason total (--max-requests) or per_client (--max-requests-per-client).",
				prometheus.Labels{"reason": r.String()}, func() uint64 { return l.Refused(r) })
		}
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_requests_in_flight",
			Help: "Requests on the public port in flight now and not yet authenticated for the upstream (counted toward --max-requests).",
		}, func() float64 { return float64(l.Open()) }))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering gateway metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) auth(meth authMethod, res authResult) {
	if m != nil {
		m.attempts[meth][res].Inc()
	}
}

// authError counts a failed check: a refusal (credential.Failure) is a failure; an internal error
// (500) is no attempt's result and is not counted.
func (m *Metrics) authError(meth authMethod, err error) {
	var af *credential.Failure
	if errors.As(err, &af) {
		m.auth(meth, resultFailure)
	}
}

// ticketAnswer counts a POST /access/ticket by apid's answer status: 2xx success, 4xx failure;
// 5xx (apid broken) is not counted.
func (m *Metrics) ticketAnswer(meth authMethod, status int) {
	switch {
	case status >= 200 && status < 300:
		m.auth(meth, resultSuccess)
	case status >= 400 && status < 500:
		m.auth(meth, resultFailure)
	}
}

// ticketRateLimited counts a POST /access/ticket refused with 429, reading the parameters (at
// most params.MaxBody bytes) only to tell the method.
func (m *Metrics) ticketRateLimited(prefix string, r *http.Request) {
	if m == nil {
		return
	}
	p, _ := params.Read(r)
	m.auth(ticketCallMethod(prefix, p), resultRateLimited)
}

// tokenCache counts a token check answered from the cache (tokenshadow.Store.VerifyHit).
func (m *Metrics) tokenCache(hit bool) {
	if m != nil && hit {
		m.tokenHits.Inc()
	}
}

// ticketCache counts a ticket check answered from the cache (ticket.Cache.VerifyUserHit).
func (m *Metrics) ticketCache(hit bool) {
	if m != nil && hit {
		m.ticketHits.Inc()
	}
}

// apidFailure counts a call to apid that got no usable answer (apid.go).
func (m *Metrics) apidFailure(r apidReason) {
	if m != nil {
		m.apid[r].Inc()
	}
}

// configError counts a request that hit a broken config file (configerr.go).
func (m *Metrics) configError(f configFile) {
	if m != nil {
		m.configErrs[f].Inc()
	}
}

func (m *Metrics) keysReloaded() {
	if m != nil {
		m.keyReloads.Inc()
	}
}

// serve runs h and observes how long it took, labelled with the ServeMux pattern h (a
// ServeMux) matched, which it records in r.Pattern: never the raw path, so that the label
// values are the registered patterns (and "unmatched" for the 405s the mux answers itself).
func (m *Metrics) serve(w http.ResponseWriter, r *http.Request, h http.Handler) {
	if m == nil {
		h.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	h.ServeHTTP(sw, r)
	route := r.Pattern
	if route == "" {
		route = "unmatched"
	}
	m.duration.WithLabelValues(route, codeLabel(sw.code)).Observe(time.Since(start).Seconds())
}

// statusWriter remembers the status code written through it. Unwrap lets
// http.ResponseController (the reverse proxies' flushes and upgrades) reach the original.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 { // 1xx answers are not the final status
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// codeLabel formats a status code without allocating for the common ones.
func codeLabel(code int) string {
	switch code {
	case 0, http.StatusOK: // nothing written: net/http sends 200
		return "200"
	case http.StatusNoContent:
		return "204"
	case http.StatusFound:
		return "302"
	case http.StatusNotModified:
		return "304"
	case http.StatusBadRequest:
		return "400"
	case http.StatusUnauthorized:
		return "401"
	case http.StatusForbidden:
		return "403"
	case http.StatusNotFound:
		return "404"
	case http.StatusTooManyRequests:
		return "429"
	case http.StatusInternalServerError:
		return "500"
	case http.StatusNotImplemented:
		return "501"
	case http.StatusBadGateway:
		return "502"
	case http.StatusServiceUnavailable:
		return "503"
	}
	return strconv.Itoa(code)
}

// checkLoopback refuses a --metrics-listen address whose host is not a loopback IP or
// "localhost": the endpoint has no authentication.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("checking --metrics-listen %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Unmap().IsLoopback() {
		return fmt.Errorf("checking --metrics-listen %q: %q is not a loopback address (127.0.0.0/8, ::1 or localhost): /metrics has no authentication", addr, host)
	}
	return nil
}

// newRegistry returns a registry with the Go runtime and process collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// startMetrics listens on addr (checked by checkLoopback), logs msg="metrics listening" with
// the address and serves reg at /metrics over plain HTTP until the returned server is shut down.
func startMetrics(addr string, reg *prometheus.Registry, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on --metrics-listen %s: %w", addr, err)
	}
	if a, ok := ln.Addr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("listening on --metrics-listen %s: bound %s, not a loopback address", addr, ln.Addr())
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError), Registry: reg,
	}))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("metrics listening", "addr", ln.Addr().String())
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("serving metrics", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return srv, nil
}
