package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"gatehouse/shmem"
)

// apidCall is the "apid-call" role: one request to apid's socket, as any process of the uid it
// runs as can make one. args: socket, method, path, headers (JSON object of one value each).
// It prints the status and the body.
func apidCall(args []string) error {
	if len(args) != 4 {
		return fmt.Errorf("apid-call: want socket, method, path, headers; got %q", args)
	}
	var h map[string]string
	if err := json.Unmarshal([]byte(args[3]), &h); err != nil {
		return err
	}
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", args[0])
	}}}
	req, err := http.NewRequest(args[1], "http://apid/api2/json"+args[2], nil)
	if err != nil {
		return err
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("%d %s\n", resp.StatusCode, body)
	return nil
}

// asProxydUID calls apid's socket from a process with proxyd's uid (65534 when the tests run as
// root; this uid otherwise) and returns the status line it printed.
func (st *stack) asProxydUID(t *testing.T, method, path string, h map[string]string) string {
	t.Helper()
	js, _ := json.Marshal([]string{st.dirs.Socket(), method, path, string(mustJSON(t, h))})
	cmd := exec.Command(st.bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=apid-call", argsEnv+"="+string(js))
	if st.split {
		cmd.SysProcAttr = nobodyAttr()
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("apid-call %s %s: %v\n%s", method, path, err, out)
	}
	return strings.TrimSpace(string(out))
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestApidBelievesNoNamedIdentity: a process running as proxyd's uid (a compromised proxyd)
// talks to apid's socket. Naming root@pam in X-Gatehouse-Authid, as proxyd used to, rotated
// the signing key; now apid verifies the credential of every call itself, so such a process
// acts only as users whose credentials it holds.
func TestApidBelievesNoNamedIdentity(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "amy@pbs", "amy-pass-1")
	amy := st.login(t, "amy@pbs", "amy-pass-1")
	gen, err := shmem.Dial(st.dirs.ShmemSocket())
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	keys := gen.Load(shmem.Keys)
	named := map[string]string{"X-Gatehouse-Authid": "root@pam", "X-Gatehouse-Rhost": "192.0.2.1:1"}
	for _, tt := range []struct {
		name, method, path string
		h                  map[string]string
	}{
		{"root@pam named: rotate the key", "POST", "/keys/rotate", named},
		{"root@pam named: create a user", "POST", "/access/users?userid=evil@pbs", named},
		{"root@pam named: read the users", "GET", "/access/users", named},
		{"amy's ticket, root@pam named beside: rotate the key", "POST", "/keys/rotate",
			map[string]string{"X-Gatehouse-Authid": "root@pam", "X-Gatehouse-Rhost": "192.0.2.1:1", "Cookie": "PBSAuthCookie=" + amy.ticket, "CSRFPreventionToken": amy.csrf}},
	} {
		got := st.asProxydUID(t, tt.method, tt.path, tt.h)
		want := "401"
		if strings.HasPrefix(tt.name, "amy's ticket") {
			want = "403" // amy is authenticated, and no administrator
		}
		if !strings.HasPrefix(got, want+" ") {
			t.Errorf("%s = %s; want %s", tt.name, got, want)
		}
	}
	if st.split {
		// Without a client address, a peer that is neither root nor apid's user is still nobody.
		if got := st.asProxydUID(t, "POST", "/keys/rotate", map[string]string{"X-Gatehouse-Authid": "root@pam"}); !strings.HasPrefix(got, "401 ") {
			t.Errorf("uid %d without a client address = %s; want 401", nobody, got)
		}
	}
	if g := gen.Load(shmem.Keys); g != keys {
		t.Errorf("keys generation %d -> %d: the signing key was rotated by a named identity", keys, g)
	}
	if a := st.admin(t, call{method: "GET", path: "/access/users/evil@pbs"}); a.status != 404 {
		t.Errorf("evil@pbs = %d; want 404 (never created)", a.status)
	}
	// With amy's own credential the process acts as amy, and only as amy.
	got := st.asProxydUID(t, "GET", "/access/users", map[string]string{"Cookie": "PBSAuthCookie=" + amy.ticket, "X-Gatehouse-Rhost": "192.0.2.1:1"})
	if !strings.HasPrefix(got, "200 ") || !strings.Contains(got, `"amy@pbs"`) || strings.Contains(got, "root@pam") {
		t.Errorf("users listed with amy's ticket = %s; want amy only", got)
	}
}

// TestDeletedUserTicketsStayDead: deleting a user ends its tickets for good; a user created
// again under the same id does not get them back, as a session or for renewal (before, they
// worked and renewed). Tokens of the old user stay dead too.
func TestDeletedUserTicketsStayDead(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "dee@pbs", "dee-pass-1")
	old := st.login(t, "dee@pbs", "dee-pass-1")
	token := st.newToken(t, old, "ci")
	if a := st.admin(t, call{method: "DELETE", path: "/access/users/dee@pbs"}); a.status != 200 {
		t.Fatalf("deleting dee = %d %s", a.status, a.message)
	}
	if got := st.versionWith(t, old.header(false)); got != 401 {
		t.Errorf("deleted user's ticket = %d; want 401", got)
	}
	st.addUser(t, "dee@pbs", "dee-pass-2")
	if a := st.admin(t, call{method: "POST", path: "/access/users/dee@pbs/token/ci"}); a.status != 200 {
		t.Fatalf("token ci of the new dee = %d %s", a.status, a.message)
	}
	if got := st.versionWith(t, old.header(false)); got != 401 {
		t.Errorf("the old dee's ticket after dee was created again = %d; want 401", got)
	}
	if a := st.do(t, call{method: "POST", path: "/access/ticket", form: url.Values{"username": {"dee@pbs"}, "password": {old.ticket}}}); a.status != 401 {
		t.Errorf("renewing the old dee's ticket = %d; want 401", a.status)
	}
	if got := st.versionWith(t, token); got != 401 {
		t.Errorf("the old dee's token secret for the new token ci = %d; want 401", got)
	}
	if got := st.versionWith(t, st.login(t, "dee@pbs", "dee-pass-2").header(false)); got != 200 {
		t.Errorf("the new dee's session = %d; want 200", got)
	}
}

