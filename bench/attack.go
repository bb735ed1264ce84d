package main

// Resource exhaustion from one address (go run ./bench -attack-only, or -attack in a full run;
// runAttack): the three attacks of issue 17 against apid and one proxyd started as in
// production, with the defaults of its flags, the open-file limit and GOMEMLIMIT of its
// systemd unit (its MemoryMax needs a cgroup and is not applied: the peak is what the unit
// must allow).
//
// The attacker binds 127.0.0.2 (Linux routes all of 127/8 to lo); a legitimate client on
// 127.0.0.1 sends GET /version with an API token every attackOptions.pace throughout, each on
// a new TLS connection, so that every one of its requests needs proxyd to accept, shake hands
// and answer while the attack goes on. Phases, one after the other:
//
//   - idle: attackOptions.idle connections (5 000), each a TLS handshake offering h2 and an
//     HTTP/2 preface and SETTINGS frame, then nothing: idle HTTP/2 connections, which stayed open
//     for good before issue 17's fix.
//   - slow bodies: attackOptions.slow connections (1 000), each POST /api2/json/access/ticket
//     announcing a 64 KiB body and sending one byte per second of it.
//   - unfinished headers: attackOptions.headers connections (100), each a request line and a
//     header line growing to attackOptions.headerBytes (1 MiB), never ended.
//
// Each phase opens all its connections first (handshakes, 100 at a time), then starts their
// traffic, so that what the caps let through is counted at one moment. A connection is
// "refused" when proxyd closes it before the handshake completes (the caps close at once),
// "closed by proxyd" when proxyd ends it afterwards (a timeout, a 431) before the phase's hold
// (45 s) ends; the phase ends at the hold or when proxyd has closed every connection it let
// in. proxyd's memory comes from /proc/<pid>/status: VmRSS before the phase, the peak (VmHWM,
// reset through /proc/<pid>/clear_refs at the phase's start, and VmRSS sampled every 100 ms),
// and VmRSS once proxyd has closed the attack's connections (gatehouse_connections_open back
// to the legitimate client's) and 2 s more have passed; open file descriptors are sampled too.
// The target: proxyd's peak RSS under 64 MiB, and every legitimate request answered 200.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// What proxyd's systemd unit (cmd/proxyd/gatehouse-proxyd.service) sets and the attack
// applies to its proxyd; TestUnitValues checks they agree.
const (
	unitNoFile   = 4096
	unitMemLimit = "GOMEMLIMIT=192MiB"
)

// attackTarget is issue 17's bound on proxyd's memory under the attacks.
const attackTarget = 64 << 20

// attackOptions size an attack run; zero values take the defaults.
type attackOptions struct {
	idle        int           // idle HTTP/2 connections; default 5000
	slow        int           // slow-body connections; default 1000
	headers     int           // unfinished-header connections; default 100
	h2conns     int           // HTTP/2 connections of slow-body streams; default 100
	h2streams   int           // slow-body streams on each; default 100 (proxyd's maximum)
	headerBytes int           // the unfinished header's size; default 1 MiB
	hold        time.Duration // how long the attacker keeps a phase's connections; default 45 s
	pace        time.Duration // the legitimate client's interval; default 20 ms
	from        string        // the attacker's address; default 127.0.0.2
	legit       string        // the legitimate client's address; default 127.0.0.1
	proxydArgs  []string      // added to proxyd's flags (the test's short timeouts and small caps)
	phases      []string      // the phases to run, by name; default all
}

func (o attackOptions) withDefaults() attackOptions {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.idle, 5000)
	def(&o.slow, 1000)
	def(&o.headers, 100)
	def(&o.h2conns, 100)
	def(&o.h2streams, 100)
	def(&o.headerBytes, 1<<20)
	if o.hold <= 0 {
		o.hold = 45 * time.Second
	}
	if o.pace <= 0 {
		o.pace = 20 * time.Millisecond
	}
	if o.from == "" {
		o.from = "127.0.0.2"
	}
	if o.legit == "" {
		o.legit = "127.0.0.1"
	}
	return o
}

