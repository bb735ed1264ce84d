package gateway

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"gatehouse/layout"
	"gatehouse/shmem"
)

// TestBrokenConfigFiles: each config file a credential check reads, broken by hand, makes the
// requests that need it 500, each counted in gatehouse_config_errors_total{file}, with one log
// line per version of the broken file: repeated requests add none, a new broken version one
// more, and once fixed the requests work again.
func TestBrokenConfigFiles(t *testing.T) {
	now := time.Unix(1_790_000_000, 0)
	dir := t.TempDir()
	s, fill := newFuzzServer(t, dir, now)
	var logs bytes.Buffer
	s.o.Log = slog.New(slog.NewTextHandler(&logs, nil))
	s.configErrs.log = s.o.Log
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, MetricSources{})
	if err != nil {
		t.Fatal(err)
	}
	s.o.Metrics = m
	d := layout.Dirs{Config: dir + "/etc", Run: dir + "/run"}
	token := http.Header{"Authorization": {fill.Replace("@K@")}}
	ticket := http.Header{"Cookie": {fill.Replace("PBSAuthCookie=@T@")}}
	status := func(h http.Header) int {
		r, _ := http.NewRequest(http.MethodGet, "https://gatehouse.test/api2/json/version", nil)
		r.RemoteAddr = "192.0.2.7:40000"
		r.Header = h.Clone()
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		return w.Code
	}
	for _, tc := range []struct {
		file, path string
		header     http.Header
		notice     func() // what makes this process look at the file again after an edit
	}{
		{"token.shadow", d.TokenShadow(), token, func() { s.o.Tokens.CheckFile() }},
		{"user.cfg", d.UserCfg(), ticket, func() { s.o.Users.CheckFile() }},
		// revocations.json is read again when the user generation moves.
		{"revocations.json", d.Revocations(), ticket, func() { s.o.Generations.Bump(shmem.User) }},
	} {
		good, err := os.ReadFile(tc.path)
		if os.IsNotExist(err) {
			good = []byte("{}\n")
		} else if err != nil {
			t.Fatal(err)
		}
		write := func(data string) {
			t.Helper()
			if err := os.WriteFile(tc.path, []byte(data), 0o640); err != nil {
				t.Fatal(err)
			}
			tc.notice()
		}
		lines := func() int {
			return strings.Count(logs.String(), `msg="config file broken: requests that need it fail until it is fixed" file=`+tc.file+" ")
		}
		counted := func() float64 {
			var v dto.Metric
			m.configErrs[configFileOf(tc.file)].Write(&v)
			return v.GetCounter().GetValue()
		}
		if got := status(tc.header); got != 200 {
			t.Fatalf("%s: before breaking it = %d; want 200", tc.file, got)
		}
		write("{broken")
		for i := range 50 {
			if got := status(tc.header); got != 500 {
				t.Fatalf("%s broken: request %d = %d; want 500", tc.file, i, got)
			}
		}
		if lines() != 1 || counted() != 50 {
			t.Errorf("%s broken, 50 requests: %d log lines, counted %v; want 1, 50", tc.file, lines(), counted())
		}
		write("{broken, and longer") // another version, still broken
		status(tc.header)
		if lines() != 2 || counted() != 51 {
			t.Errorf("%s broken anew: %d log lines, counted %v; want 2, 51", tc.file, lines(), counted())
		}
		write(string(good))
		if got := status(tc.header); got != 200 {
			t.Errorf("%s fixed = %d; want 200", tc.file, got)
		}
		if lines() != 2 || counted() != 51 {
			t.Errorf("%s fixed: %d log lines, counted %v; want 2, 51", tc.file, lines(), counted())
		}
	}
}
