package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"gatehouse/shmem"
)

// scrape fetches proxyd's /metrics over HTTP and parses it as Prometheus does.
func (st *stack) scrape(t *testing.T) metrics {
	t.Helper()
	if st.metrics == "" {
		t.Fatal(`proxyd logged no msg="metrics listening" line`)
	}
	resp, err := http.Get(st.metrics)
	if err != nil {
		t.Fatalf("scraping %s: %v", st.metrics, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s = %d; want 200", st.metrics, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", st.metrics, err)
	}
	return metrics(fams)
}

type metrics map[string]*dto.MetricFamily

// get returns the value of the sample of family name whose labels include want (label=value
// pairs): a counter's or gauge's value, a histogram's sample count; -1 if there is none.
func (m metrics) get(name string, want ...string) float64 {
	fam := m[name]
	if fam == nil {
		return -1
	}
next:
	for _, s := range fam.GetMetric() {
		have := map[string]string{}
		for _, lp := range s.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if have[want[i]] != want[i+1] {
				continue next
			}
		}
		switch {
		case s.Counter != nil:
			return s.Counter.GetValue()
		case s.Gauge != nil:
			return s.Gauge.GetValue()
		case s.Histogram != nil:
			return float64(s.Histogram.GetSampleCount())
		}
	}
	return -1
}

