package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// The token id timing table (issue 17, item 8) measures what an attacker measures to tell
// token ids apart: one client, one keep-alive HTTPS connection, one request at a time, against
// a proxyd with the failure guard relaxed (no 3 s delay, no 429), each request an API token
// with a fresh random secret for one of three ids: a token in use (its secret verified, so
// cached), a token not used since the last change (not cached), and a well-formed id that has no
// token. The kinds are interleaved, each round in a random order, so that drift in the machine's
// load falls on all of them alike. Every refusal is to cost one crypt; the table shows how far
// the latencies of the kinds still differ, and the separability of each pair: the best accuracy
// with which a threshold on one request's latency tells the two kinds apart (50 %: chance; the
// attack measured 0.92 against 0.19 ms, no overlap: 100 %).

// timingReport is the token id timing table.
type timingReport struct {
	Rounds         int          `json:"rounds"` // requests of each kind
	Kinds          []timingKind `json:"kinds"`
	Pairs          []timingPair `json:"pairs"`
	TokenCacheHits uint64       `json:"token_cache_hits"` // proxyd's counters over the timed rounds
	TokenCacheMiss uint64       `json:"token_cache_misses"`
}

type timingKind struct {
	Key    string         `json:"key"`
	Name   string         `json:"name"`
	Status map[string]int `json:"status"` // answers by status code; "error" counts transport errors
	P1Ns   int64          `json:"p1_ns"`
	P50Ns  int64          `json:"p50_ns"`
	P99Ns  int64          `json:"p99_ns"`
	MaxNs  int64          `json:"max_ns"`
	lat    []time.Duration
}

// timingPair compares two kinds: Separability is the best balanced accuracy of a latency
// threshold (0.5 to 1), which is 0.5 + D/2 for the two-sample Kolmogorov-Smirnov statistic D;
// Chance is what two samples of these sizes from one distribution stay under in 95 % of runs
// (D's 5 % critical value, 1.358 × sqrt((n+m)/(n·m))): a Separability above it is a real
// difference. Overlap says whether their p1..p99 ranges overlap.
type timingPair struct {
	A            string  `json:"a"`
	B            string  `json:"b"`
	Separability float64 `json:"separability"`
	Chance       float64 `json:"separability_95pct_by_chance"`
	Overlap      bool    `json:"p1_p99_overlap"`
}

// timingIdle is the token that is made but never used.
const timingIdle = "idle"

// runTiming starts apid and one proxyd (guard relaxed, metrics on), makes a second token that
// is never used, uses the stack's token once with its secret (so proxyd caches it), sends
// rounds/10 untimed warm-up rounds and then rounds timed ones.
func runTiming(rounds int, progress io.Writer) (_ *timingReport, err error) {
	fmt.Fprintf(progress, "token id timing: starting apid and proxyd (guard relaxed), %d requests of each kind...\n", rounds)
	s, err := startStack(stackOptions{conns: 1, proxydArgs: relaxed.args()})
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := s.close(); cerr != nil && err == nil {
			err = fmt.Errorf("stopping the daemons: %w", cerr)
		}
	}()
	metrics, err := s.daemons[1].metricsURL()
	if err != nil {
		return nil, err
	}
	// Made before the token in use is primed: making it bumps the generation.
	if _, err := call(s.apid, "POST", "http://apid/api2/json/access/users/"+e2eUser+"/token/"+timingIdle, url.Values{}, nil); err != nil {
		return nil, fmt.Errorf("creating the unused token: %w", err)
	}
	if code, err := timedGet(s, s.token, nil); err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("using the token once: status %d, %v", code, err)
	}
	secrets := randomSecrets(1)
	kinds := []timingKind{
		{Key: "in use", Name: "token in use (its secret cached)"},
		{Key: "unused", Name: "token not used since the last change"},
		{Key: "unknown", Name: "no such token id"},
	}
	ids := []string{s.tokenID, e2eUser + "!" + timingIdle, e2eUser + "!nosuch"}
	for i := range kinds {
		kinds[i].Status = map[string]int{}
	}
	order := []int{0, 1, 2}
	rnd := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	round := func(record bool) {
		rnd.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, k := range order {
			var lat time.Duration
			code, err := timedGet(s, tokenHeader(ids[k], secrets()), &lat)
			if !record {
				continue
			}
			kinds[k].lat = append(kinds[k].lat, lat)
			if err != nil {
				kinds[k].Status["error"]++
			} else {
				kinds[k].Status[strconv.Itoa(code)]++
			}
		}
	}
	for range max(rounds/10, 5) {
		round(false)
	}
	before, err := scrape(http.DefaultClient, metrics)
	if err != nil {
		return nil, fmt.Errorf("reading proxyd's metrics: %w", err)
	}
	for range rounds {
		round(true)
	}
	after, err := scrape(http.DefaultClient, metrics)
	if err != nil {
		return nil, fmt.Errorf("reading proxyd's metrics: %w", err)
	}
	rep := &timingReport{Rounds: rounds, TokenCacheHits: after.hits - before.hits, TokenCacheMiss: after.misses - before.misses}
	for i := range kinds {
		k := &kinds[i]
		slices.Sort(k.lat)
		k.P1Ns, k.P50Ns, k.P99Ns = int64(percentile(k.lat, 1)), int64(percentile(k.lat, 50)), int64(percentile(k.lat, 99))
		if len(k.lat) > 0 {
			k.MaxNs = int64(k.lat[len(k.lat)-1])
		}
	}
	for _, p := range [][2]int{{0, 2}, {1, 2}, {0, 1}} {
		a, b := kinds[p[0]], kinds[p[1]]
		n, m := float64(len(a.lat)), float64(len(b.lat))
		rep.Pairs = append(rep.Pairs, timingPair{A: a.Key, B: b.Key, Separability: separability(a.lat, b.lat),
			Chance: 0.5 + 1.358*math.Sqrt((n+m)/(n*m))/2, Overlap: a.P1Ns <= b.P99Ns && b.P1Ns <= a.P99Ns})
	}
	rep.Kinds = kinds
	return rep, nil
}

