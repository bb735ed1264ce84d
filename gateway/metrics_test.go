package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"gatehouse/credential"
	"gatehouse/shmem"
	"gatehouse/ticket"
	"gatehouse/tokenshadow"
)

func TestCheckLoopback(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:9807", true},
		{"127.0.0.2:0", true},
		{"[::1]:9807", true},
		{"localhost:9807", true},
		{"[::ffff:127.0.0.1]:9807", true},
		{":9807", false}, // every interface
		{"0.0.0.0:9807", false},
		{"[::]:9807", false},
		{"192.0.2.1:9807", false},
		{"example.org:9807", false},
		{"127.0.0.1", false}, // no port
	}
	for _, tt := range tests {
		if err := checkLoopback(tt.addr); (err == nil) != tt.ok {
			t.Errorf("checkLoopback(%q) = %v; want ok %v", tt.addr, err, tt.ok)
		}
	}
}

// TestMainRefusesPublicMetrics: the check comes before proxyd opens anything (the directories
// here do not exist).
func TestMainRefusesPublicMetrics(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	err := Main(context.Background(), []string{"--config-dir", dir, "--run-dir", dir, "--metrics-listen", "0.0.0.0:9807"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `"0.0.0.0" is not a loopback address`) {
		t.Errorf("Main(--metrics-listen 0.0.0.0:9807) = %v; want a loopback refusal", err)
	}
}

func TestTicketCallMethod(t *testing.T) {
	tests := []struct {
		name string
		p    map[string]string
		want authMethod
	}{
		{"password", map[string]string{"username": "a@pbs", "password": "pw"}, methodPassword},
		{"password with otp", map[string]string{"password": "pw", "otp": "123456"}, methodPassword},
		{"renewal", map[string]string{"password": "PBS:a@pbs:6B043829::sig"}, methodRenewal},
		{"other product's ticket", map[string]string{"password": "PVE:a@pbs:6B043829::sig"}, methodPassword},
		{"tfa", map[string]string{"password": "totp:123456", "tfa-challenge": "PBS:!tfa!..."}, methodTFA},
		{"nothing (unparsable body)", nil, methodPassword},
	}
	for _, tt := range tests {
		if got := ticketCallMethod("PBS", tt.p); got != tt.want {
			t.Errorf("%s: ticketCallMethod(%v) = %v; want %v", tt.name, tt.p, got, tt.want)
		}
	}
}

func TestAuthCounts(t *testing.T) {
	m, err := NewMetrics(prometheus.NewRegistry(), MetricSources{})
	if err != nil {
		t.Fatal(err)
	}
	m.auth(methodToken, resultSuccess)
	m.auth(methodToken, resultSuccess)
	m.authError(methodTicket, &credential.Failure{User: "a@pbs", Reason: "invalid ticket"})
	m.authError(methodTicket, errors.New("reading user.cfg: disk on fire")) // a 500: not counted
	m.ticketAnswer(methodPassword, http.StatusOK)
	m.ticketAnswer(methodPassword, http.StatusUnauthorized)
	m.ticketAnswer(methodRenewal, http.StatusBadRequest)
	m.ticketAnswer(methodTFA, http.StatusBadGateway) // apid broken: not counted
	r := httptest.NewRequest("POST", "/api2/json/access/ticket", strings.NewReader("username=a%40pbs&password=x&tfa-challenge=c"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	m.ticketRateLimited("PBS", r)
	m.keysReloaded()
	for _, tt := range []struct {
		meth authMethod
		res  authResult
		want float64
	}{
		{methodToken, resultSuccess, 2},
		{methodTicket, resultFailure, 1},
		{methodTicket, resultSuccess, 0},
		{methodPassword, resultSuccess, 1},
		{methodPassword, resultFailure, 1},
		{methodRenewal, resultFailure, 1},
		{methodTFA, resultSuccess, 0},
		{methodTFA, resultFailure, 0},
		{methodTFA, resultRateLimited, 1},
	} {
		if got := counterValue(t, m.attempts[tt.meth][tt.res]); got != tt.want {
			t.Errorf("attempts{%v, %v} = %v; want %v", tt.meth, tt.res, got, tt.want)
		}
	}
	if got := counterValue(t, m.keyReloads); got != 1 {
		t.Errorf("key reloads = %v; want 1", got)
	}
	var nilM *Metrics // counts nothing, and does not crash
	nilM.auth(methodToken, resultSuccess)
	nilM.authError(methodToken, &credential.Failure{})
	nilM.ticketAnswer(methodPassword, 200)
	nilM.ticketRateLimited("PBS", r)
	nilM.keysReloaded()
}

// TestSourceMetrics checks the metrics read from the token store, the ticket cache and the
// generation counters after known calls.
func TestSourceMetrics(t *testing.T) {
	dir := t.TempDir()
	gen, err := shmem.New()
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	tokens, err := tokenshadow.Open(tokenshadow.Options{Path: filepath.Join(dir, "token.shadow"), Generations: gen})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := tokens.Generate("a@pbs!ci") // bumps token_shadow
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := tokens.Verify("a@pbs!ci", secret); err != nil {
			t.Fatal(err)
		}
	}
	tokens.Verify("a@pbs!ci", strings.Repeat("x", tokenshadow.MaxSecretLen+1)) // neither hit nor miss
	key, pub := filepath.Join(dir, "authkey.key"), filepath.Join(dir, "authkey.pub")
	if err := ticket.GenerateKeys(key, pub, -1); err != nil {
		t.Fatal(err)
	}
	signer, err := ticket.LoadSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tk, err := signer.SignUser("PBS", "a@pbs", now)
	if err != nil {
		t.Fatal(err)
	}
	tickets := ticket.NewCache(signer.Public(), 0)
	for range 2 {
		if _, _, err := tickets.VerifyUser(tk, "PBS", 0, now); err != nil {
			t.Fatal(err)
		}
	}
	gen.Bump(shmem.Keys)
	gen.Bump(shmem.Keys)

	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, MetricSources{Tokens: tokens, Tickets: tickets, Generations: gen})
	if err != nil {
		t.Fatal(err)
	}
	m.tokenCache(true) // the hits the gateway counts from VerifyHit and VerifyUserHit
	m.tokenCache(false)
	m.ticketCache(true)
	m.ticketCache(true)
	m.ticketCache(false)
	want := map[string]float64{
		`gatehouse_generation_bumps_total{counter="keys"}`:         2,
		`gatehouse_generation_bumps_total{counter="tfa"}`:          0,
		`gatehouse_generation_bumps_total{counter="token_shadow"}`: 1,
		`gatehouse_generation_bumps_total{counter="user"}`:         0,
		`gatehouse_ticket_cache_hits_total`:                        2,
		`gatehouse_ticket_cache_misses_total`:                      1,
		`gatehouse_token_cache_hits_total`:                         1,
		`gatehouse_token_cache_misses_total`:                       1,
		`gatehouse_token_crypt_checks_total`:                       1,
		`gatehouse_token_slow_paths_in_flight`:                     0,
	}
	got := gathered(t, reg)
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v); want %v", k, g, ok, v)
		}
	}
	if _, err := NewMetrics(reg, MetricSources{}); err == nil {
		t.Error("registering the gateway metrics twice succeeded")
	}
}