// TestParallelGuesses: 100 wrong credentials sent at once from one client address, against
// the deployed burst of 10, get 10 real checks and 90 answers of 429 before any check, for
// passwords, API tokens, tickets and second factors. (Before, the failure was recorded after
// the check: 93 of 100 wrong passwords were checked.) 100 valid requests at once are never
// refused.
func TestParallelGuesses(t *testing.T) {
	st := start(t, options{burst: 10})
	st.addUser(t, "pat@pbs", "pat-pass-1")
	st.addUser(t, "tia@pbs", "tia-pass-1")
	k := newOTPKey(t)
	st.enrolTOTP(t, st.login(t, "tia@pbs", "tia-pass-1"), "tia-pass-1", k, k.code(t, totpStep()))
	tfaTicket, _ := st.tfaStep1(t, "tia@pbs", "tia-pass-1", nil)
	pat := st.login(t, "pat@pbs", "pat-pass-1")
	patToken := st.newToken(t, pat, "ci")
	wrongCodes := k.wrongCodes(t, totpStep(), 100)

	parallel := func(n int, c func(i int) call) map[int]int {
		t.Helper()
		var mu sync.Mutex
		statuses := map[int]int{}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				a, err := tryOn(st.http, st.url, c(i))
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					t.Error(err)
					return
				}
				statuses[a.status]++
			})
		}
		close(start)
		wg.Wait()
		return statuses
	}
	from := func(ip string, h http.Header) http.Header {
		h = h.Clone()
		if h == nil {
			h = http.Header{}
		}
		h.Set("X-Forwarded-For", ip) // 127.0.0.1 is a trusted proxy of this proxyd
		return h
	}
	for _, tt := range []struct {
		name, ip string
		c        func(i int) call
	}{
		{"wrong passwords", "203.0.113.1", func(i int) call {
			return call{method: "POST", path: "/access/ticket", header: from("203.0.113.1", nil),
				form: url.Values{"username": {"pat@pbs"}, "password": {fmt.Sprintf("guess-%d", i)}}}
		}},
		{"wrong token secrets", "203.0.113.2", func(i int) call {
			return call{method: "GET", path: "/version", header: from("203.0.113.2", http.Header{"Authorization": {fmt.Sprintf("PBSAPIToken=pat@pbs!ci:guess-%d", i)}})}
		}},
		{"forged tickets", "203.0.113.3", func(i int) call {
			return call{method: "GET", path: "/version", header: from("203.0.113.3", http.Header{"Cookie": {fmt.Sprintf("PBSAuthCookie=PBS:pat@pbs:6B043829::guess%d", i)}})}
		}},
		{"wrong second factors", "203.0.113.4", func(i int) call {
			return call{method: "POST", path: "/access/ticket", header: from("203.0.113.4", nil),
				form: url.Values{"username": {"tia@pbs"}, "tfa-challenge": {tfaTicket}, "password": {"totp:" + wrongCodes[i]}}}
		}},
	} {
		got := parallel(100, tt.c)
		if got[401] != 10 || got[429] != 90 {
			t.Errorf("100 parallel %s: answers %v; want 10 × 401 (checked) and 90 × 429", tt.name, got)
		}
		logged := 0
		for _, l := range st.authLogLines(t) {
			if strings.Contains(l, "rhost=["+tt.ip+"]") {
				logged++
			}
		}
		if logged != 10 {
			t.Errorf("100 parallel %s: %d auth.log lines; want 10", tt.name, logged)
		}
	}
	// Valid credentials in parallel from one address: nothing refused, nothing logged.
	valid := parallel(100, func(i int) call {
		if i%2 == 0 {
			return call{method: "GET", path: "/version", header: from("203.0.113.5", pat.header(false))}
		}
		return call{method: "GET", path: "/version", header: from("203.0.113.5", patToken)}
	})
	if valid[200] != 100 {
		t.Errorf("100 parallel valid requests: answers %v; want 100 × 200", valid)
	}
}

