// Command bench measures the verified-secret cache against the full crypt(3) verification and
// prints a table (or JSON with -json): slow path vs cached Verify, single goroutine and parallel,
// the cost of one generation check, and how loading and verifying scale with 10, 1 000 and
// 100 000 tokens in token.shadow. The same cases run under `go test -bench . ./bench`.
//
// A second table, the load table (JSON "load"; -e2e=false skips it), measures requests through
// real daemons, see load.go: for each configuration (-proxyds, default 1 and 2 proxyd processes
// sharing the generation file) the harness starts apid and the proxyd as child processes (this
// binary re-executed, see runRole) on a temp config that already holds -tokens (100 000) API
// tokens, then runs each case for -duration (5 s) with -clients goroutines (default
// 2×GOMAXPROCS), each on its own keep-alive HTTPS HTTP/1.1 connection to one proxyd, spread
// evenly; every request's latency is kept (a slice per goroutine) for p50, p99 and max, and
// every answer's status is counted. Cases: no auth, ticket cookie, API token cached and
// uncached (proxyd --token-cache=false), a wrong secret with the failure guard relaxed and as
// deployed, and the 100 000 tokens cycled. Each row reads its proxyds' /metrics before and
// after (requests served, token cache hits and misses) to show what the row really did.
//
// -report FILE rewrites the text between the report markers in FILE (README.md) with the
// results, the machine and the command (report.go).
//
// A third, the token id timing table (timing.go, JSON "timing"; -timing 0 skips it,
// -timing-only runs only it), measures what an attacker timing token ids sees: one client, one
// request at a time, wrong secrets for a token in use, an unused token and an unknown id,
// interleaved, against a proxyd with the failure guard relaxed; p1, p50, p99 and max of each,
// and how well a latency threshold tells them apart.
//
// With -churn it measures only revocation under load (churn.go: token rotation, removal, user
// disable, logout and manual edits against apid and 2 proxyd, counting stale accepts).
//
// With -attack (in a full run) or -attack-only it runs issue 17's resource-exhaustion attacks
// from one address against proxyd as deployed (attack.go: thousands of idle HTTP/2
// connections, slow bodies, unfinished 1 MiB headers) while a legitimate client keeps making
// requests, and reports proxyd's memory against the 64 MiB target.
//
// Targets: cached verify <= 100 ns/op, zero allocations, and at least 10 000 times faster
// than the $5$ slow path in the same run (issue 2); the cached-token row at least 90 % of the
// no-auth row's requests/s (one proxyd).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gatehouse/tokenshadow"
)

type row struct {
	Name        string  `json:"name"`
	Tokens      int     `json:"tokens"`
	Parallelism int     `json:"goroutines"`
	NsPerOp     float64 `json:"ns_per_op"`
	BytesPerOp  int64   `json:"bytes_per_op"`
	AllocsPerOp int64   `json:"allocs_per_op"`
	Iterations  int     `json:"iterations"`
	SlowRatio   float64 `json:"slow_path_ratio,omitempty"` // slow path ns/op divided by this row's
	MaxNs       float64 `json:"max_ns,omitempty"`          // for latency rows: the worst run
}

type report struct {
	Date    string        `json:"date"`    // when the run started, RFC 3339
	Command string        `json:"command"` // how to reproduce it
	Machine machine       `json:"machine"`
	Rows    []row         `json:"rows"`
	Load    *loadReport   `json:"load,omitempty"`   // nil with -e2e=false
	Churn   *churnReport  `json:"churn,omitempty"`  // nil with -churn=false
	Timing  *timingReport `json:"timing,omitempty"` // nil with -e2e=false or -timing 0
	Attack  *attackReport `json:"attack,omitempty"` // nil without -attack
	Targets targets       `json:"targets"`
}

