package main

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"gatehouse/layout"
)

// loadOptions say how the load table is measured.
type loadOptions struct {
	duration time.Duration // timed phase of each row
	clients  int           // client goroutines, each with its own keep-alive connection
	proxyds  []int         // configurations: how many proxyd processes share the generation file
	tokens   int           // distinct tokens of the many-tokens row
}

// loadReport is the load table: every case run in every configuration.
type loadReport struct {
	DurationNs int64     `json:"duration_per_row_ns"`
	Clients    int       `json:"clients"`
	Tokens     int       `json:"distinct_tokens"`
	Rows       []loadRow `json:"rows"`
}

// loadRow is one case in one configuration. Latencies are client-side, from just before the
// request is written to the end of the answer's body. Served, TokenCacheHits and
// TokenCacheMisses are the differences of the proxyd's own counters (/metrics) over the timed
// phase, summed over the row's proxyd processes.
type loadRow struct {
	Case             string         `json:"case"`
	Name             string         `json:"name"`
	Proxyds          int            `json:"proxyds"`
	Clients          int            `json:"clients"`
	Want             int            `json:"expected_status"`
	Requests         int            `json:"requests"`
	Seconds          float64        `json:"seconds"`
	ReqPerSec        float64        `json:"requests_per_s"`
	P50Ns            int64          `json:"p50_ns"`
	P99Ns            int64          `json:"p99_ns"`
	MaxNs            int64          `json:"max_ns"`
	VsNoAuth         float64        `json:"ratio_to_no_auth"` // requests/s over the no-auth row's, same configuration
	Status           map[string]int `json:"status"`           // answers by status code; "error" counts transport errors
	Unexpected       int            `json:"unexpected"`       // answers other than Want, and errors
	PerProxyd        []int          `json:"requests_per_proxyd"`
	Served           []uint64       `json:"served_per_proxyd"` // proxyd's request-duration histogram count
	TokenCacheHits   uint64         `json:"token_cache_hits"`
	TokenCacheMisses uint64         `json:"token_cache_misses"`
	SpentFailures    int            `json:"failures_before_timing,omitempty"` // the guard row: burst spent first
}

// variant is a set of proxyd flags; each row runs on the proxyd processes of one variant, all
// on the same apid, config and generation file. Every variant serves /metrics on 127.0.0.1:0.
type variant int

const (
	// relaxed: the stack's own proxyd, failure answers not held back and a failure limit no
	// client reaches: 10^6 failures, one forgiven per µs, so a client is refused only when its
	// failures run 1 s ahead of the clock. (With one forgiven per ns the tolerance is 1 ms,
	// and a request whose time was read before its goroutine was descheduled for longer got
	// a 429 on the loaded VM.) Failures are still written to the auth log.
	relaxed variant = iota
	// noCache: relaxed and --token-cache=false.
	noCache
	// guarded: the failure guard as deployed (proxyd's defaults): 10 failures per client
	// address, one forgiven per 6 s, every failed answer held 3 s.
	guarded
)

func (v variant) args() []string {
	metrics := []string{"--metrics-listen", "127.0.0.1:0"}
	relax := []string{"--fail-delay", "-1s", "--fail-burst", "1000000", "--fail-refill", "1us"}
	switch v {
	case noCache:
		return slices.Concat(metrics, relax, []string{"--token-cache=false"})
	case guarded:
		return slices.Concat(metrics, []string{"--fail-delay", "3s", "--fail-burst", "10", "--fail-refill", "6s"})
	}
	return slices.Concat(metrics, relax)
}

// guardBurst is the guarded variant's --fail-burst: the failures the guard row sends before
// timing.
const guardBurst = 10

// A loadCase is one kind of request. value, when set, returns for client goroutine g the
// header value of each request in turn.
type loadCase struct {
	key, name string
	variant   variant
	path      string
	header    string
	value     func(ls *loadStack, g int) func() string
	want      int
	baseline  bool // the no-auth row the ratios divide
	target    bool // the cached-token row the target judges
	prime     bool // each connection's untimed first request carries the valid token
	spend     int  // failures each proxyd gets before timing
}

