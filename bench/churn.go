package main

// Revocation under load (go run ./bench -churn; runChurn). apid and two proxyd run as child
// processes on one generation file (startStack); clients goroutines (4) send GET /version over
// keep-alive HTTPS, spread over the proxyds, while the driver changes credentials with the real
// gatectl binary (built once with go build), through proxyd's API, or by editing token.shadow as
// an editor does. Clients send every credential of the published set in turn (the current one
// and the ones just replaced) and record each answer: start and end (monotonic, as offsets from
// one base time in this process), the credential's version, the proxyd and the status.
//
// Kinds, each a phase with its own rounds:
//   - token rotate: gatectl token rotate, 100 times in a row. The old secret must be refused by
//     every request that starts after gatectl exited 0 with the new secret; noticed = the new
//     secret answered 200 by every proxyd.
//   - token remove: gatectl token remove, then token generate for the next round. Noticed = the
//     removed secret refused by every proxyd.
//   - user disable: gatectl user update --enable=false, then --enable for the next round; the
//     clients send the user's token and a ticket (a new login each round: the disable ended the
//     old one for good). Both must be refused from the disable's return until the re-enable
//     starts (a request still running when it starts may pass).
//   - logout: two sessions log in (one through each proxyd), then one logs out through proxyd
//     (DELETE /access/ticket), which revokes both; the tickets of earlier rounds stay in the set.
//   - manual edit: token.shadow rewritten as an editor does (temp file in the same directory,
//     renamed over it; no generation bump) with a new hash for the token. A proxyd sees it at its
//     Watch poll (tokenshadow.WatchInterval) or, sooner, at the first request with the new
//     secret, which differs from the cached one and so is checked on the slow path, which reads
//     the changed file; the clients send it from before the rename. Until then the old secret is
//     accepted by design. Noticed = on every proxyd the new secret accepted and the old one
//     refused (by a request started after the rename); target within 1 s. A stale accept is an
//     old secret accepted by a proxyd after it had noticed.
//
// A stale accept is a 200 for a request that started after the change returned and carried a
// credential the change ended. The delays are measured from the change's return (gatectl exit,
// the logout's answer; for an edit the moment before the rename) to the end of the request that
// showed it on the last proxyd. The driver waits for each round to be noticed before the next
// (error after churnOptions.timeout), on signals from the clients, never on a sleep.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/tokenshadow"
)

// churnOptions size a churn run; zero values take the defaults.
type churnOptions struct {
	clients   int           // client goroutines, spread over the proxyds; default 4
	proxyds   int           // proxyd processes; default 2
	rotations int           // default 100
	removes   int           // default 10
	disables  int           // default 10
	logouts   int           // default 10
	edits     int           // default 10
	gatectl   string        // a built gatectl; empty: built with go build into a temp dir
	timeout   time.Duration // how long a round may take to be noticed by every proxyd; default 10 s
}

func (o churnOptions) withDefaults() churnOptions {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.clients, 4)
	def(&o.proxyds, 2)
	def(&o.rotations, 100)
	def(&o.removes, 10)
	def(&o.disables, 10)
	def(&o.logouts, 10)
	def(&o.edits, 10)
	if o.timeout <= 0 {
		o.timeout = 10 * time.Second
	}
	return o
}

// churnReport is the result of runChurn: one row per kind.
type churnReport struct {
	Clients int        `json:"clients"`
	Proxyds int        `json:"proxyds"`
	Kinds   []churnRow `json:"kinds"`
}

