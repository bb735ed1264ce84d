package main

import (
	"flag"
	"strings"
	"testing"
)

// BenchmarkCases runs the harness's cases under go test -bench (sizes 10 and 1000; the
// 100 000-token rows run in the harness: go run ./bench).
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
	rep, err := run([]int{10, 100}, testWriter{t})
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
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