// attackReport is the result of runAttack: one row per phase.
type attackReport struct {
	From        string        `json:"attacker"`
	Legit       string        `json:"legitimate_client"`
	PaceNs      int64         `json:"legitimate_interval_ns"`
	HoldNs      int64         `json:"hold_ns"`
	ProxydArgs  []string      `json:"proxyd_args"`
	TargetBytes int64         `json:"target_peak_rss_bytes"`
	Phases      []attackPhase `json:"phases"`
	Met         bool          `json:"met"` // every phase met
}

// attackPhase is one attack. Sizes are bytes, durations nanoseconds.
type attackPhase struct {
	Name           string   `json:"name"`
	Attempted      int      `json:"attempted"`
	Admitted       int      `json:"admitted"`         // handshake completed
	Refused        int      `json:"refused"`          // closed before the handshake completed
	ProxydRefused  uint64   `json:"proxyd_refused"`   // gatehouse_connections_refused_total, both reasons, over the phase
	Status503      uint64   `json:"status_503"`       // gatehouse_requests_refused_total, both reasons, over the phase: requests answered 503 at once
	ClosedByProxyd int      `json:"closed_by_proxyd"` // of Admitted, ended by proxyd before the hold ended
	Status431      int      `json:"status_431"`       // answers 431 (unfinished headers)
	ClosedP50      int64    `json:"closed_after_p50"` // from the handshake to proxyd's close
	ClosedMax      int64    `json:"closed_after_max"` // idem
	Seconds        float64  `json:"seconds"`
	RSSBefore      int64    `json:"rss_before"`
	RSSPeak        int64    `json:"rss_peak"`
	RSSAfter       int64    `json:"rss_after"`
	FDsPeak        int      `json:"fds_peak"`
	GoroutinesPeak int      `json:"goroutines_peak"`
	LegitOK        int      `json:"legit_ok"`
	LegitFailed    int      `json:"legit_failed"`
	LegitErrors    []string `json:"legit_errors,omitempty"`  // the first few
	StreamErrors   []string `json:"stream_errors,omitempty"` // slow streams proxyd reset (its read timeout): the first few errors
	LegitP50       int64    `json:"legit_p50"`
	LegitP99       int64    `json:"legit_p99"`
	LegitMax       int64    `json:"legit_max"`
	Met            bool     `json:"met"` // peak under the target, no legitimate request failed
}

// Phase names, also used by the tests.
const (
	phaseIdle    = "idle HTTP/2 connections"
	phaseSlow    = "slow bodies"
	phaseHeaders = "unfinished headers"
	phaseStreams = "slow bodies in HTTP/2 streams"
)

// runAttack starts apid and one proxyd, runs every phase and stops them.
func runAttack(progress io.Writer, o attackOptions) (rep *attackReport, err error) {
	o = o.withDefaults()
	args := append([]string{"--metrics-listen", "127.0.0.1:0"}, o.proxydArgs...)
	s, err := startStack(stackOptions{conns: 1, proxydArgs: args, proxydEnv: []string{unitMemLimit}})
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := s.close(); cerr != nil && err == nil {
			err = fmt.Errorf("stopping the daemons: %w", cerr)
		}
	}()
	px := s.daemons[1]
	pid := px.cmd.Process.Pid
	lim := unix.Rlimit{Cur: unitNoFile, Max: unitNoFile}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
		return nil, fmt.Errorf("setting proxyd's open-file limit to %d: %w", unitNoFile, err)
	}
	metrics, err := px.metricsURL()
	if err != nil {
		return nil, err
	}
	a := &attackRun{o: o, s: s, pid: pid, metrics: metrics, addr: strings.TrimSuffix(strings.TrimPrefix(s.url, "https://"), "/api2/json")}
	a.tls = s.client.Transport.(*http.Transport).TLSClientConfig.Clone()
	a.tls.ServerName, _, _ = net.SplitHostPort(a.addr)
	rep = &attackReport{From: o.from, Legit: o.legit, PaceNs: int64(o.pace), HoldNs: int64(o.hold), ProxydArgs: o.proxydArgs, TargetBytes: attackTarget, Met: true}
	legit := a.startLegit()
	defer legit.stop()
	for _, ph := range []struct {
		name string
		n    int
		run  func(*attackConn) // the connection's traffic after the handshake
	}{
		{phaseIdle, o.idle, a.idle},
		{phaseSlow, o.slow, a.slowBody},
		{phaseHeaders, o.headers, a.bigHeader},
		{phaseStreams, o.h2conns, a.slowStreams},
	} {
		if len(o.phases) > 0 && !slices.Contains(o.phases, ph.name) {
			continue
		}
		fmt.Fprintf(progress, "[attack] %s: %d connections from %s for up to %v, a legitimate request from %s every %v...\n",
			ph.name, ph.n, o.from, o.hold, o.legit, o.pace)
		p, err := a.phase(ph.name, ph.n, ph.run, legit)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ph.name, err)
		}
		fmt.Fprintf(progress, "[attack] %s: %d admitted, %d refused, %d closed by proxyd; RSS %s before, %s peak, %s after; legitimate %d ok, %d failed\n",
			ph.name, p.Admitted, p.Refused, p.ClosedByProxyd, formatBytes(p.RSSBefore), formatBytes(p.RSSPeak), formatBytes(p.RSSAfter), p.LegitOK, p.LegitFailed)
		rep.Phases = append(rep.Phases, p)
		rep.Met = rep.Met && p.Met
	}
	return rep, nil
}