// churnRow is one kind of change. Durations are in nanoseconds.
type churnRow struct {
	Kind         string  `json:"kind"`
	Rounds       int     `json:"rounds"`
	Requests     int     `json:"requests"`
	Accepted     int     `json:"accepted"`      // 200 answers
	Refused      int     `json:"refused"`       // 401 answers
	Other        int     `json:"other"`         // any other status (none expected)
	StaleAccepts int     `json:"stale_accepts"` // must be 0
	Noticed      int     `json:"noticed"`       // rounds every proxyd showed
	Shows        string  `json:"noticed_means"` // what "noticed" is for this kind
	NoticedP50   float64 `json:"noticed_p50_ns"`
	NoticedMean  float64 `json:"noticed_mean_ns"`
	NoticedMax   float64 `json:"noticed_max_ns"`
	CommandP50   float64 `json:"command_p50_ns"` // the change itself: gatectl run, logout call, rename
	CommandMax   float64 `json:"command_max_ns"`
	TargetMax    float64 `json:"noticed_target_ns,omitempty"` // manual edit: 1 s
	Met          bool    `json:"met"`                         // no stale accept, every round noticed (within the target)

	OtherStatus  map[int]int `json:"other_statuses,omitempty"` // status -> answers, for Other
	DaemonErrors []string    `json:"daemon_errors,omitempty"`  // the daemons' level=ERROR log lines during the kind
}

// editTarget is the bound for a manual edit to be noticed.
const editTarget = time.Second

// Row names, also used by the tests.
const (
	kindRotate  = "token rotate (gatectl)"
	kindRemove  = "token remove (gatectl)"
	kindDisable = "user disable (gatectl)"
	kindLogout  = "logout (DELETE /access/ticket)"
	kindEdit    = "manual edit of token.shadow"
)

// runChurn starts apid and o.proxyds proxyd, measures every kind and stops them. progress gets a
// line per kind.
func runChurn(progress io.Writer, o churnOptions) (rep *churnReport, err error) {
	o = o.withDefaults()
	if o.gatectl == "" {
		tmp, err := os.MkdirTemp("", "gatehouse-churn-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		fmt.Fprintf(progress, "building gatectl...\n")
		if o.gatectl, err = buildGatectl(tmp); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(progress, "starting apid and %d proxyd, making a user, a ticket and a token...\n", o.proxyds)
	s, err := startStack(stackOptions{conns: o.clients, proxyds: o.proxyds,
		// The clients fail on purpose all the time: no 429 (a failure costs 1 ns and a client
		// may owe 1 s: a request's clock is read before it waits for a core, so a tolerance of
		// 1 ms gave a few 429s), and --fail-delay -1s holds no answer back.
		proxydArgs: []string{"--fail-burst", "1000000000", "--fail-refill", "1ns"}})
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := s.close(); cerr != nil && err == nil {
			err = fmt.Errorf("stopping the daemons: %w", cerr)
		}
	}()
	r := &churnRun{s: s, o: o, base: time.Now(), tokenid: s.tokenID}
	r.token = r.newCred("Authorization", s.token)
	rep = &churnReport{Clients: o.clients, Proxyds: o.proxyds}
	for _, k := range []struct {
		name, shows string
		rounds      int
		target      time.Duration
		run         func(n int) ([]change, error)
	}{
		{kindRotate, "new secret accepted", o.rotations, 0, r.rotations},
		{kindRemove, "secret refused", o.removes, 0, r.removals},
		{kindDisable, "token and ticket refused", o.disables, 0, r.disables},
		{kindLogout, "both sessions refused", o.logouts, 0, r.logouts},
		{kindEdit, "new accepted, old refused", o.edits, editTarget, r.edits},
	} {
		fmt.Fprintf(progress, "[churn] %s, %d rounds, %d clients on %d proxyd...\n", k.name, k.rounds, o.clients, o.proxyds)
		var changes []change
		samples, err := r.phase(func() (err error) {
			changes, err = k.run(k.rounds)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k.name, err)
		}
		row := analyse(k.name, k.shows, k.target, o.proxyds, changes, samples)
		row.DaemonErrors = r.newErrors()
		rep.Kinds = append(rep.Kinds, row)
	}
	return rep, nil
}

// buildGatectl builds cmd/gatectl into dir (the go command is needed; run inside the module).
func buildGatectl(dir string) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("building gatectl: the go command is needed: %w", err)
	}
	bin := filepath.Join(dir, "gatectl")
	if out, err := exec.Command(gobin, "build", "-o", bin, "gatehouse/cmd/gatectl").CombinedOutput(); err != nil {
		return "", fmt.Errorf("building gatectl (go build gatehouse/cmd/gatectl, inside the gatehouse module): %w\n%s", err, out)
	}
	return bin, nil
}