// TestMetrics drives known traffic through the real proxyd and checks the exact counts its
// /metrics endpoint reports.
func TestMetrics(t *testing.T) {
	st := start(t, options{burst: 3})
	base := st.scrape(t)
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if base.get(name) <= 0 {
			t.Errorf("%s = %v; want > 0 (Go and process collectors)", name, base.get(name))
		}
	}
	if got := base.get("gatehouse_auth_attempts_total", "method", "tfa", "result", "ratelimited"); got != 0 {
		t.Errorf("tfa/ratelimited attempts before any traffic = %v; want 0 (every pair exported)", got)
	}
	st.addUser(t, "mia@pbs", "mia-pass-1")
	login := func(password string) int {
		return st.do(t, call{method: "POST", path: "/access/ticket", form: url.Values{"username": {"mia@pbs"}, "password": {password}}}).status
	}
	for range 2 {
		if got := login("wrong"); got != 401 {
			t.Fatalf("login with a wrong password = %d; want 401", got)
		}
	}
	mia := st.login(t, "mia@pbs", "mia-pass-1")
	if a := st.do(t, call{method: "GET", path: "/version", header: mia.header(false)}); a.status != 200 {
		t.Fatalf("GET /version with the ticket = %d %s", a.status, a.message)
	}
	a := st.admin(t, call{method: "POST", path: "/access/users/mia@pbs/token/ci"})
	if a.status != 200 {
		t.Fatalf("creating a token = %d %s", a.status, a.message)
	}
	var tok struct{ Tokenid, Value string }
	a.decode(t, &tok)
	withToken := func(secret string) int {
		return st.do(t, call{method: "GET", path: "/version", header: http.Header{"Authorization": {"PBSAPIToken=" + tok.Tokenid + ":" + secret}}}).status
	}
	for i := range 3 {
		if got := withToken(tok.Value); got != 200 {
			t.Fatalf("token use %d = %d; want 200", i+1, got)
		}
	}
	// A client (X-Forwarded-For from the trusted 127.0.0.1) makes 3 failures, then is refused.
	from := func(ip string) int {
		return st.do(t, call{method: "GET", path: "/version", header: http.Header{
			"X-Forwarded-For": {ip}, "Authorization": {"PBSAPIToken=" + tok.Tokenid + ":nope"}}}).status
	}
	for i := range 3 {
		if got := from("203.0.113.5"); got != 401 {
			t.Fatalf("bad token %d = %d; want 401", i+1, got)
		}
	}
	if got := from("203.0.113.5"); got != 429 {
		t.Fatalf("bad token after the burst = %d; want 429", got)
	}

	m := st.scrape(t)
	want := []struct {
		name   string
		labels []string
		value  float64
	}{
		{"gatehouse_auth_attempts_total", []string{"method", "password", "result", "failure"}, 2},
		{"gatehouse_auth_attempts_total", []string{"method", "password", "result", "success"}, 1},
		{"gatehouse_auth_attempts_total", []string{"method", "password", "result", "ratelimited"}, 0},
		{"gatehouse_auth_attempts_total", []string{"method", "ticket", "result", "success"}, 1},
		{"gatehouse_auth_attempts_total", []string{"method", "ticket", "result", "failure"}, 0},
		{"gatehouse_auth_attempts_total", []string{"method", "token", "result", "success"}, 3},
		{"gatehouse_auth_attempts_total", []string{"method", "token", "result", "failure"}, 3},
		{"gatehouse_auth_attempts_total", []string{"method", "token", "result", "ratelimited"}, 1},
		{"gatehouse_auth_attempts_total", []string{"method", "renewal", "result", "success"}, 0},
		{"gatehouse_token_cache_misses_total", nil, 1 + 3}, // every refusal takes the slow path, the token's secret cached or not
		{"gatehouse_token_cache_hits_total", nil, 2},
		{"gatehouse_token_slow_paths_in_flight", nil, 0},
		{"gatehouse_ticket_cache_misses_total", nil, 1},
		{"gatehouse_ticket_cache_hits_total", nil, 0},
		{"gatehouse_http_request_duration_seconds", []string{"route", "POST /api2/json/access/ticket", "code", "401"}, 2},
		{"gatehouse_http_request_duration_seconds", []string{"route", "POST /api2/json/access/ticket", "code", "200"}, 1},
		{"gatehouse_http_request_duration_seconds", []string{"route", "GET /api2/json/version", "code", "200"}, 1 + 3},
		{"gatehouse_http_request_duration_seconds", []string{"route", "GET /api2/json/version", "code", "401"}, 3},
		{"gatehouse_http_request_duration_seconds", []string{"route", "GET /api2/json/version", "code", "429"}, 1},
		{"gatehouse_reloads_total", []string{"what", "keys"}, 0},
	}
	for _, w := range want {
		if got := m.get(w.name, w.labels...); got != w.value {
			t.Errorf("%s%v = %v; want %v", w.name, w.labels, got, w.value)
		}
	}
	for _, fam := range []string{"gatehouse_http_request_duration_seconds"} {
		for _, s := range m[fam].GetMetric() {
			for _, lp := range s.GetLabel() {
				if lp.GetName() == "route" && strings.Contains(lp.GetValue(), "mia") {
					t.Errorf("route label %q holds a raw path", lp.GetValue())
				}
			}
		}
	}

	// Rotating the token bumps token_shadow once; the new secret takes a slow path.
	tsBefore := m.get("gatehouse_generation_bumps_total", "counter", "token_shadow")
	a = st.admin(t, call{method: "PUT", path: "/access/users/mia@pbs/token/ci", form: url.Values{"regenerate": {"1"}}})
	if a.status != 200 {
		t.Fatalf("regenerating the token = %d %s", a.status, a.message)
	}
	var rot struct{ Secret string }
	a.decode(t, &rot)
	if rot.Secret == "" {
		t.Fatalf("regenerate answered %s; want a secret", a.data)
	}
	if got := withToken(rot.Secret); got != 200 {
		t.Fatalf("the rotated token = %d; want 200", got)
	}
	// A keys bump (apid replacing a key) makes proxyd reload its keys before the next ticket check.
	gen, err := shmem.Dial(st.dirs.ShmemSocket())
	if err != nil {
		t.Fatal(err)
	}
	keysBefore := m.get("gatehouse_generation_bumps_total", "counter", "keys")
	gen.Bump(shmem.Keys)
	gen.Close()
	if a := st.do(t, call{method: "GET", path: "/version", header: mia.header(false)}); a.status != 200 {
		t.Fatalf("GET /version with the ticket after a keys bump = %d %s", a.status, a.message)
	}
	m = st.scrape(t)
	for _, w := range []struct {
		name   string
		labels []string
		value  float64
	}{
		{"gatehouse_generation_bumps_total", []string{"counter", "token_shadow"}, tsBefore + 1},
		{"gatehouse_generation_bumps_total", []string{"counter", "keys"}, keysBefore + 1},
		{"gatehouse_reloads_total", []string{"what", "keys"}, 1},
		{"gatehouse_token_cache_misses_total", nil, 4 + 1}, // the generation moved
		{"gatehouse_token_cache_hits_total", nil, 2},
		{"gatehouse_ticket_cache_misses_total", nil, 2}, // the reload dropped the cached ticket
		{"gatehouse_auth_attempts_total", []string{"method", "ticket", "result", "success"}, 2},
		{"gatehouse_auth_attempts_total", []string{"method", "token", "result", "success"}, 4},
	} {
		if got := m.get(w.name, w.labels...); got != w.value {
			t.Errorf("after the rotation and keys bump: %s%v = %v; want %v", w.name, w.labels, got, w.value)
		}
	}
	if tsBefore < 1 || keysBefore < 1 {
		t.Errorf("generation counters before = token_shadow %v, keys %v; want >= 1 (apid made a token and keys)", tsBefore, keysBefore)
	}
}