// attackRun is one run's shared state.
type attackRun struct {
	o       attackOptions
	s       *stack
	pid     int
	metrics string
	addr    string // proxyd's host:port
	tls     *tls.Config
}

// attackConn is one attack connection: when it was ready, and how it ended.
type attackConn struct {
	c      *tls.Conn
	ready  time.Time
	done   chan struct{} // closed when the reader saw the connection end
	ended  time.Time     // when proxyd ended it (zero: the attacker did)
	status int           // the status of an answer proxyd sent, if any
	err    error         // slow streams: the first stream proxyd reset instead of answering
	stop   chan struct{} // closed at the hold's end
}

// dial opens a TLS connection from the attacker's address offering protos; an error means
// proxyd closed it before the handshake completed (or could not be reached).
func (a *attackRun) dial(protos ...string) (*tls.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(a.o.from)}, Timeout: 10 * time.Second}
	raw, err := d.Dial("tcp", a.addr)
	if err != nil {
		return nil, err
	}
	cfg := a.tls.Clone()
	cfg.NextProtos = protos
	c := tls.Client(raw, cfg)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// phase runs one attack of n connections and measures it.
func (a *attackRun) phase(name string, n int, run func(*attackConn), legit *legitClient) (attackPhase, error) {
	p := attackPhase{Name: name, Attempted: n}
	before, err := a.refusedCount()
	if err != nil {
		return p, err
	}
	before503, err := metricSum(a.metrics, "gatehouse_requests_refused_total{")
	if err != nil {
		return p, err
	}
	p.RSSBefore, _ = procStatus(a.pid, "VmRSS")
	os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", a.pid), []byte("5"), 0) // resets VmHWM; best effort
	sampler := startSampler(a.pid, a.metrics)
	legit.mark()
	start := time.Now()

	protos := []string{"http/1.1"}
	if name == phaseIdle || name == phaseStreams {
		protos = []string{"h2", "http/1.1"}
	}
	conns := make([]*attackConn, n)
	var refused atomic.Int64
	sem := make(chan struct{}, 100)
	var wg sync.WaitGroup
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := a.dial(protos...)
			if err != nil {
				refused.Add(1)
				return
			}
			conns[i] = &attackConn{c: c, ready: time.Now(), done: make(chan struct{})}
		})
	}
	wg.Wait()
	var admitted []*attackConn
	for _, c := range conns {
		if c != nil {
			admitted = append(admitted, c)
		}
	}
	stop := make(chan struct{})
	for _, c := range admitted {
		c.stop = stop
		if name == phaseStreams { // net/http's client reads the connection; run ends it
			go run(c)
			continue
		}
		go c.read()
		go run(c)
	}
	// Until the hold ends or proxyd has ended every connection it let in.
	hold := time.NewTimer(a.o.hold - time.Since(start))
	allDone := make(chan struct{})
	go func() {
		for _, c := range admitted {
			<-c.done
		}
		close(allDone)
	}()
	select {
	case <-hold.C:
	case <-allDone:
		hold.Stop()
	}
	close(stop)
	p.Seconds = time.Since(start).Seconds()
	var closedAfter []time.Duration
	for _, c := range admitted {
		c.c.Close()
		<-c.done
		if !c.ended.IsZero() {
			closedAfter = append(closedAfter, c.ended.Sub(c.ready))
		}
		if c.status == http.StatusRequestHeaderFieldsTooLarge {
			p.Status431++
		}
		if c.err != nil && len(p.StreamErrors) < 5 {
			p.StreamErrors = append(p.StreamErrors, c.err.Error())
		}
	}
	p.Admitted, p.Refused, p.ClosedByProxyd = len(admitted), int(refused.Load()), len(closedAfter)
	slices.Sort(closedAfter)
	p.ClosedP50 = int64(percentile(closedAfter, 50))
	if len(closedAfter) > 0 {
		p.ClosedMax = int64(closedAfter[len(closedAfter)-1])
	}
	// proxyd has seen the attacker's closes once only the legitimate client's connections
	// (at most one in flight) are open.
	if err := a.waitOpen(1, 30*time.Second); err != nil {
		return p, err
	}
	p.RSSPeak, p.FDsPeak, p.GoroutinesPeak = sampler.stop()
	if hwm, err := procStatus(a.pid, "VmHWM"); err == nil {
		p.RSSPeak = max(p.RSSPeak, hwm)
	}
	time.Sleep(2 * time.Second) // what proxyd keeps once the attack is over, not while it frees
	p.RSSAfter, _ = procStatus(a.pid, "VmRSS")
	after, err := a.refusedCount()
	if err != nil {
		return p, err
	}
	p.ProxydRefused = after - before
	after503, err := metricSum(a.metrics, "gatehouse_requests_refused_total{")
	if err != nil {
		return p, err
	}
	p.Status503 = uint64(after503 - before503)
	ls := legit.since()
	p.LegitOK, p.LegitFailed, p.LegitErrors = ls.ok, ls.failed, ls.errors
	slices.Sort(ls.lat)
	p.LegitP50, p.LegitP99 = int64(percentile(ls.lat, 50)), int64(percentile(ls.lat, 99))
	if len(ls.lat) > 0 {
		p.LegitMax = int64(ls.lat[len(ls.lat)-1])
	}
	p.Met = p.RSSPeak < attackTarget && p.LegitFailed == 0 && p.LegitOK > 0
	return p, nil
}

