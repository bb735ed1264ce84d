package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// freeze stops a daemon with SIGSTOP and returns the function that resumes it with SIGCONT,
// which also runs at cleanup (before the stack's SIGTERM) if the test did not call it.
func (st *stack) freeze(t *testing.T, role string) (resume func()) {
	t.Helper()
	p := st.procs[role].cmd.Process
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("stopping %s: %v", role, err)
	}
	resume = sync.OnceFunc(func() {
		if err := p.Signal(syscall.SIGCONT); err != nil {
			t.Errorf("resuming %s: %v", role, err)
		}
	})
	t.Cleanup(resume)
	return resume
}

// waitGauge scrapes proxyd's /metrics until the sample of name (with labels) is want; it fails
// the test after 10 s.
func (st *stack) waitGauge(t *testing.T, name string, want float64, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := st.scrape(t).get(name, labels...)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v after 10 s; want %v", name, labels, got, want)
		}
	}
}

// checkStream sends token and ticket checks (GET /version) through proxyd, from their own
// client address, until stop is closed; it reports the answers by status and the slowest.
func (st *stack) checkStream(tokenHeader, ticketHeader http.Header, stop <-chan struct{}) <-chan string {
	out := make(chan string, 1)
	go func() {
		counts := map[string]map[int]int{"token": {}, "ticket": {}}
		var slowest time.Duration
		for i := 0; ; i++ {
			select {
			case <-stop:
				out <- fmt.Sprintf("token %v, ticket %v, slowest %v", counts["token"], counts["ticket"], slowest.Round(100*time.Microsecond))
				return
			default:
			}
			kind, h := "token", tokenHeader.Clone()
			if i%2 == 1 {
				kind, h = "ticket", ticketHeader.Clone()
			}
			h.Set("X-Forwarded-For", "198.51.100.7")
			began := time.Now()
			a, err := tryOn(st.http, st.url, call{method: "GET", path: "/version", header: h})
			slowest = max(slowest, time.Since(began))
			if err != nil {
				counts[kind][-1]++
				continue
			}
			counts[kind][a.status]++
		}
	}()
	return out
}

// TestFaultFrozenApid (issue 18: with apid stopped, a forwarded call waited 71 s and a login
// 60 s before a 502). proxyd runs with --apid-timeout 1s, apid with --lock-timeout 2s. First,
// apid alive but slow: a write waiting for a held lock gets apid's own 503 naming the lock,
// after proxyd's check that apid is alive, not proxyd's timeout. Then apid is stopped with
// SIGSTOP: three logins from one address (burst 2) and two forwarded calls (a read and a
// write) each answer 503 "authentication service (apid) did not answer within 1s" (the third
// login is no 429: a timeout gives the reserved failure back), counted in
// gatehouse_apid_failures_total and logged once for the whole incident, while token and ticket
// checks, which proxyd makes alone, keep answering 200 all along. After SIGCONT a login and
// the forwarded calls work from the same addresses, and proxyd logs the end of the incident.
func TestFaultFrozenApid(t *testing.T) {
	st := start(t, options{burst: 2, apidArgs: []string{"--lock-timeout", "2s"}, proxydArgs: []string{"--apid-timeout", "1s"}})
	st.addUser(t, "cold@pbs", "cold-pw")
	sess := st.login(t, "cold@pbs", "cold-pw")
	tokenHeader := st.newToken(t, sess, "tok")
	// The client gives up after 30 s, half the old 60 s, so that the old code fails rather than hangs.
	hc := *st.http
	hc.Timeout = 30 * time.Second
	from := func(addr string, h http.Header) http.Header {
		h = h.Clone()
		if h == nil {
			h = http.Header{}
		}
		h.Set("X-Forwarded-For", addr)
		return h
	}
	write := call{method: "PUT", path: "/access/users/cold@pbs", form: url.Values{"comment": {"frozen"}}, header: from("203.0.113.41", sess.header(true))}

	// apid alive, the call slower than --apid-timeout: proxyd checks, apid answers, proxyd waits.
	hung := st.holdLocks(t, st.dirs.Lock("user.cfg"))
	a, err := tryOn(&hc, st.url, write)
	if err != nil || a.status != http.StatusServiceUnavailable || !strings.Contains(a.message, "user.cfg") || !strings.Contains(a.message, "timeout after 2s") {
		t.Fatalf("a write waiting 2 s for its lock = %+v, %v; want apid's 503 naming the lock", a, err)
	}
	hung.Process.Kill()
	hung.Wait()
	if m := st.scrape(t); m.get("gatehouse_apid_failures_total", "reason", "timeout") > 0 {
		t.Fatalf("a slow call of a live apid counted as an apid timeout")
	}

	resume := st.freeze(t, "apid")
	stop := make(chan struct{})
	stream := st.checkStream(tokenHeader, sess.header(false), stop)
	const want = "authentication service (apid) did not answer within 1s"
	var wg sync.WaitGroup
	failures := make(chan string, 10)
	expect503 := func(c call) {
		began := time.Now()
		a, err := tryOn(&hc, st.url, c)
		switch {
		case err != nil:
			failures <- fmt.Sprintf("%s %s with apid stopped: %v", c.method, c.path, err)
		case a.status != http.StatusServiceUnavailable || a.message != want:
			failures <- fmt.Sprintf("%s %s with apid stopped = %d %q; want 503 %q", c.method, c.path, a.status, a.message, want)
		default:
			t.Logf("%s %s with apid stopped: %d %q after %v", c.method, c.path, a.status, a.message, time.Since(began).Round(time.Millisecond))
		}
	}
	wg.Go(func() {
		for range 3 {
			expect503(call{method: "POST", path: "/access/ticket", form: url.Values{"username": {"cold@pbs"}, "password": {"cold-pw"}}, header: from("203.0.113.40", nil)})
		}
	})
	wg.Go(func() {
		expect503(call{method: "GET", path: "/access/users/cold@pbs/token", header: from("203.0.113.41", tokenHeader)})
		expect503(write)
	})
	wg.Wait()
	close(stop)
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	checks := <-stream
	t.Logf("token and ticket checks while apid was stopped: %s", checks)
	if !strings.Contains(checks, "token map[200:") || !strings.Contains(checks, "ticket map[200:") || strings.Count(checks, ":") != 2 {
		t.Errorf("token and ticket checks while apid was stopped: %s; want only 200s, of both", checks)
	}
	m := st.scrape(t)
	if got := m.get("gatehouse_apid_failures_total", "reason", "timeout"); got != 5 {
		t.Errorf("gatehouse_apid_failures_total{reason=timeout} = %v; want 5", got)
	}
	log := st.logs["proxyd"].String()
	if n := strings.Count(log, `msg="apid calls failing"`); n != 1 {
		t.Errorf("proxyd logged %d apid failure lines for one incident; want 1:\n%s", n, log)
	}

	resume()
	if a := st.do(t, call{method: "POST", path: "/access/ticket", form: url.Values{"username": {"cold@pbs"}, "password": {"cold-pw"}}, header: from("203.0.113.40", nil)}); a.status != 200 {
		t.Errorf("login after SIGCONT from the address of the 3 timed-out logins = %d %q; want 200", a.status, a.message)
	}
	if a := st.do(t, call{method: "GET", path: "/access/users/cold@pbs/token", header: from("203.0.113.41", tokenHeader)}); a.status != 200 {
		t.Errorf("forwarded call after SIGCONT = %d %q; want 200", a.status, a.message)
	}
	st.logs["proxyd"].waitFor(t, `msg="apid calls answered again" failed=5`)
}