func loadCases(tokens int) []loadCase {
	fixed := func(v func(ls *loadStack) string) func(*loadStack, int) func() string {
		return func(ls *loadStack, _ int) func() string {
			s := v(ls)
			return func() string { return s }
		}
	}
	token := fixed(func(ls *loadStack) string { return ls.token })
	return []loadCase{
		{key: "no-auth", name: "no auth (GET /ping)", path: "/ping", want: 200, baseline: true},
		{key: "ticket", name: "ticket cookie", path: "/version", header: "Cookie", want: 200,
			value: fixed(func(ls *loadStack) string { return "PBSAuthCookie=" + ls.ticket })},
		{key: "token", name: "API token, cached", path: "/version", header: "Authorization", want: 200, target: true, value: token},
		{key: "token-uncached", name: "API token, uncached (--token-cache=false)", variant: noCache, path: "/version",
			header: "Authorization", want: 200, value: token},
		// The token is used first (prime), so its secret is cached; every refusal still takes
		// the slow path, a crypt (tokenshadow, Timing): all misses.
		{key: "wrong-secret", name: "wrong secret, guard relaxed (401, token in use)", path: "/version", header: "Authorization",
			want: 401, prime: true, value: wrongSecret},
		{key: "wrong-secret-guard", name: "wrong secret, guard as deployed (429)", variant: guarded, path: "/version",
			header: "Authorization", want: 429, spend: guardBurst, value: wrongSecret},
		{key: "many-tokens", name: fmt.Sprintf("%s distinct tokens, cycled", groupDigits(int64(tokens))), path: "/version",
			header: "Authorization", want: 200, value: manyTokens},
	}
}

// wrongSecret is the attacker: the valid token id with a fresh random secret (UUID-shaped)
// every request.
func wrongSecret(ls *loadStack, g int) func() string {
	secret := randomSecrets(uint64(g))
	return func() string { return tokenHeader(ls.tokenID, secret()) }
}

// randomSecrets returns a generator of random UUID-shaped secrets, seeded with seed and the
// clock.
func randomSecrets(seed uint64) func() string {
	rnd := rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))
	var raw [16]byte
	var hx [32]byte
	return func() string {
		for i := 0; i < len(raw); i += 8 {
			v := rnd.Uint64()
			for j := range 8 {
				raw[i+j] = byte(v >> (8 * j))
			}
		}
		hex.Encode(hx[:], raw[:])
		h := string(hx[:])
		return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	}
}

// manyTokens cycles goroutine g over the many tokens g, g+C, g+2C, ... (C the number of
// goroutines), so that the goroutines together go through all of them before any repeats.
func manyTokens(ls *loadStack, g int) func() string {
	i := g
	return func() string {
		h := ls.many[i%len(ls.many)]
		i += ls.clients
		return h
	}
}

// loadStack is a stack with the proxyd processes of each variant (started on first use), the
// many tokens' headers, and the client count.
type loadStack struct {
	*stack
	clients int
	procs   map[variant][]proxydRef
	many    []string // Authorization header values of the many tokens
}

// proxydRef is one proxyd: its API URL and its /metrics URL.
type proxydRef struct{ url, metrics string }

const manyUser = "many@pbs"

// startLoadStack starts apid and n proxyd (the relaxed variant) on a config that already holds
// tokens tokens of manyUser, all with secret (hash is its $5$ hash), written before apid starts.
func startLoadStack(n, clients, tokens int, hash, secret string) (*loadStack, error) {
	ids := tokenIDs(manyUser, tokens)
	s, err := startStack(stackOptions{conns: clients, proxyds: n, proxydArgs: relaxed.args(),
		prepare: func(d layout.Dirs) error { return writeManyTokens(d, ids, hash) }})
	if err != nil {
		return nil, err
	}
	ls := &loadStack{stack: s, clients: clients, procs: map[variant][]proxydRef{}}
	for i, u := range s.urls {
		m, err := s.daemons[1+i].metricsURL()
		if err != nil {
			return nil, errors.Join(err, s.close())
		}
		ls.procs[relaxed] = append(ls.procs[relaxed], proxydRef{url: u, metrics: m})
	}
	for _, id := range ids {
		ls.many = append(ls.many, tokenHeader(id, secret))
	}
	return ls, nil
}