// read reads what proxyd sends until the connection ends, noting an answer's status and
// whether proxyd ended it (not the attacker, at the hold's end).
func (c *attackConn) read() {
	defer close(c.done)
	br := bufio.NewReader(c.c)
	if c.c.ConnectionState().NegotiatedProtocol != "h2" {
		if resp, err := http.ReadResponse(br, nil); err == nil {
			c.status = resp.StatusCode
		}
	}
	io.Copy(io.Discard, br)
	select {
	case <-c.stop:
	default:
		c.ended = time.Now()
	}
}

// idle sends the HTTP/2 preface and an empty SETTINGS frame (or nothing, when proxyd chose
// HTTP/1.1), then nothing more.
func (a *attackRun) idle(c *attackConn) {
	if c.c.ConnectionState().NegotiatedProtocol == "h2" {
		io.WriteString(c.c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
	}
}

// slowStreams opens h2streams streams on the connection (HTTP/2, through net/http's client),
// each POST /api2/json/access/ticket announcing 64 KiB of body and sending one byte a second.
func (a *attackRun) slowStreams(c *attackConn) {
	if c.c.ConnectionState().NegotiatedProtocol != "h2" {
		return
	}
	var used atomic.Bool
	tr := &http.Transport{
		ForceAttemptHTTP2: true, TLSClientConfig: a.tls.Clone(), MaxConnsPerHost: 1, // every stream on c
		DialTLSContext: func(context.Context, string, string) (net.Conn, error) {
			if used.Swap(true) {
				return nil, errors.New("one connection only")
			}
			return c.c, nil
		},
	}
	tr.TLSClientConfig.NextProtos = []string{"h2"}
	defer close(c.done)
	var wg sync.WaitGroup
	var firstErr sync.Once
	for range a.o.h2streams {
		wg.Go(func() {
			req, err := http.NewRequest("POST", a.s.url+"/access/ticket", &trickle{stop: c.stop, left: 65536})
			if err != nil {
				return
			}
			req.ContentLength = 65536
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := tr.RoundTrip(req)
			if err != nil { // before the hold's end, proxyd's doing: a reset stream (its read timeout)
				firstErr.Do(func() { c.err = err })
			} else {
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	select {
	case <-c.stop:
	default: // every stream answered or reset before the hold's end
		c.ended = time.Now()
	}
}

// trickle is a body that gives one byte a second until stop is closed.
type trickle struct {
	stop  chan struct{}
	left  int
	begun bool
}

func (t *trickle) Read(p []byte) (int, error) {
	if t.left == 0 {
		return 0, io.EOF
	}
	if t.begun {
		select {
		case <-t.stop:
			return 0, errors.New("attack over")
		case <-time.After(time.Second):
		}
	}
	t.begun = true
	p[0] = 'a'
	t.left--
	return 1, nil
}

// slowBody sends a login's header announcing 64 KiB of body, then one byte a second.
func (a *attackRun) slowBody(c *attackConn) {
	_, err := fmt.Fprintf(c.c, "POST /api2/json/access/ticket HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\n"+
		"Content-Length: 65536\r\n\r\nusername=", a.addr)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for err == nil {
		select {
		case <-c.stop:
			return
		case <-c.done:
			return
		case <-tick.C:
			_, err = c.c.Write([]byte("a"))
		}
	}
}

// bigHeader sends a request line and a header line of headerBytes, without ending it.
func (a *attackRun) bigHeader(c *attackConn) {
	_, err := fmt.Fprintf(c.c, "GET /api2/json/version HTTP/1.1\r\nHost: %s\r\nX-Big: ", a.addr)
	chunk := []byte(strings.Repeat("a", 16<<10))
	for sent := 0; err == nil && sent < a.o.headerBytes; sent += len(chunk) {
		_, err = c.c.Write(chunk[:min(len(chunk), a.o.headerBytes-sent)])
	}
}

// refusedCount reads proxyd's gatehouse_connections_refused_total, both reasons.
func (a *attackRun) refusedCount() (uint64, error) {
	v, err := metricSum(a.metrics, "gatehouse_connections_refused_total{")
	return uint64(v), err
}

// waitOpen waits until gatehouse_connections_open is at most n.
func (a *attackRun) waitOpen(n int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		v, err := metricSum(a.metrics, "gatehouse_connections_open")
		if err != nil {
			return err
		}
		if int(v) <= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("proxyd still has %v connections open %v after the attack ended", v, within)
		}
		time.Sleep(50 * time.Millisecond) // polling proxyd's gauge, bounded by the deadline
	}
}

// metricSum adds up the samples of /metrics whose name (with labels) starts with prefix.
func metricSum(u, prefix string) (float64, error) {
	resp, err := http.Get(u)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 || strings.HasPrefix(line, "#") || !strings.HasPrefix(line[:sp], prefix) {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("GET %s: %q: %w", u, line, err)
		}
		sum, found = sum+v, true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("GET %s: no %s", u, prefix)
	}
	return sum, nil
}

// procStatus reads a size field (kB) of /proc/<pid>/status, in bytes.
func procStatus(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// sampler reads a process's VmRSS every 100 ms, its open descriptors and its goroutines
// (go_goroutines of its /metrics) every 500 ms.
type sampler struct {
	cancel     context.CancelFunc
	done       chan struct{}
	rss        int64
	fds        int
	goroutines int
}

func startSampler(pid int, metrics string) *sampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &sampler{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			if v, err := procStatus(pid, "VmRSS"); err == nil {
				s.rss = max(s.rss, v)
			}
			if i%5 == 0 {
				if ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd")); err == nil {
					s.fds = max(s.fds, len(ents))
				}
				if n, err := metricSum(metrics, "go_goroutines"); err == nil {
					s.goroutines = max(s.goroutines, int(n))
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the highest RSS, descriptor and goroutine counts seen.
func (s *sampler) stop() (int64, int, int) {
	s.cancel()
	<-s.done
	return s.rss, s.fds, s.goroutines
}

// legitClient sends GET /version with the token every pace, each on a new connection, and
// keeps what it saw since the last mark.
type legitClient struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu  sync.Mutex
	cur legitStats
}

type legitStats struct {
	ok, failed int
	errors     []string
	lat        []time.Duration
}

func (a *attackRun) startLegit() *legitClient {
	ctx, cancel := context.WithCancel(context.Background())
	l := &legitClient{cancel: cancel, done: make(chan struct{})}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(a.o.legit)}, Timeout: 10 * time.Second}
	tr := &http.Transport{TLSClientConfig: a.tls.Clone(), DialContext: d.DialContext, DisableKeepAlives: true}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	go func() {
		defer close(l.done)
		t := time.NewTicker(a.o.pace)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			t0 := time.Now()
			err := a.legitRequest(client)
			lat := time.Since(t0)
			l.mu.Lock()
			if err != nil {
				l.cur.failed++
				if len(l.cur.errors) < 5 {
					l.cur.errors = append(l.cur.errors, err.Error())
				}
			} else {
				l.cur.ok++
				l.cur.lat = append(l.cur.lat, lat)
			}
			l.mu.Unlock()
		}
	}()
	return l
}

func (a *attackRun) legitRequest(c *http.Client) error {
	req, err := http.NewRequest("GET", a.s.url+"/version", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", a.s.token)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /version = %s", resp.Status)
	}
	return nil
}