type machine struct {
	CPU        string `json:"cpu"`
	Cores      int    `json:"cores"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Go         string `json:"go"`
	OS         string `json:"os"`
	// The 1, 5 and 15 minute load averages (/proc/loadavg) when the run started and ended:
	// other work on the machine shows here.
	LoadStart string `json:"load_avg_start"`
	LoadEnd   string `json:"load_avg_end"`
}

type targets struct {
	CachedNsPerOp    float64 `json:"cached_ns_per_op"`
	CachedAllocs     int64   `json:"cached_allocs_per_op"`
	SpeedupVsSlow    float64 `json:"speedup_vs_slow_path"`
	MetNs100         bool    `json:"met_cached_le_100ns"`
	MetZeroAllocs    bool    `json:"met_zero_allocs"`
	MetSpeedup10000x bool    `json:"met_speedup_ge_10000"`
	EditNoticedMaxNs float64 `json:"manual_edit_noticed_max_ns"`
	MetEditWithin1s  bool    `json:"met_manual_edit_within_1s"`

	EndToEnd *e2eTargets `json:"end_to_end,omitempty"` // nil with -e2e=false
}

type e2eTargets struct {
	CachedTokenPct   float64 `json:"cached_token_pct_of_no_auth"`
	MetCachedToken90 bool    `json:"met_cached_token_ge_90pct"`
}

// config says what run measures.
type config struct {
	sizes  []int          // token counts of the scaling rows
	load   *loadOptions   // nil: no load table
	churn  bool           // revocation under load (churn.go)
	timing int            // token id timing rounds (timing.go); 0: none
	attack *attackOptions // resource exhaustion (attack.go); nil: none
}

func main() {
	runRole()
	testing.Init()
	jsonOut := flag.Bool("json", false, "print JSON instead of a table")
	benchtime := flag.Duration("benchtime", time.Second, "time per verify case")
	sizesFlag := flag.String("sizes", "10,1000,100000", "token counts for the scaling rows")
	e2e := flag.Bool("e2e", true, "also run the load table: requests through apid and proxyd started as child processes")
	duration := flag.Duration("duration", 5*time.Second, "timed phase of each load row")
	clients := flag.Int("clients", 2*runtime.GOMAXPROCS(0), "load client goroutines, each with its own keep-alive connection, spread over the proxyd processes")
	proxydsFlag := flag.String("proxyds", "1,2", "load configurations: proxyd processes sharing the generation file")
	tokens := flag.Int("tokens", 100_000, "distinct API tokens of the many-tokens load row (written before apid starts)")
	from := flag.String("from", "", "measure nothing: read the results of an earlier -json run from this file and print (or -report) them")
	reportPath := flag.String("report", "", "also rewrite the report section (between "+beginMarker+" and "+endMarker+") of this markdown file")
	churn := flag.Bool("churn", true, "also measure revocation under load (rotate, remove, disable, logout, manual edit; see churn.go)")
	churnOnly := flag.Bool("churn-only", false, "measure only revocation under load and print its table (or JSON)")
	attack := flag.Bool("attack", false, "also run the resource-exhaustion attacks against proxyd (see attack.go; about 3 minutes)")
	attackOnly := flag.Bool("attack-only", false, "run only the resource-exhaustion attacks and print their table (or JSON)")
	var ao attackOptions
	flag.IntVar(&ao.idle, "attack-idle", 5000, "idle HTTP/2 connections the attacker opens")
	flag.IntVar(&ao.slow, "attack-slow", 1000, "slow-body connections the attacker opens")
	flag.IntVar(&ao.headers, "attack-headers", 100, "unfinished-header connections the attacker opens")
	flag.DurationVar(&ao.hold, "attack-hold", 45*time.Second, "how long the attacker keeps each attack's connections at most")
	attackArgs := flag.String("attack-proxyd-args", "", "space-separated flags added to the attacked proxyd's (e.g. \"--max-conns-per-client 0\" to fill the global cap from one address)")
	attackPhases := flag.String("attack-phases", "", "comma-separated attacks to run (default all): "+strings.Join([]string{phaseIdle, phaseSlow, phaseHeaders, phaseStreams}, ", "))
	flag.IntVar(&ao.h2conns, "attack-h2-conns", 100, "HTTP/2 connections of slow-body streams the attacker opens")
	timing := flag.Int("timing", 2000, "token id timing: requests of each kind (0 skips it; needs -e2e)")
	timingOnly := flag.Bool("timing-only", false, "measure only the token id timing and print its table (or JSON)")
	flag.Parse()
	ao.proxydArgs = strings.Fields(*attackArgs)
	if *attackPhases != "" {
		ao.phases = strings.Split(*attackPhases, ",")
	}
	if *attackOnly {
		var rep *attackReport
		var err error
		if *from != "" { // re-render a saved -attack-only -json run
			rep = &attackReport{}
			var data []byte
			if data, err = os.ReadFile(*from); err == nil {
				err = json.Unmarshal(data, rep)
			}
		} else {
			rep, err = runAttack(os.Stderr, ao)
		}
		if err == nil {
			if *jsonOut {
				err = writeJSON(os.Stdout, rep)
			} else {
				rep.markdown(os.Stdout)
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *timingOnly {
		rep, err := runTiming(max(*timing, 1), os.Stderr)
		if err == nil {
			if *jsonOut {
				err = writeJSON(os.Stdout, rep)
			} else {
				rep.markdown(os.Stdout)
				err = checkTiming(rep)
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *churnOnly {
		rep, err := runChurn(os.Stderr, churnOptions{})
		if err == nil {
			if *jsonOut {
				err = writeJSON(os.Stdout, rep)
			} else {
				rep.markdown(os.Stdout)
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	fail := func(code int, err error) {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(code)
	}
	sizes, err := parseSizes("-sizes", *sizesFlag)
	if err != nil {
		fail(2, err)
	}
	cfg := config{sizes: sizes, churn: *churn}
	if *attack {
		cfg.attack = &ao
	}
	if *e2e {
		proxyds, err := parseSizes("-proxyds", *proxydsFlag)
		if err != nil {
			fail(2, err)
		}
		if *duration <= 0 || *clients < 1 || *tokens < 1 {
			fail(2, errors.New("-duration, -clients and -tokens must be positive"))
		}
		if *clients < slices.Max(proxyds) {
			fail(2, fmt.Errorf("-clients %d leaves some of %d proxyd without a client", *clients, slices.Max(proxyds)))
		}
		cfg.load = &loadOptions{duration: *duration, clients: *clients, proxyds: proxyds, tokens: *tokens}
		cfg.timing = max(*timing, 0)
	}
	if err := flag.Set("test.benchtime", benchtime.String()); err != nil {
		fail(2, err)
	}
	if *reportPath != "" {
		if err := checkReportFile(*reportPath); err != nil { // before the run, not after it
			fail(2, err)
		}
	}
	var rep *report
	if *from != "" {
		rep, err = readReport(*from)
	} else if rep, err = run(cfg, os.Stderr); err == nil {
		rep.Command = strings.Join(append([]string{"go run ./bench"}, os.Args[1:]...), " ")
	}
	if err != nil {
		fail(1, err)
	}
	if *reportPath != "" {
		if err := writeReportFile(*reportPath, rep); err != nil {
			fail(1, err)
		}
		fmt.Fprintf(os.Stderr, "rewrote the report section of %s\n", *reportPath)
	}
	if *jsonOut {
		if err := writeJSON(os.Stdout, rep); err != nil {
			fail(1, err)
		}
		return
	}
	printTable(os.Stdout, rep)
}

// readReport reads the JSON a -json run printed.
func readReport(path string) (*report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep report
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, fmt.Errorf("reading results from %s: %w", path, err)
	}
	return &rep, nil
}

// parseSizes reads a comma-separated list of positive numbers given to flag.
func parseSizes(flag, s string) ([]int, error) {
	var sizes []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s: %q is not a positive number", flag, f)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

// run measures every case, and the load table when cfg.load is set; progress goes to progress,
// one line per case.
func run(cfg config, progress io.Writer) (*report, error) {
	sizes := cfg.sizes
	rep := &report{Date: time.Now().UTC().Format(time.RFC3339), Machine: machine{
		CPU: cpuModel(), Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH, LoadStart: loadAvg(),
	}}
	defer func() { rep.Machine.LoadEnd = loadAvg() }()
	fixtures := map[int]*fixture{}
	defer func() {
		for _, f := range fixtures {
			f.close()
		}
	}()
	var slowNs float64
	var cached row
	cs := cases(sizes)
	for i, c := range cs {
		f := fixtures[c.tokens]
		if f == nil {
			fmt.Fprintf(progress, "writing token.shadow with %d tokens...\n", c.tokens)
			var err error
			if f, err = newFixture(c.tokens); err != nil {
				return nil, fmt.Errorf("preparing %d tokens: %w", c.tokens, err)
			}
			fixtures[c.tokens] = f
		}
		if c.cached > 0 {
			fmt.Fprintf(progress, "  caching %d tokens...\n", min(c.cached, len(f.ids)))
			if err := f.warm(c.cached); err != nil {
				return nil, fmt.Errorf("warming %s: %w", c.name, err)
			}
		}
		fmt.Fprintf(progress, "[%d/%d] %s\n", i+1, len(cs), c.name)
		res, err := measure(c.name, func(b *testing.B) { c.run(b, f) })
		if err != nil {
			return nil, err
		}
		r := row{
			Name: c.name, Tokens: c.tokens, Parallelism: 1,
			NsPerOp:     float64(res.T.Nanoseconds()) / float64(res.N),
			BytesPerOp:  res.AllocedBytesPerOp(),
			AllocsPerOp: res.AllocsPerOp(),
			Iterations:  res.N,
		}
		if c.parallel {
			r.Parallelism = runtime.GOMAXPROCS(0)
		}
		if c.baseline {
			slowNs = r.NsPerOp
		}
		if c.ratio && r.NsPerOp > 0 {
			r.SlowRatio = slowNs / r.NsPerOp
		}
		if c.target {
			cached = r
		}
		rep.Rows = append(rep.Rows, r)
	}
	const editRuns = 5
	fmt.Fprintf(progress, "measuring manual-edit latency (%d edits, Watch every %v)...\n", editRuns, tokenshadow.WatchInterval)
	lat, err := measureEdit(editRuns)
	if err != nil {
		return nil, fmt.Errorf("measuring manual edits: %w", err)
	}
	var sum, worst time.Duration
	for _, d := range lat {
		sum += d
		worst = max(worst, d)
	}
	rep.Rows = append(rep.Rows, row{
		Name: fmt.Sprintf("manual edit noticed, mean of %d (max %v)", editRuns, worst.Round(time.Millisecond)), Tokens: 1, Parallelism: 1,
		NsPerOp: float64(sum.Nanoseconds()) / editRuns, MaxNs: float64(worst.Nanoseconds()), Iterations: editRuns,
	})
	rep.Targets.EditNoticedMaxNs = float64(worst.Nanoseconds())
	rep.Targets.MetEditWithin1s = worst < time.Second
	rep.Targets.CachedNsPerOp, rep.Targets.CachedAllocs, rep.Targets.SpeedupVsSlow = cached.NsPerOp, cached.AllocsPerOp, cached.SlowRatio
	rep.Targets.MetNs100 = cached.NsPerOp <= 100
	rep.Targets.MetZeroAllocs = cached.AllocsPerOp == 0
	rep.Targets.MetSpeedup10000x = cached.SlowRatio >= 10000
	if cfg.load != nil {
		if rep.Load, err = runLoad(*cfg.load, progress); err != nil {
			return nil, fmt.Errorf("load: %w", err)
		}
		rep.Targets.EndToEnd = loadTargets(rep.Load)
	}
	if cfg.timing > 0 {
		if rep.Timing, err = runTiming(cfg.timing, progress); err != nil {
			return nil, fmt.Errorf("token id timing: %w", err)
		}
	}
	if cfg.churn {
		if rep.Churn, err = runChurn(progress, churnOptions{}); err != nil {
			return nil, fmt.Errorf("revocation under load: %w", err)
		}
	}
	if cfg.attack != nil {
		if rep.Attack, err = runAttack(progress, *cfg.attack); err != nil {
			return nil, fmt.Errorf("attacks: %w", err)
		}
	}
	return rep, nil
}

// measure runs one case under testing.Benchmark with allocations reported.
func measure(name string, body func(b *testing.B)) (testing.BenchmarkResult, error) {
	var failed error
	res := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		defer func() {
			if b.Failed() {
				failed = fmt.Errorf("case %q failed", name)
			}
		}()
		body(b)
	})
	if failed != nil {
		return res, failed
	}
	if res.N == 0 {
		return res, fmt.Errorf("case %q did not run", name)
	}
	return res, nil
}

func printTable(w io.Writer, rep *report) {
	m := rep.Machine
	fmt.Fprintf(w, "machine: %s, %d cores, GOMAXPROCS=%d, %s %s, load average %s at the start, %s at the end\n\n",
		m.CPU, m.Cores, m.GOMAXPROCS, m.Go, m.OS, m.LoadStart, m.LoadEnd)
	fmt.Fprintf(w, "| %-52s | %14s | %12s | %9s | %12s |\n", "case", "ns/op", "B/op", "allocs/op", "slow/this")
	fmt.Fprintf(w, "|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 54), strings.Repeat("-", 16), strings.Repeat("-", 14), strings.Repeat("-", 11), strings.Repeat("-", 14))
	for _, r := range rep.Rows {
		ratio := ""
		if r.SlowRatio > 0 {
			ratio = fmt.Sprintf("%.0fx", r.SlowRatio)
		}
		fmt.Fprintf(w, "| %-52s | %14s | %12d | %9d | %12s |\n", r.Name, formatNs(r.NsPerOp), r.BytesPerOp, r.AllocsPerOp, ratio)
	}
	t := rep.Targets
	fmt.Fprintf(w, "\ntargets: cached %.1f ns/op (<= 100: %v), %d allocs/op (0: %v), %.0fx faster than the slow path (>= 10000: %v), manual edit noticed within %v (< 1s: %v)\n",
		t.CachedNsPerOp, yes(t.MetNs100), t.CachedAllocs, yes(t.MetZeroAllocs), t.SpeedupVsSlow, yes(t.MetSpeedup10000x),
		time.Duration(t.EditNoticedMaxNs).Round(time.Millisecond), yes(t.MetEditWithin1s))
	if rep.Load != nil {
		fmt.Fprintf(w, "\nload through proxyd (%s):\n\n", loadSetup(rep))
		loadTable(w, rep.Load)
		fmt.Fprintln(w)
		loadDetails(w, rep.Load)
		if t.EndToEnd != nil {
			fmt.Fprintf(w, "\ntargets: cached token %.1f%% of no-auth with 1 proxyd (>= 90: %v)\n", t.EndToEnd.CachedTokenPct, yes(t.EndToEnd.MetCachedToken90))
		}
	}
	if rep.Timing != nil {
		fmt.Fprintln(w, "\ntoken id timing (one client, one request at a time, guard relaxed):")
		fmt.Fprintln(w)
		rep.Timing.markdown(w)
	}
	if rep.Churn != nil {
		fmt.Fprintln(w)
		rep.Churn.markdown(w)
	}
	if rep.Attack != nil {
		fmt.Fprintln(w)
		rep.Attack.markdown(w)
	}
}

func formatNs(ns float64) string {
	if ns < 100 {
		return fmt.Sprintf("%.2f", ns)
	}
	return strconv.FormatFloat(ns, 'f', 0, 64)
}

func yes(b bool) string {
	if b {
		return "met"
	}
	return "MISSED"
}

// loadAvg returns the three load averages of /proc/loadavg.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// cpuModel returns the "model name" of the first CPU in /proc/cpuinfo.
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