// writeManyTokens writes user.cfg (root@pam and manyUser with ids) and token.shadow (every id
// with hash), as apid would have written them, mode 0640.
func writeManyTokens(d layout.Dirs, ids []string, hash string) error {
	var b strings.Builder
	b.WriteString("user: root@pam\n\tcomment Superuser\n\tenable true\n\texpire 0\n\nuser: " + manyUser + "\n\tenable true\n")
	for _, id := range ids {
		b.WriteString("\ntoken: " + id + "\n\tenable true\n")
	}
	if err := os.WriteFile(d.UserCfg(), []byte(b.String()), 0o640); err != nil {
		return err
	}
	return os.WriteFile(d.TokenShadow(), shadowFile(ids, hash), 0o640)
}

// proxyds returns the proxyd processes of v, starting as many as the stack has when v has none.
func (ls *loadStack) proxyds(v variant) ([]proxydRef, error) {
	if ps := ls.procs[v]; ps != nil {
		return ps, nil
	}
	for range ls.urls {
		u, err := ls.addProxyd(v.args()...)
		if err != nil {
			return nil, err
		}
		m, err := ls.daemons[len(ls.daemons)-1].metricsURL()
		if err != nil {
			return nil, err
		}
		ls.procs[v] = append(ls.procs[v], proxydRef{url: u, metrics: m})
	}
	return ls.procs[v], nil
}

// metricsURL returns the /metrics URL a proxyd logged (msg="metrics listening" addr=...).
func (d *daemon) metricsURL() (string, error) {
	for _, line := range strings.Split(d.log.String(), "\n") {
		if !strings.Contains(line, `msg="metrics listening"`) {
			continue
		}
		for _, f := range strings.Fields(line) {
			if a, ok := strings.CutPrefix(f, "addr="); ok {
				return "http://" + a + "/metrics", nil
			}
		}
	}
	return "", fmt.Errorf("%s logged no metrics address:\n%s", d.name, d.log.String())
}

// counts are the proxyd counters a row reads before and after its timed phase.
type counts struct{ served, hits, misses uint64 }

// scrape reads one proxyd's counters from /metrics.
func scrape(c *http.Client, u string) (counts, error) {
	resp, err := c.Get(u)
	if err != nil {
		return counts{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return counts{}, fmt.Errorf("GET %s = %s", u, resp.Status)
	}
	var n counts
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		sp := strings.LastIndexByte(line, ' ') // labels may hold spaces; the value is last
		if sp < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		name, v := line[:sp], line[sp+1:]
		var dst *uint64
		switch {
		case strings.HasPrefix(name, "gatehouse_http_request_duration_seconds_count{"):
			dst = &n.served
		case name == "gatehouse_token_cache_hits_total":
			dst = &n.hits
		case name == "gatehouse_token_cache_misses_total":
			dst = &n.misses
		default:
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return counts{}, fmt.Errorf("GET %s: %q: %w", u, sc.Text(), err)
		}
		*dst += uint64(f)
	}
	return n, sc.Err()
}

func scrapeAll(ps []proxydRef) ([]counts, error) {
	out := make([]counts, len(ps))
	for i, p := range ps {
		var err error
		if out[i], err = scrape(http.DefaultClient, p.metrics); err != nil {
			return nil, fmt.Errorf("reading proxyd's metrics: %w", err)
		}
	}
	return out, nil
}

// worker is one client goroutine: its own transport (one keep-alive HTTP/1.1 connection to
// one proxyd), a reused request, and what it saw. Nothing is shared while the row runs.
type worker struct {
	client *http.Client
	req    *http.Request
	hval   []string // the request's header value slice, rewritten before each request
	next   func() string
	lat    []time.Duration
	status map[int]int
	errs   int
}