// mark starts a new count.
func (l *legitClient) mark() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cur = legitStats{}
}

// since returns what was counted since the last mark.
func (l *legitClient) since() legitStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur
}

func (l *legitClient) stop() {
	l.cancel()
	<-l.done
}

// formatBytes writes n in MiB with one decimal.
func formatBytes(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// markdown writes the attack table.
func (r *attackReport) markdown(w io.Writer) {
	fmt.Fprintln(w, "| attack (from one address) | connections | let in / refused at once | closed by proxyd (after p50 / max) | proxyd RSS before / peak / after | open files, goroutines: peak | legitimate requests ok / failed | legitimate p50 / p99 / max | met |")
	fmt.Fprintln(w, "|---|---:|---:|---|---:|---:|---:|---:|---|")
	for _, p := range r.Phases {
		closed := fmt.Sprintf("%s of %s (%s / %s)", groupDigits(int64(p.ClosedByProxyd)), groupDigits(int64(p.Admitted)), formatLatency(p.ClosedP50), formatLatency(p.ClosedMax))
		if p.Status431 > 0 {
			closed += fmt.Sprintf(", %s × 431", groupDigits(int64(p.Status431)))
		}
		if p.Status503 > 0 {
			closed += fmt.Sprintf("; %s requests × 503", groupDigits(int64(p.Status503)))
		}
		fmt.Fprintf(w, "| %s | %s | %s / %s | %s | %s / %s / %s | %s | %s / %s | %s / %s / %s | %s |\n",
			p.Name, groupDigits(int64(p.Attempted)), groupDigits(int64(p.Admitted)), groupDigits(int64(p.Refused)), closed,
			formatBytes(p.RSSBefore), formatBytes(p.RSSPeak), formatBytes(p.RSSAfter), groupDigits(int64(p.FDsPeak))+", "+groupDigits(int64(p.GoroutinesPeak)),
			groupDigits(int64(p.LegitOK)), groupDigits(int64(p.LegitFailed)),
			formatLatency(p.LegitP50), formatLatency(p.LegitP99), formatLatency(p.LegitMax), metWord(p.Met))
	}
	args := "its defaults"
	if len(r.ProxydArgs) > 0 {
		args = "`" + strings.Join(r.ProxydArgs, " ") + "`"
	}
	fmt.Fprintf(w, "\nproxyd with %s, RLIMIT_NOFILE %d and %s as in its unit; attacker %s, one legitimate GET /version from %s every %v on a new TLS connection; each phase held at most %v. Target: peak RSS under %s and no legitimate request failed.\n",
		args, unitNoFile, unitMemLimit, r.From, r.Legit, time.Duration(r.PaceNs), time.Duration(r.HoldNs), formatBytes(r.TargetBytes))
}

func metWord(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}