// timedGet sends GET /version with the Authorization header on the stack's client (one
// keep-alive connection) and reads the whole answer; lat, if not nil, gets the time from just
// before the request is written to the end of the body.
func timedGet(s *stack, authz string, lat *time.Duration) (int, error) {
	req, err := http.NewRequest("GET", s.url+"/version", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", authz)
	t0 := time.Now()
	resp, err := s.client.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if lat != nil {
		*lat = time.Since(t0)
	}
	if err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

// separability is the best balanced accuracy with which one threshold on a latency tells
// sorted samples a from sorted samples b: 0.5 when no threshold does better than a coin, 1
// when the two do not overlap. Ties are not split (equal latencies fall on one side together).
func separability(a, b []time.Duration) float64 {
	if len(a) == 0 || len(b) == 0 {
		return 0
	}
	best := 0.5
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		// The next threshold: every sample <= t is called "a".
		var t time.Duration
		switch {
		case j == len(b) || (i < len(a) && a[i] <= b[j]):
			t = a[i]
		default:
			t = b[j]
		}
		for i < len(a) && a[i] <= t {
			i++
		}
		for j < len(b) && b[j] <= t {
			j++
		}
		acc := (float64(i)/float64(len(a)) + 1 - float64(j)/float64(len(b))) / 2
		best = max(best, acc, 1-acc)
	}
	return best
}

// checkTiming reports what is wrong with a timing table: an answer other than 401, a cache hit
// (every refusal is to take the slow path), or a miss count other than the requests sent.
func checkTiming(rep *timingReport) error {
	var errs []error
	total := 0
	for _, k := range rep.Kinds {
		n := 0
		for _, c := range k.Status {
			n += c
		}
		total += n
		if k.Status["401"] != rep.Rounds || n != rep.Rounds {
			errs = append(errs, fmt.Errorf("%s: answers %v; want %d × 401", k.Name, k.Status, rep.Rounds))
		}
	}
	if rep.TokenCacheHits != 0 || rep.TokenCacheMiss != uint64(total) {
		errs = append(errs, fmt.Errorf("token cache %d hits, %d misses for %d refusals; want every refusal a miss (a crypt)",
			rep.TokenCacheHits, rep.TokenCacheMiss, total))
	}
	return errors.Join(errs...)
}

// markdown writes the timing table.
func (rep *timingReport) markdown(w io.Writer) {
	fmt.Fprintln(w, "| token id (wrong secret) | requests | answers | p1 | p50 | p99 | max |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---:|")
	for _, k := range rep.Kinds {
		n := 0
		for _, c := range k.Status {
			n += c
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", k.Name, groupDigits(int64(n)), statusList(k.Status),
			formatLatency(k.P1Ns), formatLatency(k.P50Ns), formatLatency(k.P99Ns), formatLatency(k.MaxNs))
	}
	fmt.Fprintln(w)
	for _, p := range rep.Pairs {
		overlap := "overlap"
		if !p.Overlap {
			overlap = "do not overlap"
		}
		fmt.Fprintf(w, "- %s vs %s id: p1..p99 ranges %s; the best latency threshold tells them apart %.1f %% of the time "+
			"(50 %%: a coin; up to %.1f %%: chance at this sample size, 95 %% of the time).\n",
			p.A, p.B, overlap, 100*p.Separability, 100*p.Chance)
	}
	fmt.Fprintf(w, "\nproxyd's token cache over the timed requests: %s hits, %s misses.\n",
		groupDigits(int64(rep.TokenCacheHits)), groupDigits(int64(rep.TokenCacheMiss)))
}