func (ls *loadStack) newWorker(c loadCase, g int, url string) (*worker, error) {
	tr := ls.client.Transport.(*http.Transport).Clone()
	tr.MaxConnsPerHost, tr.MaxIdleConnsPerHost = 1, 1
	req, err := http.NewRequest("GET", url+c.path, nil)
	if err != nil {
		return nil, err
	}
	w := &worker{client: &http.Client{Transport: tr}, req: req, status: map[int]int{}, lat: make([]time.Duration, 0, 1<<14)}
	if c.header != "" {
		w.hval = []string{""}
		req.Header[c.header] = w.hval
		w.next = c.value(ls, g)
	}
	return w, nil
}

// do sends one request with value (if the case has a header) and reads the whole answer.
func (w *worker) do(value string) (int, error) {
	if w.hval != nil {
		w.hval[0] = value
	}
	resp, err := w.client.Do(w.req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

// run sends requests until deadline, recording each one's latency and status.
func (w *worker) run(deadline time.Time) {
	for {
		var v string
		if w.next != nil {
			v = w.next()
		}
		t0 := time.Now()
		if !t0.Before(deadline) {
			return
		}
		code, err := w.do(v)
		w.lat = append(w.lat, time.Since(t0))
		if err != nil {
			w.errs++
			continue
		}
		w.status[code]++
	}
}

// reset forgets what the worker saw (after the warm-up).
func (w *worker) reset() {
	w.lat = w.lat[:0]
	clear(w.status)
	w.errs = 0
}

// parallel runs f(i) for i in [0, n) on n goroutines and returns the first error.
func parallel(n int, f func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = f(i) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// runRow measures one case: the guard's burst spent (spend), one untimed request per
// connection (TLS handshake, and the valid token when prime), an untimed warm-up of d/5 (the
// daemons' and the client's buffers, pools and heap grown as the load needs), the counters
// read, then every worker sends requests for d.
func (ls *loadStack) runRow(c loadCase, d time.Duration) (loadRow, error) {
	ps, err := ls.proxyds(c.variant)
	if err != nil {
		return loadRow{}, err
	}
	r := loadRow{Case: c.key, Name: c.name, Proxyds: len(ps), Clients: ls.clients, Want: c.want}
	if c.spend > 0 {
		n, err := ls.spend(c, ps)
		if err != nil {
			return r, err
		}
		r.SpentFailures = n
	}
	ws := make([]*worker, ls.clients)
	for g := range ws {
		if ws[g], err = ls.newWorker(c, g, ps[g%len(ps)].url); err != nil {
			return r, err
		}
		defer ws[g].client.CloseIdleConnections()
	}
	err = parallel(len(ws), func(g int) error {
		w := ws[g]
		var v string
		if w.next != nil {
			v = w.next()
		}
		if c.prime {
			v = ls.token
		}
		_, err := w.do(v)
		return err
	})
	if err != nil {
		return r, fmt.Errorf("warming up: %w", err)
	}
	warm := time.Now().Add(d / 5)
	parallel(len(ws), func(g int) error { ws[g].run(warm); return nil })
	for _, w := range ws {
		w.reset()
	}
	before, err := scrapeAll(ps)
	if err != nil {
		return r, err
	}
	start := time.Now()
	deadline := start.Add(d)
	parallel(len(ws), func(g int) error { ws[g].run(deadline); return nil })
	r.Seconds = time.Since(start).Seconds()
	after, err := scrapeAll(ps)
	if err != nil {
		return r, err
	}
	r.summarize(ws, before, after)
	return r, nil
}

// spend sends c.spend failures to each proxyd at once, each on its own connection, so that the
// guard's burst is used up before timing; it returns how many got the 401 a failure gets.
func (ls *loadStack) spend(c loadCase, ps []proxydRef) (int, error) {
	got := make([]int, len(ps)*c.spend)
	err := parallel(len(got), func(i int) error {
		w, err := ls.newWorker(c, ls.clients+i, ps[i%len(ps)].url)
		if err != nil {
			return err
		}
		defer w.client.CloseIdleConnections()
		got[i], err = w.do(w.next())
		return err
	})
	n := 0
	for _, code := range got {
		if code == http.StatusUnauthorized {
			n++
		}
	}
	return n, err
}

// summarize fills the row from the workers and the counters.
func (r *loadRow) summarize(ws []*worker, before, after []counts) {
	var lat []time.Duration
	r.Status = map[string]int{}
	r.PerProxyd = make([]int, r.Proxyds)
	for g, w := range ws {
		lat = append(lat, w.lat...)
		r.PerProxyd[g%r.Proxyds] += len(w.lat)
		for code, n := range w.status {
			r.Status[strconv.Itoa(code)] += n
			if code != r.Want {
				r.Unexpected += n
			}
		}
		if w.errs > 0 {
			r.Status["error"] += w.errs
			r.Unexpected += w.errs
		}
	}
	r.Requests = len(lat)
	if r.Seconds > 0 {
		r.ReqPerSec = float64(r.Requests) / r.Seconds
	}
	slices.Sort(lat)
	r.P50Ns, r.P99Ns = int64(percentile(lat, 50)), int64(percentile(lat, 99))
	if len(lat) > 0 {
		r.MaxNs = int64(lat[len(lat)-1])
	}
	for i := range before {
		r.Served = append(r.Served, after[i].served-before[i].served)
		r.TokenCacheHits += after[i].hits - before[i].hits
		r.TokenCacheMisses += after[i].misses - before[i].misses
	}
}

// percentile returns the nearest-rank p-th percentile of sorted latencies (0 when empty).
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100 // ceil(n*p/100), 1-based
	return sorted[max(i, 1)-1]
}

// runLoad measures every case in every configuration, progress one line per row. The
// configurations each get their own stack (apid and proxyd restarted, the many tokens
// written again), so that one's caches and guard state do not carry into the next.
func runLoad(o loadOptions, progress io.Writer) (*loadReport, error) {
	hashes, secrets, err := scratchHashes(1)
	if err != nil {
		return nil, fmt.Errorf("hashing the many tokens' secret: %w", err)
	}
	rep := &loadReport{DurationNs: o.duration.Nanoseconds(), Clients: o.clients, Tokens: o.tokens}
	cs := loadCases(o.tokens)
	for _, n := range o.proxyds {
		fmt.Fprintf(progress, "starting apid and %d proxyd (%d tokens written first), a user, a ticket and a token...\n", n, o.tokens)
		rows, err := runConfig(n, o, cs, hashes[0], secrets[0], progress)
		if err != nil {
			return nil, fmt.Errorf("%d proxyd: %w", n, err)
		}
		rep.Rows = append(rep.Rows, rows...)
	}
	return rep, nil
}

func runConfig(n int, o loadOptions, cs []loadCase, hash, secret string, progress io.Writer) (_ []loadRow, err error) {
	ls, err := startLoadStack(n, o.clients, o.tokens, hash, secret)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := ls.close(); cerr != nil && err == nil {
			err = fmt.Errorf("stopping the daemons: %w", cerr)
		}
	}()
	var rows []loadRow
	var base float64
	for i, c := range cs {
		fmt.Fprintf(progress, "[load %d proxyd, %d/%d] %s\n", n, i+1, len(cs), c.name)
		r, err := ls.runRow(c, o.duration)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		if c.baseline {
			base = r.ReqPerSec
		}
		if base > 0 {
			r.VsNoAuth = r.ReqPerSec / base
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// loadTargets judges the cached-token row against no auth, with one proxyd.
func loadTargets(rep *loadReport) *e2eTargets {
	for _, c := range loadCases(rep.Tokens) {
		if !c.target {
			continue
		}
		for _, r := range rep.Rows {
			if r.Case == c.key && r.Proxyds == 1 {
				return &e2eTargets{CachedTokenPct: 100 * r.VsNoAuth, MetCachedToken90: r.VsNoAuth >= 0.9}
			}
		}
	}
	return nil
}