// cred is one credential the clients send: a header and the version that names it.
type cred struct {
	version int32
	header  string
	value   string
}

// sample is one answer. Times are nanoseconds since churnRun.base (monotonic clock).
type sample struct {
	start, end int64
	version    int32
	status     int16
	proxy      uint8
}

// change is one round's change as the driver made it.
type change struct {
	at     int64         // when it returned (edit: just before the rename), ns since base
	took   time.Duration // the gatectl run, the logout call, the rename
	accept int32         // version every proxyd must come to accept; -1: none
	refuse []int32       // versions refused from at on (edit: from when each proxyd noticed)
	until  int64         // the refusal ends for requests that end after this (disable: re-enable); 0: never
	edit   bool
}

// churnRun is the state of a run. The driver (runChurn's goroutine) owns everything but creds,
// waiting and the failure, which the clients read.
type churnRun struct {
	s       *stack
	o       churnOptions
	base    time.Time
	tokenid string
	token   cred // the token's current secret
	last    int32
	logSeen []int // per daemon: log bytes newErrors has looked at

	creds   atomic.Pointer[[]cred]    // what the clients send, in turn
	waiting atomic.Pointer[[]*waiter] // conditions the driver waits for
	failed  chan struct{}             // closed when a client fails; per phase
	failure atomic.Pointer[error]     // its error
	once    *sync.Once                // closes failed
}

func (r *churnRun) now() int64 { return int64(time.Since(r.base)) }

// newErrors returns the daemons' level=ERROR log lines written since the last call.
func (r *churnRun) newErrors() []string {
	var out []string
	for i, d := range r.s.daemons {
		if i == len(r.logSeen) {
			r.logSeen = append(r.logSeen, 0)
		}
		log := d.log.String()
		end := strings.LastIndexByte(log, '\n') + 1 // whole lines only
		for _, line := range strings.Split(log[r.logSeen[i]:end], "\n") {
			if strings.Contains(line, "level=ERROR") {
				out = append(out, d.name+": "+line)
			}
		}
		r.logSeen[i] = end
	}
	return out
}

func (r *churnRun) newCred(header, value string) cred {
	r.last++
	return cred{version: r.last, header: header, value: value}
}

func (r *churnRun) publish(cs ...cred) { r.creds.Store(&cs) }

// phase starts the clients, runs rounds and returns every answer once the clients stopped.
func (r *churnRun) phase(rounds func() error) ([]sample, error) {
	r.failed, r.once = make(chan struct{}), &sync.Once{}
	if r.creds.Load() == nil {
		r.publish(r.token)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	per := make([][]sample, r.o.clients)
	var wg sync.WaitGroup
	for i := range r.o.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			per[i] = r.client(ctx, i%r.o.proxyds)
		}()
	}
	err := rounds()
	cancel()
	wg.Wait()
	r.waiting.Store(nil)
	if ferr := r.failure.Load(); ferr != nil {
		err = errors.Join(err, *ferr)
	}
	return slices.Concat(per...), err
}

func (r *churnRun) fail(err error) {
	r.once.Do(func() {
		r.failure.Store(&err)
		close(r.failed)
	})
}

// client sends GET /version to proxyd p with each published credential in turn until ctx is
// done, and returns the answers.
func (r *churnRun) client(ctx context.Context, p int) []sample {
	var out []sample
	u := r.s.urls[p] + "/version"
	for n := 0; ctx.Err() == nil; n++ {
		cs := *r.creds.Load()
		c := cs[n%len(cs)]
		req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
		if err != nil {
			r.fail(err)
			return out
		}
		req.Header.Set(c.header, c.value)
		start := r.now()
		resp, err := r.s.client.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if err != nil {
			if ctx.Err() == nil {
				r.fail(fmt.Errorf("GET %s: %w", u, err))
			}
			return out
		}
		sm := sample{start: start, end: r.now(), version: c.version, status: int16(resp.StatusCode), proxy: uint8(p)}
		out = append(out, sm)
		if ws := r.waiting.Load(); ws != nil {
			for _, w := range *ws {
				w.observe(sm)
			}
		}
	}
	return out
}