// counterValue reads a counter's value.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// gathered returns every counter and gauge sample in reg by name{label="value",...}.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		for _, s := range f.GetMetric() {
			var ls []string
			for _, lp := range s.GetLabel() {
				ls = append(ls, lp.GetName()+`="`+lp.GetValue()+`"`)
			}
			k := f.GetName()
			if len(ls) > 0 {
				k += "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case s.Counter != nil:
				out[k] = s.Counter.GetValue()
			case s.Gauge != nil:
				out[k] = s.Gauge.GetValue()
			}
		}
	}
	return out
}

// durations returns the sample count per "route code" of the request histogram.
func durations(t *testing.T, reg *prometheus.Registry) map[string]uint64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, f := range fams {
		if f.GetName() != "gatehouse_http_request_duration_seconds" {
			continue
		}
		for _, s := range f.GetMetric() {
			out[label(s, "route")+" "+label(s, "code")] = s.GetHistogram().GetSampleCount()
		}
	}
	return out
}

func label(s *dto.Metric, name string) string {
	for _, lp := range s.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

func TestServeRouteLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, MetricSources{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "gone" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Write([]byte("ok"))
	})
	mux.HandleFunc("POST /silent", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /early", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusTeapot)
	})
	for _, path := range []string{"GET /items/1", "GET /items/2", "GET /items/gone", "POST /silent", "GET /early", "DELETE /items/1", "GET /a/../items/3"} {
		method, target, _ := strings.Cut(path, " ")
		m.serve(httptest.NewRecorder(), httptest.NewRequest(method, target, nil), mux)
	}
	want := map[string]uint64{
		"GET /items/{id} 200": 2,
		"GET /items/{id} 404": 1,
		"POST /silent 200":    1, // nothing written: net/http answers 200
		"GET /early 418":      1, // the 103 is not the status
		"unmatched 405":       1,
		"GET /items/{id} 307": 1, // the mux's redirect to the cleaned path: the pattern, not the path
	}
	got := durations(t, reg)
	if len(got) != len(want) {
		t.Errorf("histogram series = %v; want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("requests %q = %d; want %d (all: %v)", k, got[k], n, got)
		}
	}
}