// TestMetricsNotPublic: the public HTTPS port does not serve /metrics, even to an
// authenticated caller (it is an upstream path, and there is no upstream here).
func TestMetricsNotPublic(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "noa@pbs", "noa-pass-1")
	noa := st.login(t, "noa@pbs", "noa-pass-1")
	public := strings.TrimSuffix(st.url, "/api2/json") + "/metrics"
	for _, h := range []http.Header{{}, noa.header(false)} {
		req, err := http.NewRequest("GET", public, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = h
		resp, err := st.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || strings.Contains(string(body), "gatehouse_") || !json.Valid(body) {
			t.Errorf("GET %s (cookie %v) = %d %q; want a JSON error, no metrics", public, h.Get("Cookie") != "", resp.StatusCode, body)
		}
	}
	// Without --upstream, proxyd answers paths outside /api2 and /gatehouse with 404 before any
	// authentication; the route is counted.
	m := st.scrape(t)
	if got := m.get("gatehouse_auth_attempts_total", "method", "ticket", "result", "success"); got != 0 {
		t.Errorf("ticket attempts after two public /metrics calls = %v; want 0 (no upstream, no authentication)", got)
	}
	if got := m.get("gatehouse_http_request_duration_seconds", "route", "/", "code", "404"); got != 2 {
		t.Errorf("requests counted for route / with 404 = %v; want 2", got)
	}
}

// TestMetricsListenLoopbackOnly: proxyd refuses to start with a --metrics-listen address that
// is not loopback, before it opens anything.
func TestMetricsListenLoopbackOnly(t *testing.T) {
	dir := t.TempDir() // empty: proxyd must refuse before it looks for apid's files
	for _, addr := range []string{"0.0.0.0:0", ":9807", "[::]:0", "192.0.2.1:9807", "example.org:9807"} {
		js, _ := json.Marshal([]string{"--config-dir", dir, "--run-dir", dir, "--listen", "127.0.0.1:0",
			"--auth-log", dir + "/auth.log", "--metrics-listen", addr})
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), roleEnv+"=proxyd", argsEnv+"="+string(js))
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Errorf("proxyd --metrics-listen %s: %v; want exit status 1\n%s", addr, err, out)
		}
		if !strings.Contains(string(out), "is not a loopback address") || strings.Contains(string(out), "listening") {
			t.Errorf("proxyd --metrics-listen %s said %q; want a refusal naming the loopback rule, before listening", addr, out)
		}
	}
}