// waiter is a condition every proxyd must show once: an answer match accepts.
type waiter struct {
	what  string
	match func(sample) bool
	mu    sync.Mutex
	seen  []bool
	left  int
	done  chan struct{}
}

func (w *waiter) observe(s sample) {
	if !w.match(s) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.seen[s.proxy] {
		w.seen[s.proxy] = true
		if w.left--; w.left == 0 {
			close(w.done)
		}
	}
}

// accepted waits for a 200 to version v; refused for a non-200 to one of vs started at or after
// from.
func (r *churnRun) accepted(v int32) *waiter {
	return r.newWaiter(fmt.Sprintf("a 200 to credential %d", v), func(s sample) bool { return s.version == v && s.status == http.StatusOK })
}

func (r *churnRun) refused(from int64, vs ...int32) *waiter {
	return r.newWaiter(fmt.Sprintf("a refusal of credential %v", vs), func(s sample) bool {
		return s.start >= from && s.status != http.StatusOK && slices.Contains(vs, s.version)
	})
}

func (r *churnRun) newWaiter(what string, match func(sample) bool) *waiter {
	return &waiter{what: what, match: match, seen: make([]bool, r.o.proxyds), left: r.o.proxyds, done: make(chan struct{})}
}

// await makes the clients check ws and waits until every proxyd showed each, a client failed or
// the timeout passed.
func (r *churnRun) await(round int, ws ...*waiter) error {
	r.waiting.Store(&ws)
	defer r.waiting.Store(nil)
	deadline := time.NewTimer(r.o.timeout)
	defer deadline.Stop()
	for _, w := range ws {
		select {
		case <-w.done:
		case <-r.failed:
			return fmt.Errorf("round %d: a client failed", round)
		case <-deadline.C:
			w.mu.Lock()
			defer w.mu.Unlock()
			return fmt.Errorf("round %d: %s not seen on every proxyd within %v (seen: %v)", round, w.what, r.o.timeout, w.seen)
		}
	}
	return nil
}