func TestStatusWriterUnwrap(t *testing.T) {
	rec := httptest.NewRecorder()
	sw := &statusWriter{ResponseWriter: rec}
	if err := http.NewResponseController(sw).Flush(); err != nil {
		t.Errorf("Flush through statusWriter: %v", err)
	}
	if !rec.Flushed {
		t.Error("Flush did not reach the underlying ResponseWriter")
	}
}

func TestStartMetrics(t *testing.T) {
	reg := newRegistry()
	m, err := NewMetrics(reg, MetricSources{})
	if err != nil {
		t.Fatal(err)
	}
	m.auth(methodPassword, resultFailure)
	var logBuf bytes.Buffer
	srv, err := startMetrics("127.0.0.1:0", reg, slog.New(slog.NewTextHandler(&logBuf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var addr string
	for _, f := range strings.Fields(logBuf.String()) {
		if a, ok := strings.CutPrefix(f, "addr="); ok && strings.Contains(logBuf.String(), `msg="metrics listening"`) {
			addr = a
		}
	}
	if addr == "" {
		t.Fatalf("no metrics listening line with addr= in %q", logBuf.String())
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range []string{`gatehouse_auth_attempts_total{method="password",result="failure"} 1`, "go_goroutines ", "process_cpu_seconds_total "} {
		if !strings.Contains(string(body), line) {
			t.Errorf("GET /metrics = %d without %q", resp.StatusCode, line)
		}
	}
	for _, c := range []struct{ method, path string }{{"POST", "/metrics"}, {"GET", "/"}, {"GET", "/api2/json/ping"}} {
		req, _ := http.NewRequest(c.method, "http://"+addr+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("%s %s on the metrics listener = 200; want only GET /metrics served", c.method, c.path)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	if _, err := http.Get("http://" + addr + "/metrics"); err == nil {
		t.Error("the metrics listener still answers after Shutdown")
	}
}

// BenchmarkInstrument is the per-request cost of the metrics: the status-recording wrapper and
// one histogram observation, against the bare mux.
func BenchmarkInstrument(b *testing.B) {
	m, err := NewMetrics(prometheus.NewRegistry(), MetricSources{})
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api2/json/version", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	r := httptest.NewRequest("GET", "/api2/json/version", nil)
	w := httptest.NewRecorder()
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			mux.ServeHTTP(w, r)
		}
	})
	b.Run("instrumented", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.serve(w, r, mux)
		}
	})
	b.Run("auth counter", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.auth(methodToken, resultSuccess)
		}
	})
}
