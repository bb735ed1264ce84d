package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// BenchmarkCases runs the harness's cases under go test -bench (sizes 10 and 1000; the
// 100 000-token rows run in the harness: go run ./bench).
// TestMain runs a daemon role when the harness re-executes the test binary (see runRole).
func TestMain(m *testing.M) {
	runRole()
	os.Exit(m.Run())
}

func BenchmarkCases(b *testing.B) {
	fixtures := map[int]*fixture{}
	defer func() {
		for _, f := range fixtures {
			f.close()
		}
	}()
	for _, c := range cases([]int{10, 1000}) {
		b.Run(c.name, func(b *testing.B) {
			f := fixtures[c.tokens]
			if f == nil {
				var err error
				if f, err = newFixture(c.tokens); err != nil {
					b.Fatal(err)
				}
				fixtures[c.tokens] = f
			}
			if err := f.warm(c.cached); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			c.run(b, f)
		})
	}
}

// BenchmarkEndToEnd runs the end-to-end cases: apid and proxyd started as child processes, GET
// requests over one keep-alive HTTPS client from GOMAXPROCS goroutines (vary with -cpu).
func BenchmarkEndToEnd(b *testing.B) {
	s, err := startStack(stackOptions{conns: runtime.GOMAXPROCS(0)})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := s.close(); err != nil {
			b.Error(err)
		}
	}()
	for _, c := range e2eCases() {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			c.run(b, s)
		})
	}
}

// TestHarness runs every case once, briefly, and checks the tables are complete and that each
// load row did what its name says: the harness must not rot between benchmark runs.
func TestHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the crypt(3) slow path many times and starts the daemons twice")
	}
	old := flag.Lookup("test.benchtime").Value.String()
	if err := flag.Set("test.benchtime", "3x"); err != nil {
		t.Fatal(err)
	}
	defer flag.Set("test.benchtime", old)
	const tokens = 5000
	lo := &loadOptions{duration: 200 * time.Millisecond, clients: 4, proxyds: []int{1, 2}, tokens: tokens}
	rep, err := run(config{sizes: []int{10, 100}, load: lo, timing: 20}, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(rep.Rows), len(cases([]int{10, 100}))+1; got != want { // +1: manual edit latency
		t.Fatalf("run() = %d rows; want %d", got, want)
	}
	for _, r := range rep.Rows {
		if r.NsPerOp <= 0 || r.Iterations < 1 {
			t.Errorf("row %q = %+v; want a measurement", r.Name, r)
		}
	}
	if rep.Targets.EditNoticedMaxNs <= 0 {
		t.Errorf("manual edit latency not measured")
	}
	if rep.Targets.CachedAllocs != 0 {
		t.Errorf("cached verify allocates %d times per op; want 0", rep.Targets.CachedAllocs)
	}
	checkLoad(t, rep, lo)
	if rep.Timing == nil {
		t.Error("token id timing not measured")
	} else if err := checkTiming(rep.Timing); err != nil {
		t.Errorf("token id timing: %v", err)
	}
	if rep.Targets.EndToEnd == nil || rep.Targets.EndToEnd.CachedTokenPct <= 0 {
		t.Errorf("end-to-end target not measured: %+v", rep.Targets.EndToEnd)
	}

	// The report renders every row.
	path := filepath.Join(t.TempDir(), "README.md")
	if err := os.WriteFile(path, []byte("# x\n"+beginMarker+"\n"+endMarker+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeReportFile(path, rep); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| 1 proxyd req/s |", "| 2 proxyd req/s |", rep.Machine.CPU, "cached verify", "| no such token id |", "unknown id: p1..p99"} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("report lacks %q:\n%s", want, doc)
		}
	}
	for _, c := range loadCases(tokens) {
		if n := strings.Count(string(doc), "| "+c.name+" |"); n != 3 { // the table, and a detail line per configuration
			t.Errorf("report has %d lines for %q; want 3", n, c.name)
		}
	}
}