// gatectl runs the binary with the stack's directories and JSON output; it returns stdout and
// when it exited.
func (r *churnRun) gatectl(args ...string) (stdout string, start, end int64, err error) {
	cmd := exec.Command(r.o.gatectl, append([]string{"--config-dir", r.s.dirs.Config, "--run-dir", r.s.dirs.Run, "--output-format", "json"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start = r.now()
	err = cmd.Run()
	end = r.now()
	if err != nil {
		return "", start, end, fmt.Errorf("gatectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), start, end, nil
}

// newSecret runs gatectl token rotate or generate and returns the printed secret.
func (r *churnRun) newSecret(verb string) (secret string, start, end int64, err error) {
	user, name, _ := strings.Cut(r.tokenid, "!")
	out, start, end, err := r.gatectl("token", verb, user, name)
	if err != nil {
		return "", start, end, err
	}
	var js struct{ Secret, Value string }
	if err := json.Unmarshal([]byte(out), &js); err != nil || js.Secret+js.Value == "" {
		return "", start, end, fmt.Errorf("gatectl token %s printed no secret", verb)
	}
	return js.Secret + js.Value, start, end, nil
}

// rotations rotates the token n times; the clients send the new and the previous secret.
func (r *churnRun) rotations(n int) ([]change, error) {
	var out []change
	for i := range n {
		old := r.token
		secret, start, end, err := r.newSecret("rotate")
		if err != nil {
			return out, err
		}
		r.token = r.newCred("Authorization", tokenHeader(r.tokenid, secret))
		out = append(out, change{at: end, took: time.Duration(end - start), accept: r.token.version, refuse: []int32{old.version}})
		w := r.accepted(r.token.version)
		r.publish(r.token, old)
		if err := r.await(i, w); err != nil {
			return out, err
		}
	}
	return out, nil
}

// removals removes the token n times (generating it again between rounds); the clients send
// its secret and the one removed before.
func (r *churnRun) removals(n int) ([]change, error) {
	var out []change
	for i := range n {
		user, name, _ := strings.Cut(r.tokenid, "!")
		_, start, end, err := r.gatectl("token", "remove", user, name)
		if err != nil {
			return out, err
		}
		out = append(out, change{at: end, took: time.Duration(end - start), accept: -1, refuse: []int32{r.token.version}})
		if err := r.await(i, r.refused(end, r.token.version)); err != nil {
			return out, err
		}
		secret, _, _, err := r.newSecret("generate")
		if err != nil {
			return out, err
		}
		prev := r.token
		r.token = r.newCred("Authorization", tokenHeader(r.tokenid, secret))
		w := r.accepted(r.token.version)
		r.publish(r.token, prev)
		if err := r.await(i, w); err != nil {
			return out, err
		}
	}
	return out, nil
}

// disables disables and enables the token's user n times; the clients send the token and a
// ticket of the user, logged in each round: disabling ends the user's tickets for good, so a
// ticket of an earlier round stays refused after the re-enable.
func (r *churnRun) disables(n int) ([]change, error) {
	user, _, _ := strings.Cut(r.tokenid, "!")
	var out []change
	for i := range n {
		ticket, _, err := r.login(0)
		if err != nil {
			return out, err
		}
		// A new version each round: the refusal window of one round is not the next one's.
		tok := r.newCred("Authorization", r.token.value)
		tic := r.newCred("Cookie", ticket.value)
		w := r.accepted(tok.version)
		w2 := r.accepted(tic.version)
		r.publish(tok, tic)
		if err := r.await(i, w, w2); err != nil {
			return out, err
		}
		_, start, end, err := r.gatectl("user", "update", user, "--enable=false")
		if err != nil {
			return out, err
		}
		if err := r.await(i, r.refused(end, tok.version), r.refused(end, tic.version)); err != nil {
			return out, err
		}
		c := change{at: end, took: time.Duration(end - start), accept: -1, refuse: []int32{tok.version, tic.version}}
		c.until = r.now()
		out = append(out, c)
		if _, _, _, err := r.gatectl("user", "update", user, "--enable"); err != nil {
			return out, err
		}
	}
	return out, nil
}

// login logs the token's user in through proxyd p and returns the ticket's cookie and the
// CSRF token.
func (r *churnRun) login(p int) (ticket cred, csrf string, err error) {
	data, err := call(r.s.client, "POST", r.s.urls[p]+"/access/ticket", url.Values{"username": {e2eUser}, "password": {e2ePassword}}, nil)
	if err != nil {
		return cred{}, "", fmt.Errorf("logging in as %s: %w", e2eUser, err)
	}
	var login struct{ Ticket, CSRFPreventionToken string }
	if err := json.Unmarshal(data, &login); err != nil || login.Ticket == "" {
		return cred{}, "", fmt.Errorf("logging in as %s: no ticket in the answer", e2eUser)
	}
	return r.newCred("Cookie", "PBSAuthCookie="+login.Ticket), login.CSRFPreventionToken, nil
}

// logouts logs two sessions in (one through each of the first two proxyds) n times and logs
// one out through proxyd, which ends both; the clients send the two and the previous round's.
func (r *churnRun) logouts(n int) ([]change, error) {
	var out []change
	var prev []cred
	for i := range n {
		a, csrf, err := r.login(0)
		if err != nil {
			return out, err
		}
		b, _, err := r.login(1 % r.o.proxyds)
		if err != nil {
			return out, err
		}
		ws := []*waiter{r.accepted(a.version), r.accepted(b.version)}
		r.publish(append([]cred{a, b}, prev...)...)
		if err := r.await(i, ws...); err != nil {
			return out, err
		}
		h := http.Header{"Cookie": {a.value}, "CSRFPreventionToken": {csrf}}
		start := r.now()
		if _, err := call(r.s.client, "DELETE", r.s.urls[i%r.o.proxyds]+"/access/ticket", url.Values{}, h); err != nil {
			return out, fmt.Errorf("round %d: logging out: %w", i, err)
		}
		end := r.now()
		out = append(out, change{at: end, took: time.Duration(end - start), accept: -1, refuse: []int32{a.version, b.version}})
		if err := r.await(i, r.refused(end, a.version, b.version)); err != nil {
			return out, err
		}
		prev = []cred{a, b}
	}
	return out, nil
}

// edits rewrites token.shadow n times as an editor does, each time with a new secret's hash
// for the token; the clients send the old and the new secret from before the rename.
func (r *churnRun) edits(n int) ([]change, error) {
	hashes, secrets, err := scratchHashes(n)
	if err != nil {
		return nil, fmt.Errorf("making hashes: %w", err)
	}
	var out []change
	for i := range n {
		old := r.token
		r.token = r.newCred("Authorization", tokenHeader(r.tokenid, secrets[i]))
		r.publish(r.token, old)
		start, end, err := editShadow(r.s.dirs.TokenShadow(), r.tokenid, hashes[i], r.now)
		if err != nil {
			return out, err
		}
		out = append(out, change{at: start, took: time.Duration(end - start), accept: r.token.version, refuse: []int32{old.version}, edit: true})
		if err := r.await(i, r.accepted(r.token.version), r.refused(start, old.version)); err != nil {
			return out, err
		}
	}
	return out, nil
}

// editShadow sets id's hash in the token.shadow at path the way an editor saves: the new
// content goes to a temp file in the same directory, which is renamed over the file; no lock,
// no generation bump. It returns the times (from now) just before and after the rename.
func editShadow(path, id, hash string, now func() int64) (start, end int64, err error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("editing %s: %w", path, err)
	}
	m := map[string]string{}
	if err := json.Unmarshal(raw, &m); err != nil {
		return 0, 0, fmt.Errorf("editing %s: %w", path, err)
	}
	m[id] = hash
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return 0, 0, err
	}
	tmp := filepath.Join(filepath.Dir(path), ".token.shadow.swp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return 0, 0, fmt.Errorf("editing %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o640); err != nil {
		return 0, 0, fmt.Errorf("editing %s: %w", path, err)
	}
	start = now()
	if err := os.Rename(tmp, path); err != nil {
		return 0, 0, fmt.Errorf("editing %s: %w", path, err)
	}
	return start, now(), nil
}

// analyse turns one kind's changes and answers into its row.
func analyse(kind, shows string, target time.Duration, proxyds int, changes []change, samples []sample) churnRow {
	row := churnRow{Kind: kind, Rounds: len(changes), Requests: len(samples), Shows: shows, TargetMax: float64(target)}
	for _, s := range samples {
		switch s.status {
		case http.StatusOK:
			row.Accepted++
		case http.StatusUnauthorized:
			row.Refused++
		default:
			row.Other++
			if row.OtherStatus == nil {
				row.OtherStatus = map[int]int{}
			}
			row.OtherStatus[int(s.status)]++
		}
	}
	// first[c][p]: when proxyd p first showed change c, from the answers (not the waiters).
	const never = int64(-1)
	type window struct {
		from  []int64 // per proxyd
		until int64
	}
	windows := map[int32][]window{}
	var delays, took []time.Duration
	for _, c := range changes {
		took = append(took, c.took)
		shown := make([]int64, proxyds) // per proxyd: when every condition had been met
		for p := range shown {
			acc, ref := int64(0), int64(0)
			if c.accept >= 0 {
				acc = firstEnd(samples, func(s sample) bool {
					return int(s.proxy) == p && s.version == c.accept && s.status == http.StatusOK
				})
			}
			if c.edit || c.accept < 0 {
				ref = firstEnd(samples, func(s sample) bool {
					return int(s.proxy) == p && s.start >= c.at && s.status != http.StatusOK && slices.Contains(c.refuse, s.version)
				})
			}
			shown[p] = never
			if acc != never && ref != never {
				shown[p] = max(acc, ref)
			}
		}
		noticed := !slices.Contains(shown, never)
		if noticed {
			row.Noticed++
			delays = append(delays, time.Duration(slices.Max(shown)-c.at))
		}
		w := window{from: make([]int64, proxyds), until: c.until}
		for p := range w.from {
			w.from[p] = c.at
			if c.edit {
				w.from[p] = shown[p] // an edit is refused once noticed; unnoticed: no window
				if w.from[p] == never {
					w.from[p] = 1<<63 - 1
				}
			}
		}
		for _, v := range c.refuse {
			windows[v] = append(windows[v], w)
		}
	}
	for _, s := range samples {
		if s.status != http.StatusOK {
			continue
		}
		for _, w := range windows[s.version] {
			if s.start >= w.from[s.proxy] && (w.until == 0 || s.end < w.until) {
				row.StaleAccepts++
				break
			}
		}
	}
	if len(delays) > 0 {
		row.NoticedP50, row.NoticedMean, row.NoticedMax = stats(delays)
	}
	if len(took) > 0 {
		row.CommandP50, _, row.CommandMax = stats(took)
	}
	row.Met = row.StaleAccepts == 0 && row.Noticed == row.Rounds && (target == 0 || row.NoticedMax < float64(target))
	return row
}

// firstEnd is the earliest end among the samples that match, or -1.
func firstEnd(samples []sample, match func(sample) bool) int64 {
	first := int64(-1)
	for _, s := range samples {
		if match(s) && (first < 0 || s.end < first) {
			first = s.end
		}
	}
	return first
}

// stats returns the median (nearest rank, as the load table's p50), mean and maximum of ds (not empty), in nanoseconds.
func stats(ds []time.Duration) (p50, mean, maxNs float64) {
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return float64(percentile(s, 50)), float64(sum) / float64(len(s)), float64(s[len(s)-1])
}

// markdown writes the report as a table with a legend.
func (r *churnReport) markdown(w io.Writer) {
	fmt.Fprintf(w, "| kind | rounds | requests | 200 / 401 / other | stale accepts | noticed: what | noticed p50 / mean / max | change p50 / max | met |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---|---:|---:|---|\n")
	for _, k := range r.Kinds {
		met := "yes"
		if !k.Met {
			met = "NO"
		}
		if k.TargetMax > 0 {
			met += fmt.Sprintf(" (< %v)", time.Duration(k.TargetMax))
		}
		g := func(n int) string { return groupDigits(int64(n)) }
		fmt.Fprintf(w, "| %s | %d | %s | %s / %s / %s | %d | %s, %d of %d | %s / %s / %s | %s / %s | %s |\n",
			k.Kind, k.Rounds, g(k.Requests), g(k.Accepted), g(k.Refused), g(k.Other), k.StaleAccepts, k.Shows, k.Noticed, k.Rounds,
			ms(k.NoticedP50), ms(k.NoticedMean), ms(k.NoticedMax), ms(k.CommandP50), ms(k.CommandMax), met)
	}
	for _, k := range r.Kinds {
		for st, n := range k.OtherStatus {
			fmt.Fprintf(w, "\n%s: %d answers with status %d", k.Kind, n, st)
		}
		for _, e := range k.DaemonErrors {
			fmt.Fprintf(w, "\n%s: %s", k.Kind, e)
		}
	}
	fmt.Fprintf(w, "\n%d clients (keep-alive HTTPS, GET /version) on %d proxyd. A stale accept is a 200 to a request that started after the change returned, carrying a credential it ended (manual edit: after that proxyd had noticed). Noticed: from the change's return (edit: the rename) until every proxyd showed it. Change: the gatectl run, the logout call, the rename (%v watch poll).\n",
		r.Clients, r.Proxyds, tokenshadow.WatchInterval)
}

// writeJSON writes v indented.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// ms formats a latency in nanoseconds as the load table does.
func ms(ns float64) string { return formatLatency(int64(ns)) }