// TestFrozenApidClientGone: a client that gives up while its call waits on a stopped apid is
// none of apid's failures: nothing counted in gatehouse_apid_failures_total, no log line, no
// auth.log line, and the request's slot is freed. proxyd's bounds are an hour here, so only the
// client's leaving can end the calls.
func TestFrozenApidClientGone(t *testing.T) {
	st := start(t, options{proxydArgs: []string{"--apid-timeout", "1h", "--apid-max-wait", "1h"}})
	st.addUser(t, "gone@pbs", "gone-pw")
	sess := st.login(t, "gone@pbs", "gone-pw")
	st.freeze(t, "apid")
	for _, c := range []call{
		{method: "POST", path: "/access/ticket", form: url.Values{"username": {"gone@pbs"}, "password": {"gone-pw"}}},
		{method: "GET", path: "/access/users/gone@pbs", header: sess.header(false)},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, c.method, st.url+c.path, strings.NewReader(c.form.Encode()))
		req.Header = c.header.Clone()
		if req.Header == nil {
			req.Header = http.Header{}
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		done := make(chan error, 1)
		go func() {
			resp, err := st.http.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		st.waitGauge(t, "gatehouse_requests_in_flight", 1)
		cancel()
		if err := <-done; err == nil {
			t.Fatalf("%s %s answered while apid was stopped", c.method, c.path)
		}
		st.waitGauge(t, "gatehouse_requests_in_flight", 0)
	}
	m := st.scrape(t)
	for _, reason := range []string{"timeout", "unreachable", "broken", "invalid"} {
		if got := m.get("gatehouse_apid_failures_total", "reason", reason); got != 0 {
			t.Errorf("gatehouse_apid_failures_total{reason=%s} = %v after clients went away; want 0", reason, got)
		}
	}
	if log := st.logs["proxyd"].String(); strings.Contains(log, "level=ERROR") {
		t.Errorf("proxyd logged an error for calls whose clients went away:\n%s", log)
	}
	for _, l := range st.authLogLines(t) {
		if l != "" {
			t.Errorf("auth.log after calls whose clients went away: %q", l)
		}
	}
}