// checkLoad checks the load table: every case in every configuration, with requests and
// latencies; every request counted by the proxyd it was sent to (so 2-proxyd rows used both);
// and each row's answers and token cache counters are what the case is about.
func checkLoad(t *testing.T, rep *report, lo *loadOptions) {
	t.Helper()
	l := rep.Load
	cs := loadCases(lo.tokens)
	if l == nil || len(l.Rows) != len(cs)*len(lo.proxyds) {
		t.Fatalf("load table = %+v; want %d rows", l, len(cs)*len(lo.proxyds))
	}
	for _, n := range lo.proxyds {
		for _, c := range cs {
			r, ok := findRow(l, c.key, n)
			if !ok {
				t.Errorf("no row %q with %d proxyd", c.key, n)
				continue
			}
			name := fmt.Sprintf("%s, %d proxyd", c.name, n)
			if r.Requests < 1 || r.ReqPerSec <= 0 || r.VsNoAuth <= 0 || r.P50Ns <= 0 || r.P99Ns < r.P50Ns || r.MaxNs < r.P99Ns {
				t.Errorf("%s: %+v; want requests, requests/s, a ratio and ordered latencies", name, r)
			}
			if len(r.PerProxyd) != n || len(r.Served) != n {
				t.Fatalf("%s: per proxyd %v sent, %v served; want %d each", name, r.PerProxyd, r.Served, n)
			}
			// proxyd counts a request before its answer leaves (the histogram is observed
			// inside the handler, the small answer flushed after it), so the counts are equal.
			for i := range n {
				if r.PerProxyd[i] < 1 || r.Served[i] != uint64(r.PerProxyd[i]) {
					t.Errorf("%s: proxyd %d was sent %d requests and served %d; want the same, at least 1", name, i, r.PerProxyd[i], r.Served[i])
				}
			}
			if r.Status["200"] > 0 && c.want != 200 {
				t.Errorf("%s: answers %v; want no 200", name, r.Status)
			}
			if c.key != "wrong-secret-guard" && r.Unexpected != 0 { // the guard forgives one failure per 6 s
				t.Errorf("%s: answers %v; want only %d", name, r.Status, c.want)
			}
			req := uint64(r.Requests)
			switch c.key {
			case "token":
				if r.TokenCacheHits != req || r.TokenCacheMisses != 0 {
					t.Errorf("%s: %d token cache hits, %d misses; want %d hits", name, r.TokenCacheHits, r.TokenCacheMisses, req)
				}
			case "token-uncached", "wrong-secret": // a refusal is never a hit, even of a cached token
				if r.TokenCacheHits != 0 || r.TokenCacheMisses != req {
					t.Errorf("%s: %d token cache hits, %d misses; want %d misses", name, r.TokenCacheHits, r.TokenCacheMisses, req)
				}
			case "wrong-secret-guard":
				if r.Status["429"] < 1 || r.SpentFailures != guardBurst*n {
					t.Errorf("%s: answers %v after %d failures; want 429s after %d", name, r.Status, r.SpentFailures, guardBurst*n)
				}
			case "many-tokens":
				if 2*r.Requests < lo.tokens && (r.TokenCacheHits != 0 || r.TokenCacheMisses != req) {
					t.Errorf("%s: %d token cache hits, %d misses; want %d misses (fewer requests than tokens)", name, r.TokenCacheHits, r.TokenCacheMisses, req)
				}
			}
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// TestStackStops checks the fixture's daemons answer and are gone after close: the port is
// closed and the temp dir removed.
func TestStackStops(t *testing.T) {
	s, err := startStack(stackOptions{conns: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := call(s.client, "GET", s.url+"/ping", nil, nil); err != nil {
		t.Fatalf("GET /ping: %v", err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after close, Stat(%s) = %v; want not exist", s.dir, err)
	}
	s.client.CloseIdleConnections()
	if _, err := call(s.client, "GET", s.url+"/ping", nil, nil); err == nil {
		t.Errorf("after close, GET /ping succeeded; want a refused connection")
	}
}

// TestLogWriter checks the listening address is found in a line split over writes, and only
// the first one is sent.
func TestLogWriter(t *testing.T) {
	for _, tt := range []struct {
		name   string
		writes []string
		want   string
	}{
		{"one write", []string{"time=x level=INFO msg=listening addr=127.0.0.1:1234\n"}, "127.0.0.1:1234"},
		{"split line", []string{"level=INFO msg=list", "ening addr=[::1]:80", "\n"}, "[::1]:80"},
		{"after other lines", []string{"msg=starting\nmsg=made addr=x\n", "msg=listening addr=/run/a.sock proxy_uid=0\n"}, "/run/a.sock"},
		{"first of two", []string{"msg=listening addr=a\nmsg=listening addr=b\n"}, "a"},
		{"no newline yet", []string{"msg=listening addr=a"}, ""},
		{"none", []string{"msg=error err=x\n"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := logWriter{addr: make(chan string, 1)}
			for _, p := range tt.writes {
				fmt.Fprint(&w, p)
			}
			got := ""
			select {
			case got = <-w.addr:
			default:
			}
			if got != tt.want {
				t.Errorf("address from %q = %q; want %q", tt.writes, got, tt.want)
			}
			if w.String() != strings.Join(tt.writes, "") {
				t.Errorf("log = %q; want %q", w.String(), strings.Join(tt.writes, ""))
			}
		})
	}
}