// TestControlCharacterUserName: a user name with a control character used to make apid's
// answer header malformed (proxyd: 502, no auth.log line, no count, no delay). It is a 401
// that is logged (the character shown as '?') and counted.
func TestControlCharacterUserName(t *testing.T) {
	st := start(t, options{burst: 2})
	for i, name := range []string{"a\x01b@pbs", "x\x7fy@pbs", "new\nline@pbs"} {
		a := st.do(t, call{method: "POST", path: "/access/ticket", raw: `{"username":` + string(mustJSON(t, name)) + `,"password":"x"}`,
			header: http.Header{"X-Forwarded-For": {"203.0.113.20"}}})
		want := 401
		if i == 2 {
			want = 429 // the two failures before spent the burst: they were counted
		}
		if a.status != want {
			t.Errorf("login as %q = %d %s; want %d", name, a.status, a.message, want)
		}
	}
	var lines []string
	for _, l := range st.authLogLines(t) {
		if strings.Contains(l, "rhost=[203.0.113.20]") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 2 || !strings.HasSuffix(lines[0], "user=a?b@pbs msg=invalid user name") || !strings.HasSuffix(lines[1], "user=x?y@pbs msg=invalid user name") {
		t.Errorf("auth log = %q; want two 'invalid user name' lines", lines)
	}
}

// TestSessionProbeCounted: GET /gatehouse/session with a cookie that is no session is a failed
// authentication: an auth.log line and a count toward 429 (before, neither). No cookie is no
// attempt.
func TestSessionProbeCounted(t *testing.T) {
	st := start(t, options{burst: 2})
	base := strings.TrimSuffix(st.url, "/api2/json")
	probe := func(cookie string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", base+"/gatehouse/session", nil)
		req.Header.Set("X-Forwarded-For", "203.0.113.30")
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := st.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for range 3 {
		if got := probe(""); got != 401 {
			t.Errorf("session probe without a cookie = %d; want 401", got)
		}
	}
	for i, want := range []int{401, 401, 429} {
		if got := probe("__Host-PBSAuthCookie=PBS:x@pbs:6B043829::forged"); got != want {
			t.Errorf("session probe %d with a forged ticket = %d; want %d", i+1, got, want)
		}
	}
	n := 0
	for _, l := range st.authLogLines(t) {
		if strings.Contains(l, "rhost=[203.0.113.30]") && strings.HasSuffix(l, "msg=invalid ticket") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("auth log has %d lines for the forged session probes; want 2", n)
	}
}

// TestTokenCannotLogOut: DELETE /access/ticket with an API token is refused (403) and ends no
// session of its user. (Before, a token ended every browser session of its owner; PBS's logout
// only clears the caller's cookie and revokes nothing.)
func TestTokenCannotLogOut(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "tom@pbs", "tom-pass-1")
	tom := st.login(t, "tom@pbs", "tom-pass-1")
	if a := st.do(t, call{method: "DELETE", path: "/access/ticket", header: st.newToken(t, tom, "ci")}); a.status != 403 {
		t.Errorf("logout with tom's token = %d %s; want 403", a.status, a.message)
	}
	if got := st.versionWith(t, tom.header(false)); got != 200 {
		t.Errorf("tom's session after the token's logout = %d; want 200", got)
	}
	if a := st.do(t, call{method: "DELETE", path: "/access/ticket", header: tom.header(true)}); a.status != 200 {
		t.Errorf("logout with tom's ticket = %d; want 200", a.status)
	}
	if got := st.versionWith(t, tom.header(false)); got != 401 {
		t.Errorf("tom's session after logging out = %d; want 401", got)
	}
}
