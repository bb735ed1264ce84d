package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"testing"
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

// TestHarness runs every case once, briefly, and checks the table is complete: the harness
// must not rot between benchmark runs.
func TestHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the crypt(3) slow path many times")
	}
	old := flag.Lookup("test.benchtime").Value.String()
	if err := flag.Set("test.benchtime", "3x"); err != nil {
		t.Fatal(err)
	}
	defer flag.Set("test.benchtime", old)
	rep, err := run([]int{10, 100}, true, testWriter{t})
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
	if got, want := len(rep.EndToEnd), len(e2eCases()); got != want {
		t.Fatalf("run() = %d end-to-end rows; want %d", got, want)
	}
	for _, r := range rep.EndToEnd {
		if r.ReqPerSec <= 0 || r.PctOfNoAuth <= 0 || r.Requests < 1 {
			t.Errorf("end-to-end row %q = %+v; want a measurement", r.Name, r)
		}
	}
	if rep.Targets.EndToEnd == nil || rep.Targets.EndToEnd.CachedTokenPct <= 0 {
		t.Errorf("end-to-end target not measured: %+v", rep.Targets.EndToEnd)
	}
	if rep.Targets.EditNoticedMaxNs <= 0 {
		t.Errorf("manual edit latency not measured")
	}
	if rep.Targets.CachedAllocs != 0 {
		t.Errorf("cached verify allocates %d times per op; want 0", rep.Targets.CachedAllocs)
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
