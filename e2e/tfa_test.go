package e2e

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"

	"gatehouse/ticket"
)

// Two-factor authentication through the real daemons. TOTP codes come from the real oathtool
// binary, computed for explicit time steps: a test captures the current step s0 once, enrols
// with the code of s0 and logs in with the code of s0+1. The daemons accept one step of skew
// either way, so both codes are valid while the daemons' clock is at step s0 or s0+1, that is
// for at least 30 s after s0 was captured, whatever the phase: a step boundary during a test
// cannot make it fail. A step-s0+2 code would not be safe (refused while the daemons are still
// at s0), so a test never needs more than two codes of one secret.

// totpPeriod is the TOTP time step (the otpauth default, which the tests use).
const totpPeriod = 30

// totpStep is the current TOTP time step.
func totpStep() int64 { return time.Now().Unix() / totpPeriod }

// otpKey is a TOTP secret, base32 without padding.
type otpKey struct{ secret string }

func newOTPKey(t *testing.T) otpKey {
	t.Helper()
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return otpKey{base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)}
}

// uri is the otpauth URI enrolled for user.
func (k otpKey) uri(user string) string {
	return "otpauth://totp/Gatehouse:" + url.PathEscape(user) + "?secret=" + k.secret + "&issuer=Gatehouse"
}

// code runs oathtool for the start of time step step.
func (k otpKey) code(t *testing.T, step int64) string {
	t.Helper()
	tool, err := exec.LookPath("oathtool")
	if err != nil {
		t.Fatalf("oathtool is required (apt-get install oathtool): %v", err)
	}
	out, err := exec.Command(tool, "--totp", "-b", "-N", fmt.Sprintf("@%d", step*totpPeriod), k.secret).Output()
	if err != nil {
		t.Fatalf("oathtool: %v", err)
	}
	code := strings.TrimSpace(string(out))
	if !regexp.MustCompile(`^[0-9]{6}$`).MatchString(code) {
		t.Fatalf("oathtool printed %q; want 6 digits", out)
	}
	return code
}

// wrongCodes returns n distinct 6-digit codes that are none of k's codes for the steps around
// s0, so they fail whatever the daemons' step.
func (k otpKey) wrongCodes(t *testing.T, s0 int64, n int) []string {
	t.Helper()
	valid := map[string]bool{}
	for s := s0 - 3; s <= s0+3; s++ {
		valid[k.code(t, s)] = true
	}
	var out []string
	for i := 1; len(out) < n; i++ {
		c := fmt.Sprintf("%06d", (i*104729)%1000000)
		if !valid[c] {
			out = append(out, c)
		}
	}
	return out
}

// enrolTOTP adds k for s's user through proxyd, as that user (with the password re-check), with
// code as the proof; it returns the entry id.
func (st *stack) enrolTOTP(t *testing.T, s session, password string, k otpKey, code string) string {
	t.Helper()
	a := st.do(t, call{method: "POST", path: "/access/tfa/" + s.user, header: s.header(true), form: url.Values{
		"type": {"totp"}, "description": {"phone"}, "totp": {k.uri(s.user)}, "value": {code}, "password": {password}}})
	var d struct{ ID string }
	if a.status == 200 {
		a.decode(t, &d)
	}
	if a.status != 200 || d.ID == "" {
		t.Fatalf("enrolling totp for %s = %d %s %v %s; want 200 with an id", s.user, a.status, a.message, a.errors, a.data)
	}
	return d.ID
}

// addRecovery makes s's user's recovery codes through proxyd and returns them.
func (st *stack) addRecovery(t *testing.T, s session, password string) []string {
	t.Helper()
	a := st.do(t, call{method: "POST", path: "/access/tfa/" + s.user, header: s.header(true),
		form: url.Values{"type": {"recovery"}, "password": {password}}})
	var d struct {
		ID       string
		Recovery []string
	}
	if a.status == 200 {
		a.decode(t, &d)
	}
	if a.status != 200 || d.ID != "recovery" || len(d.Recovery) != 10 {
		t.Fatalf("adding recovery codes for %s = %d %s %s; want 200, id recovery and 10 codes", s.user, a.status, a.message, a.data)
	}
	return d.Recovery
}

// tfaChallenge is the challenge JSON inside a "!tfa!" ticket.
type tfaChallenge struct {
	TOTP     bool            `json:"totp"`
	Recovery *[]int          `json:"recovery"`
	Webauthn json.RawMessage `json:"webauthn"`
	raw      string
}

// challengeOf decodes the challenge of a "PBS:!tfa!<percent-encoded JSON>:<HEXTIME>::<sig>" ticket.
func challengeOf(t *testing.T, tk string) tfaChallenge {
	t.Helper()
	parts := strings.SplitN(tk, ":", 3)
	if len(parts) != 3 || parts[0] != "PBS" {
		t.Fatalf("ticket %q is not PBS:<data>:...", tk)
	}
	data, err := url.PathUnescape(parts[1])
	if err != nil {
		t.Fatalf("ticket data %q: %v", parts[1], err)
	}
	js, ok := strings.CutPrefix(data, "!tfa!")
	if !ok {
		t.Fatalf("ticket data %q does not start with !tfa!", data)
	}
	var ch tfaChallenge
	dec := json.NewDecoder(strings.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ch); err != nil {
		t.Fatalf("tfa challenge %q: %v", js, err)
	}
	ch.raw = js
	return ch
}

// tfaStep1 logs in with the password of a user who has second factors: the answer must be
// a "!tfa!" ticket with the CSRF token "invalid". extra adds parameters (http-only).
func (st *stack) tfaStep1(t *testing.T, user, password string, extra url.Values) (string, tfaChallenge) {
	t.Helper()
	form := url.Values{"username": {user}, "password": {password}}
	for k, v := range extra {
		form[k] = v
	}
	a := st.do(t, call{method: "POST", path: "/access/ticket", form: form})
	if a.status != 200 {
		t.Fatalf("tfa step 1 for %s = %d %s; want 200", user, a.status, a.message)
	}
	var d map[string]string
	a.decode(t, &d)
	if d["username"] != user || d["CSRFPreventionToken"] != "invalid" || !strings.HasPrefix(d["ticket"], "PBS:!tfa!") || len(d) != 3 {
		t.Fatalf("tfa step 1 for %s answered %s; want username, a PBS:!tfa! ticket and CSRFPreventionToken invalid", user, a.data)
	}
	if sc := a.header.Values("Set-Cookie"); len(sc) != 0 {
		t.Errorf("tfa step 1 for %s set cookies %q; want none", user, sc)
	}
	return d["ticket"], challengeOf(t, d["ticket"])
}

// tfaStep2 answers a challenge ticket; response is "totp:<code>", "recovery:<code>" or
// "webauthn:<json>".
func (st *stack) tfaStep2(t *testing.T, user, tk, response string, extra url.Values) answer {
	t.Helper()
	form := url.Values{"username": {user}, "tfa-challenge": {tk}, "password": {response}}
	for k, v := range extra {
		form[k] = v
	}
	return st.do(t, call{method: "POST", path: "/access/ticket", form: form})
}

// fullSession checks a's answer is a full legacy-flow ticket for user and that it works.
func (st *stack) fullSession(t *testing.T, a answer, user string) session {
	t.Helper()
	if a.status != 200 {
		t.Fatalf("tfa step 2 for %s = %d %s; want 200", user, a.status, a.message)
	}
	var d struct{ Username, Ticket, CSRFPreventionToken string }
	a.decode(t, &d)
	if d.Username != user || !strings.HasPrefix(d.Ticket, "PBS:"+user+":") || d.CSRFPreventionToken == "" || d.CSRFPreventionToken == "invalid" {
		t.Fatalf("tfa step 2 for %s answered %s; want a full ticket and a CSRF token", user, a.data)
	}
	s := session{user, d.Ticket, d.CSRFPreventionToken}
	if got := st.versionWith(t, s.header(false)); got != 200 {
		t.Fatalf("GET /version with %s's ticket from the second step = %d; want 200", user, got)
	}
	return s
}

// versionWith is the status of GET /version with h.
func (st *stack) versionWith(t *testing.T, h http.Header) int {
	t.Helper()
	return st.do(t, call{method: "GET", path: "/version", header: h}).status
}

// failLines returns the auth log lines for user.
func (st *stack) failLines(t *testing.T, user string) []string {
	t.Helper()
	var out []string
	for _, l := range st.authLogLines(t) {
		if strings.Contains(l, " user="+user+" msg=") {
			out = append(out, l)
		}
	}
	return out
}

// tfaUser is one entry of GET /access/tfa.
type tfaUser struct {
	Userid  string `json:"userid"`
	Entries []struct {
		Type        string `json:"type"`
		ID          string `json:"id"`
		Description string `json:"description"`
		Created     int64  `json:"created"`
		Enable      *bool  `json:"enable"`
	} `json:"entries"`
	TOTPLocked     *bool  `json:"totp-locked"`
	TFALockedUntil *int64 `json:"tfa-locked-until"`
}

// tfaList is GET /access/tfa as root@pam, by user id.
func (st *stack) tfaList(t *testing.T) map[string]tfaUser {
	t.Helper()
	a := st.admin(t, call{method: "GET", path: "/access/tfa"})
	if a.status != 200 {
		t.Fatalf("GET /access/tfa = %d %s", a.status, a.message)
	}
	var list []tfaUser
	a.decode(t, &list)
	out := map[string]tfaUser{}
	for _, u := range list {
		out[u.Userid] = u
	}
	return out
}

// userLock is the lock state GET /access/users/{user} shows (root@pam).
func (st *stack) userLock(t *testing.T, user string) (totpLocked bool, until int64) {
	t.Helper()
	a := st.admin(t, call{method: "GET", path: "/access/users/" + user})
	if a.status != 200 {
		t.Fatalf("GET /access/users/%s = %d %s", user, a.status, a.message)
	}
	var d struct {
		Userid         string `json:"userid"`
		TOTPLocked     bool   `json:"totp-locked"`
		TFALockedUntil int64  `json:"tfa-locked-until"`
	}
	a.decode(t, &d)
	return d.TOTPLocked, d.TFALockedUntil
}

// TestTFATOTPLogin enrols TOTP through proxyd and logs in with both steps, in the legacy and
// the HttpOnly flows: the half ticket is no session, the enrolment code and a used code are
// refused.
func TestTFATOTPLogin(t *testing.T) {
	st := start(t, options{})
	s0 := totpStep()
	for _, tt := range []struct {
		flow, user, password string
		httpOnly             bool
	}{
		{"legacy", "tina@pbs", "tina-pass-1", false},
		{"http-only", "hugo@pbs", "hugo-pass-1", true},
	} {
		t.Run(tt.flow, func(t *testing.T) {
			st.addUser(t, tt.user, tt.password)
			before := st.login(t, tt.user, tt.password) // no second factor yet: one call
			k := newOTPKey(t)
			enrolCode, loginCode := k.code(t, s0), k.code(t, s0+1)
			id := st.enrolTOTP(t, before, tt.password, k, enrolCode)

			a := st.do(t, call{method: "GET", path: "/access/tfa/" + tt.user, header: before.header(false)})
			if a.status != 200 || !strings.Contains(string(a.data), `"type":"totp"`) || !strings.Contains(string(a.data), id) {
				t.Errorf("GET /access/tfa/%s = %d %s; want the totp entry %s", tt.user, a.status, a.data, id)
			}
			if strings.Contains(string(a.data), k.secret) {
				t.Errorf("GET /access/tfa/%s shows the secret: %s", tt.user, a.data)
			}

			extra := url.Values{}
			if tt.httpOnly {
				extra.Set("http-only", "1")
			}
			tk, ch := st.tfaStep1(t, tt.user, tt.password, extra)
			if !ch.TOTP || ch.Recovery != nil || ch.Webauthn != nil {
				t.Errorf("challenge = %s; want totp only", ch.raw)
			}

			// The half-authenticated ticket is no session, in either cookie, nor a renewal.
			// (Raw, the ticket is no valid cookie value, having '"'; percent-encoded, proxyd
			// decodes it and refuses it as a ticket, logging "invalid ticket".)
			invalid := func() int { return strings.Count(strings.Join(st.authLogLines(t), "\n"), "msg=invalid ticket") }
			invalidBefore := invalid()
			for _, name := range []string{"PBSAuthCookie", "__Host-PBSAuthCookie"} {
				for _, v := range []string{tk, url.QueryEscape(tk)} {
					if got := st.versionWith(t, http.Header{"Cookie": {name + "=" + v}}); got != 401 {
						t.Errorf("GET /version with the !tfa! ticket in %s (%.12s...) = %d; want 401", name, v, got)
					}
				}
			}
			if n := invalid() - invalidBefore; n != 2 {
				t.Errorf("auth log has %d new 'invalid ticket' lines; want 2 (the percent-encoded cookies)", n)
			}
			if a := st.do(t, call{method: "POST", path: "/access/ticket", form: url.Values{"username": {tt.user}, "password": {tk}}}); a.status != 401 {
				t.Errorf("renewal with the !tfa! ticket as password = %d %s; want 401", a.status, a.data)
			}
			// Nor is the password alone a second factor, nor a bare code.
			for _, bad := range []string{tt.password, loginCode, "totp:", "sms:" + loginCode} {
				if a := st.tfaStep2(t, tt.user, tk, bad, extra); a.status != 401 {
					t.Errorf("second step with %q = %d %s; want 401", bad, a.status, a.data)
				}
			}
			// The code that enrolled the entry was used then.
			if a := st.tfaStep2(t, tt.user, tk, "totp:"+enrolCode, extra); a.status != 401 {
				t.Errorf("second step with the enrolment code = %d %s; want 401", a.status, a.data)
			}

			if tt.httpOnly {
				a = st.tfaStep2(t, tt.user, tk, "totp:"+loginCode, extra)
			} else { // a JSON body, as the PBS web UI sends
				body, _ := json.Marshal(map[string]string{"username": tt.user, "tfa-challenge": tk, "password": "totp:" + loginCode})
				a = st.do(t, call{method: "POST", path: "/access/ticket", raw: string(body)})
			}
			if tt.httpOnly {
				if a.status != 200 {
					t.Fatalf("http-only second step = %d %s; want 200", a.status, a.message)
				}
				var d map[string]string
				a.decode(t, &d)
				if _, has := d["ticket"]; has || !strings.HasPrefix(d["ticket-info"], "PBS:"+tt.user+":") || d["CSRFPreventionToken"] == "" || d["CSRFPreventionToken"] == "invalid" {
					t.Errorf("http-only second step answered %v; want ticket-info, a CSRF token and no ticket", d)
				}
				sc := a.header.Get("Set-Cookie")
				for _, attr := range []string{"__Host-PBSAuthCookie=PBS:" + tt.user + ":", "Path=/", "Secure", "HttpOnly", "SameSite=Lax"} {
					if !strings.Contains(sc, attr) {
						t.Errorf("Set-Cookie %q lacks %q", sc, attr)
					}
				}
				cookie := strings.SplitN(sc, ";", 2)[0]
				if got := st.versionWith(t, http.Header{"Cookie": {cookie}}); got != 200 {
					t.Errorf("GET /version with the HttpOnly cookie of the second step = %d; want 200", got)
				}
				h := http.Header{"Cookie": {cookie}, "CSRFPreventionToken": {d["CSRFPreventionToken"]}}
				if a := st.do(t, call{method: "PUT", path: "/access/users/" + tt.user, form: url.Values{"comment": {"tfa"}}, header: h}); a.status != 200 {
					t.Errorf("PUT with the HttpOnly session and its CSRF token = %d %s; want 200", a.status, a.message)
				}
			} else {
				s := st.fullSession(t, a, tt.user)
				if a := st.do(t, call{method: "PUT", path: "/access/users/" + tt.user, form: url.Values{"comment": {"tfa"}}, header: s.header(true)}); a.status != 200 {
					t.Errorf("PUT with the second step's session and CSRF token = %d %s; want 200", a.status, a.message)
				}
				// A full ticket renews without a second factor, as in PBS.
				st.login(t, tt.user, s.ticket)
			}

			// The code is used now: neither the same challenge ticket nor a new one takes it.
			if a := st.tfaStep2(t, tt.user, tk, "totp:"+loginCode, extra); a.status != 401 {
				t.Errorf("the same code again on the same challenge = %d %s; want 401", a.status, a.data)
			}
			tk2, _ := st.tfaStep1(t, tt.user, tt.password, extra)
			if a := st.tfaStep2(t, tt.user, tk2, "totp:"+loginCode, extra); a.status != 401 {
				t.Errorf("the same code again on a new challenge = %d %s; want 401", a.status, a.data)
			}
			// A wrong password still fails at the first step.
			if a := st.do(t, call{method: "POST", path: "/access/ticket", form: url.Values{"username": {tt.user}, "password": {"wrong"}}}); a.status != 401 {
				t.Errorf("wrong password = %d; want 401", a.status)
			}
			used := 0
			for _, l := range st.failLines(t, tt.user) {
				if strings.HasSuffix(l, "msg=totp code was already used: second factor verification failed") {
					used++
				}
			}
			if used != 3 {
				t.Errorf("auth log has %d 'already used' lines for %s; want 3 (enrolment code, reuse twice):\n%s", used, tt.user, strings.Join(st.failLines(t, tt.user), "\n"))
			}
		})
	}
}

// TestTFAConcurrentCode sends one valid TOTP code in concurrent second steps: exactly one
// wins.
func TestTFAConcurrentCode(t *testing.T) {
	st := start(t, options{})
	s0 := totpStep()
	st.addUser(t, "cora@pbs", "cora-pass-1")
	k := newOTPKey(t)
	st.enrolTOTP(t, st.login(t, "cora@pbs", "cora-pass-1"), "cora-pass-1", k, k.code(t, s0))
	tk, _ := st.tfaStep1(t, "cora@pbs", "cora-pass-1", nil)
	form := url.Values{"username": {"cora@pbs"}, "tfa-challenge": {tk}, "password": {"totp:" + k.code(t, s0+1)}}
	const n = 6 // fewer than the 8 failures that would lock TOTP
	statuses := make(chan int, n)
	gate := make(chan struct{})
	for range n {
		go func() {
			<-gate
			resp, err := st.http.PostForm(st.url+"/access/ticket", form)
			if err != nil {
				statuses <- -1
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	close(gate)
	count := map[int]int{}
	for range n {
		count[<-statuses]++
	}
	if count[200] != 1 || count[401] != n-1 {
		t.Errorf("statuses of %d concurrent answers with one code = %v; want one 200, the rest 401", n, count)
	}
}

// TestTFALockout: eight wrong TOTP codes lock TOTP (the right code fails then) until a
// recovery code or root's unlock-tfa; a hundred failures of any kind lock every factor.
func TestTFALockout(t *testing.T) {
	st := start(t, options{})
	s0 := totpStep()
	type user struct {
		name, password string
		key            otpKey
		recovery       []string
		tk             string
	}
	setUp := func(t *testing.T, name, password string) *user {
		st.addUser(t, name, password)
		s := st.login(t, name, password)
		u := &user{name: name, password: password, key: newOTPKey(t)}
		st.enrolTOTP(t, s, password, u.key, u.key.code(t, s0))
		u.recovery = st.addRecovery(t, s, password)
		u.tk, _ = st.tfaStep1(t, name, password, nil)
		return u
	}
	lock := func(t *testing.T, u *user) {
		t.Helper()
		for i, c := range u.key.wrongCodes(t, s0, 8) {
			if a := st.tfaStep2(t, u.name, u.tk, "totp:"+c, nil); a.status != 401 {
				t.Fatalf("wrong code %d = %d %s; want 401", i+1, a.status, a.data)
			}
		}
		if a := st.tfaStep2(t, u.name, u.tk, "totp:"+u.key.code(t, s0+1), nil); a.status != 401 {
			t.Fatalf("the right code after 8 wrong ones = %d %s; want 401 (locked)", a.status, a.data)
		}
		if l := st.tfaList(t)[u.name]; l.TOTPLocked == nil || !*l.TOTPLocked || l.TFALockedUntil != nil {
			t.Errorf("GET /access/tfa for %s: totp-locked %v, tfa-locked-until %v; want true and none", u.name, l.TOTPLocked, l.TFALockedUntil)
		}
		if locked, until := st.userLock(t, u.name); !locked || until != 0 {
			t.Errorf("GET /access/users/%s: totp-locked %v, tfa-locked-until %d; want true, 0", u.name, locked, until)
		}
		lines := st.failLines(t, u.name)
		if len(lines) != 9 {
			t.Fatalf("auth log has %d lines for %s; want 9 (8 wrong codes, 1 locked):\n%s", len(lines), u.name, strings.Join(lines, "\n"))
		}
		for i, l := range lines[:7] {
			if !strings.HasSuffix(l, "msg=totp code not valid: second factor verification failed") {
				t.Errorf("auth log line %d = %q; want a wrong code", i+1, l)
			}
		}
		if !strings.HasSuffix(lines[7], "; totp is now locked") {
			t.Errorf("auth log line 8 = %q; want the lock", lines[7])
		}
		if !strings.Contains(lines[8], "locked after too many failures") {
			t.Errorf("auth log line 9 = %q; want a locked attempt", lines[8])
		}
	}
	unlocked := func(t *testing.T, u *user) {
		t.Helper()
		if l := st.tfaList(t)[u.name]; l.TOTPLocked != nil || l.TFALockedUntil != nil {
			t.Errorf("GET /access/tfa for %s after the unlock: totp-locked %v, tfa-locked-until %v; want neither", u.name, l.TOTPLocked, l.TFALockedUntil)
		}
		if locked, until := st.userLock(t, u.name); locked || until != 0 {
			t.Errorf("GET /access/users/%s after the unlock: totp-locked %v, tfa-locked-until %d", u.name, locked, until)
		}
	}

	t.Run("recovery code unlocks", func(t *testing.T) {
		u := setUp(t, "lara@pbs", "lara-pass-1")
		lock(t, u)
		// The user sees her own lock state.
		s := st.fullSession(t, st.tfaStep2(t, u.name, u.tk, "recovery:"+u.recovery[0], nil), u.name)
		unlocked(t, u)
		a := st.do(t, call{method: "GET", path: "/access/tfa", header: s.header(false)})
		if a.status != 200 || !strings.Contains(string(a.data), `"userid":"lara@pbs"`) {
			t.Errorf("lara's GET /access/tfa = %d %s", a.status, a.data)
		}
		// Unlocking is root's: a user gets 403.
		if a := st.do(t, call{method: "PUT", path: "/access/users/lara@pbs/unlock-tfa", header: s.header(true)}); a.status != 403 {
			t.Errorf("lara unlocking herself = %d; want 403", a.status)
		}
		st.fullSession(t, st.tfaStep2(t, u.name, u.tk, "totp:"+u.key.code(t, s0+1), nil), u.name)
	})

	t.Run("root unlocks", func(t *testing.T) {
		u := setUp(t, "mona@pbs", "mona-pass-1")
		lock(t, u)
		unlock := func(want bool) {
			t.Helper()
			a := st.admin(t, call{method: "PUT", path: "/access/users/mona@pbs/unlock-tfa"})
			if a.status != 200 || string(a.data) != fmt.Sprint(want) {
				t.Errorf("unlock-tfa = %d %s; want 200 %v", a.status, a.data, want)
			}
		}
		unlock(true)
		unlocked(t, u)
		unlock(false)
		st.fullSession(t, st.tfaStep2(t, u.name, u.tk, "totp:"+u.key.code(t, s0+1), nil), u.name)

		// A hundred consecutive failures of any kind block every factor, recovery codes too.
		before := len(st.failLines(t, u.name))
		for i := range 100 {
			if a := st.tfaStep2(t, u.name, u.tk, fmt.Sprintf("recovery:0000-0000-0000-%04x", i), nil); a.status != 401 {
				t.Fatalf("wrong recovery code %d = %d; want 401", i+1, a.status)
			}
		}
		if a := st.tfaStep2(t, u.name, u.tk, "recovery:"+u.recovery[0], nil); a.status != 401 {
			t.Fatalf("a right recovery code after 100 failures = %d %s; want 401", a.status, a.data)
		}
		now := time.Now().Unix()
		l := st.tfaList(t)[u.name]
		if l.TFALockedUntil == nil || *l.TFALockedUntil < now+12*3600-60 || *l.TFALockedUntil > now+12*3600+5 {
			t.Errorf("GET /access/tfa for mona: tfa-locked-until %v; want about 12 h from now (%d)", l.TFALockedUntil, now+12*3600)
		}
		if _, until := st.userLock(t, u.name); l.TFALockedUntil == nil || until != *l.TFALockedUntil {
			t.Errorf("GET /access/users/mona@pbs: tfa-locked-until %d; want %v", until, l.TFALockedUntil)
		}
		if n := len(st.failLines(t, u.name)) - before; n != 101 {
			t.Errorf("auth log has %d new lines for mona; want 101", n)
		}
		unlock(true)
		unlocked(t, u)
		st.fullSession(t, st.tfaStep2(t, u.name, u.tk, "recovery:"+u.recovery[0], nil), u.name)
	})
}

// TestTFARecoveryCodes: each recovery code logs in once; the challenge lists the unused ones.
func TestTFARecoveryCodes(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "rita@pbs", "rita-pass-1")
	rita := st.login(t, "rita@pbs", "rita-pass-1")
	codes := st.addRecovery(t, rita, "rita-pass-1")
	form := regexp.MustCompile(`^[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}$`)
	seen := map[string]bool{}
	for _, c := range codes {
		if !form.MatchString(c) || seen[c] {
			t.Errorf("recovery code %q is malformed or repeated", c)
		}
		seen[c] = true
	}
	a := st.do(t, call{method: "POST", path: "/access/tfa/rita@pbs", header: rita.header(true), form: url.Values{"type": {"recovery"}, "password": {"rita-pass-1"}}})
	if a.status != 400 {
		t.Errorf("a second set of recovery codes = %d %s; want 400", a.status, a.data)
	}
	a = st.do(t, call{method: "GET", path: "/access/tfa/rita@pbs/recovery", header: rita.header(false)})
	if a.status != 200 || !strings.Contains(string(a.data), `"type":"recovery"`) {
		t.Errorf("GET the recovery entry = %d %s", a.status, a.data)
	}
	for _, c := range codes {
		if strings.Contains(string(a.data), c) {
			t.Errorf("GET the recovery entry shows a code: %s", a.data)
		}
	}

	for i, c := range codes {
		tk, ch := st.tfaStep1(t, "rita@pbs", "rita-pass-1", nil)
		want := []int{}
		for j := i; j < len(codes); j++ {
			want = append(want, j)
		}
		if ch.TOTP || ch.Webauthn != nil || ch.Recovery == nil || !slices.Equal(*ch.Recovery, want) {
			t.Errorf("challenge before code %d = %s; want recovery %v only", i, ch.raw, want)
		}
		if a := st.tfaStep2(t, "rita@pbs", tk, "recovery:0000-0000-0000-0000", nil); a.status != 401 {
			t.Errorf("a wrong recovery code = %d; want 401", a.status)
		}
		st.fullSession(t, st.tfaStep2(t, "rita@pbs", tk, "recovery:"+c, nil), "rita@pbs")
		if a := st.tfaStep2(t, "rita@pbs", tk, "recovery:"+c, nil); a.status != 401 {
			t.Errorf("recovery code %d again = %d %s; want 401", i, a.status, a.data)
		}
	}
	// All used: the user still needs a second factor (PBS), and has none left.
	tk, ch := st.tfaStep1(t, "rita@pbs", "rita-pass-1", nil)
	if ch.Recovery == nil || len(*ch.Recovery) != 0 {
		t.Errorf("challenge with every code used = %s; want recovery []", ch.raw)
	}
	for i, c := range codes {
		if a := st.tfaStep2(t, "rita@pbs", tk, "recovery:"+c, nil); a.status != 401 {
			t.Errorf("used code %d = %d; want 401", i, a.status)
		}
	}
	// Deleting the set (with the password) ends the second step.
	if a := st.do(t, call{method: "DELETE", path: "/access/tfa/rita@pbs/recovery", header: rita.header(true)}); a.status != 401 {
		t.Errorf("deleting the recovery codes without the password = %d; want 401", a.status)
	}
	if a := st.do(t, call{method: "DELETE", path: "/access/tfa/rita@pbs/recovery?password=rita-pass-1", header: rita.header(true)}); a.status != 200 {
		t.Fatalf("deleting the recovery codes = %d %s", a.status, a.message)
	}
	st.login(t, "rita@pbs", "rita-pass-1")
}

// webauthnAnswer adds the "challenge" member PBS's clients send to an authenticator response.
func webauthnAnswer(t *testing.T, response, challenge string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(response), &m); err != nil {
		t.Fatal(err)
	}
	m["challenge"] = challenge
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return "webauthn:" + string(b)
}

// publicKeyChallenge returns publicKey.challenge of WebAuthn options JSON.
func publicKeyChallenge(t *testing.T, options []byte) string {
	t.Helper()
	var o struct {
		PublicKey struct {
			Challenge string `json:"challenge"`
		} `json:"publicKey"`
	}
	if err := json.Unmarshal(options, &o); err != nil || o.PublicKey.Challenge == "" {
		t.Fatalf("webauthn options %s have no publicKey.challenge (%v)", options, err)
	}
	return o.PublicKey.Challenge
}

// TestTFAWebAuthn registers a software authenticator (virtualwebauthn) through proxyd and logs
// in with it.
func TestTFAWebAuthn(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "willa@pbs", "willa-pass-1")
	willa := st.login(t, "willa@pbs", "willa-pass-1")
	u, err := url.Parse(st.url)
	if err != nil {
		t.Fatal(err)
	}
	origin := "https://localhost:" + u.Port()
	rp := virtualwebauthn.RelyingParty{Name: "Gatehouse", ID: "localhost", Origin: origin}
	auth := virtualwebauthn.NewAuthenticatorWithOptions(virtualwebauthn.AuthenticatorOptions{UserHandle: []byte("willa@pbs")})
	cred := virtualwebauthn.NewCredential(virtualwebauthn.KeyTypeEC2)
	register := url.Values{"type": {"webauthn"}, "description": {"software key"}, "password": {"willa-pass-1"}}

	// No relying party yet: no registration.
	if a := st.do(t, call{method: "POST", path: "/access/tfa/willa@pbs", header: willa.header(true), form: register}); a.status != 400 {
		t.Errorf("webauthn registration before the relying party is set = %d %s; want 400", a.status, a.data)
	}
	rpForm := url.Values{"rp": {"Gatehouse"}, "id": {"localhost"}, "origin": {origin}}
	if a := st.do(t, call{method: "PUT", path: "/config/access/tfa/webauthn", header: willa.header(true), form: rpForm}); a.status != 403 {
		t.Errorf("a user setting the relying party = %d; want 403", a.status)
	}
	if a := st.admin(t, call{method: "PUT", path: "/config/access/tfa/webauthn", form: url.Values{"rp": {"x"}, "id": {"localhost"}, "origin": {"http://example.com"}}}); a.status != 400 {
		t.Errorf("a plain-http origin = %d; want 400", a.status)
	}
	if a := st.admin(t, call{method: "PUT", path: "/config/access/tfa/webauthn", form: rpForm}); a.status != 200 {
		t.Fatalf("setting the relying party = %d %s %v", a.status, a.message, a.errors)
	}
	a := st.admin(t, call{method: "GET", path: "/config/access/tfa/webauthn"})
	var wc map[string]any
	a.decode(t, &wc)
	if a.status != 200 || wc["rp"] != "Gatehouse" || wc["id"] != "localhost" || wc["origin"] != origin {
		t.Errorf("GET /config/access/tfa/webauthn = %d %s", a.status, a.data)
	}

	// Registration, two calls.
	a = st.do(t, call{method: "POST", path: "/access/tfa/willa@pbs", header: willa.header(true), form: register})
	var reg struct{ Challenge string }
	a.decode(t, &reg)
	if a.status != 200 || reg.Challenge == "" {
		t.Fatalf("starting the registration = %d %s", a.status, a.data)
	}
	opts, err := virtualwebauthn.ParseAttestationOptions(reg.Challenge)
	if err != nil {
		t.Fatalf("parsing the registration options %s: %v", reg.Challenge, err)
	}
	if opts.RelyingPartyID != "localhost" || opts.RelyingPartyName != "Gatehouse" || opts.UserID != "willa@pbs" {
		t.Errorf("registration options = %+v; want rp localhost/Gatehouse and user willa@pbs", opts)
	}
	regChallenge := publicKeyChallenge(t, []byte(reg.Challenge))
	attestation := virtualwebauthn.CreateAttestationResponse(rp, auth, cred, *opts)
	finish := url.Values{"type": {"webauthn"}, "challenge": {regChallenge}, "value": {attestation}, "password": {"willa-pass-1"}}
	if a := st.do(t, call{method: "POST", path: "/access/tfa/willa@pbs", header: willa.header(true), form: without(finish, "password")}); a.status != 401 {
		t.Errorf("finishing the registration without the password = %d; want 401", a.status)
	}
	a = st.do(t, call{method: "POST", path: "/access/tfa/willa@pbs", header: willa.header(true), form: finish})
	var added struct{ ID string }
	a.decode(t, &added)
	if a.status != 200 || added.ID == "" {
		t.Fatalf("finishing the registration = %d %s %s", a.status, a.message, a.data)
	}
	auth.AddCredential(cred)
	if a := st.do(t, call{method: "POST", path: "/access/tfa/willa@pbs", header: willa.header(true), form: finish}); a.status != 400 {
		t.Errorf("finishing the same registration again = %d %s; want 400", a.status, a.data)
	}
	a = st.do(t, call{method: "GET", path: "/access/tfa/willa@pbs/" + added.ID, header: willa.header(false)})
	if a.status != 200 || !strings.Contains(string(a.data), `"type":"webauthn"`) || !strings.Contains(string(a.data), `"description":"software key"`) {
		t.Errorf("GET the webauthn entry = %d %s", a.status, a.data)
	}

	// login signs the challenge of a new first step with key (as the registered authenticator
	// would), returning the challenge ticket and the answer.
	login := func(key *virtualwebauthn.Credential, rp virtualwebauthn.RelyingParty) (string, string) {
		t.Helper()
		tk, ch := st.tfaStep1(t, "willa@pbs", "willa-pass-1", nil)
		if ch.TOTP || ch.Recovery != nil || ch.Webauthn == nil {
			t.Fatalf("challenge = %s; want webauthn only", ch.raw)
		}
		ao, err := virtualwebauthn.ParseAssertionOptions(string(ch.Webauthn))
		if err != nil {
			t.Fatalf("parsing the login challenge %s: %v", ch.Webauthn, err)
		}
		if ao.RelyingPartyID != "localhost" {
			t.Errorf("login challenge rpId = %q; want localhost", ao.RelyingPartyID)
		}
		if key == nil {
			key = auth.FindAllowedCredential(*ao)
			if key == nil {
				t.Fatalf("login challenge %s does not allow the registered credential", ch.Webauthn)
			}
		}
		key.Counter++
		resp := virtualwebauthn.CreateAssertionResponse(rp, auth, *key, *ao)
		return tk, webauthnAnswer(t, resp, publicKeyChallenge(t, ch.Webauthn))
	}

	tk, answer := login(nil, rp)
	st.fullSession(t, st.tfaStep2(t, "willa@pbs", tk, answer, nil), "willa@pbs")
	// Replays: the challenge was used.
	if a := st.tfaStep2(t, "willa@pbs", tk, answer, nil); a.status != 401 {
		t.Errorf("the same webauthn answer again = %d %s; want 401", a.status, a.data)
	}
	tk2, _ := st.tfaStep1(t, "willa@pbs", "willa-pass-1", nil)
	if a := st.tfaStep2(t, "willa@pbs", tk2, answer, nil); a.status != 401 {
		t.Errorf("the same webauthn answer on a new challenge = %d %s; want 401", a.status, a.data)
	}

	// Refused answers: an unregistered key, another origin, no challenge member.
	other := virtualwebauthn.NewCredential(virtualwebauthn.KeyTypeEC2)
	tk, answer = login(&other, rp)
	if a := st.tfaStep2(t, "willa@pbs", tk, answer, nil); a.status != 401 {
		t.Errorf("an unregistered key = %d %s; want 401", a.status, a.data)
	}
	tk, answer = login(nil, virtualwebauthn.RelyingParty{Name: "Gatehouse", ID: "localhost", Origin: "https://evil.example"})
	if a := st.tfaStep2(t, "willa@pbs", tk, answer, nil); a.status != 401 {
		t.Errorf("an answer made for another origin = %d %s; want 401", a.status, a.data)
	}
	tk, ch := st.tfaStep1(t, "willa@pbs", "willa-pass-1", nil)
	ao, err := virtualwebauthn.ParseAssertionOptions(string(ch.Webauthn))
	if err != nil {
		t.Fatal(err)
	}
	bare := virtualwebauthn.CreateAssertionResponse(rp, auth, auth.Credentials[0], *ao)
	if a := st.tfaStep2(t, "willa@pbs", tk, "webauthn:"+bare, nil); a.status != 401 {
		t.Errorf("an answer without the challenge member = %d %s; want 401", a.status, a.data)
	}

	var reasons []string
	for _, l := range st.failLines(t, "willa@pbs") {
		_, r, _ := strings.Cut(l, " msg=")
		reasons = append(reasons, r)
	}
	for i, want := range []string{
		"tfa change without the current password",                  // the registration without the password
		"no such webauthn challenge", "no such webauthn challenge", // replays: refused before any signature check
		"not owned by the user", "origin", "webauthn response has no challenge",
	} {
		if len(reasons) != 6 || !strings.Contains(reasons[i], want) {
			t.Errorf("auth log reasons for willa = %q; want 6, #%d with %q", reasons, i+1, want)
			break
		}
	}

	// The key still works after the refusals, in the HttpOnly flow too.
	tk, answer = login(nil, rp)
	a = st.tfaStep2(t, "willa@pbs", tk, answer, url.Values{"http-only": {"1"}})
	if a.status != 200 || !strings.HasPrefix(a.header.Get("Set-Cookie"), "__Host-PBSAuthCookie=PBS:willa@pbs:") {
		t.Errorf("http-only webauthn login = %d, Set-Cookie %q", a.status, a.header.Get("Set-Cookie"))
	}

	// Disabling the only factor: the login takes one call again.
	if a := st.do(t, call{method: "PUT", path: "/access/tfa/willa@pbs/" + added.ID, header: willa.header(true), form: url.Values{"enable": {"0"}, "password": {"willa-pass-1"}}}); a.status != 200 {
		t.Fatalf("disabling the webauthn entry = %d %s", a.status, a.message)
	}
	st.login(t, "willa@pbs", "willa-pass-1")
}

// without returns a copy of v without the keys drop.
func without(v url.Values, drop ...string) url.Values {
	out := url.Values{}
	for k, vs := range v {
		if !slices.Contains(drop, k) {
			out[k] = vs
		}
	}
	return out
}

// TestTFAChallengeTicket: a challenge ticket is bound to its user and expires after 10 minutes.
func TestTFAChallengeTicket(t *testing.T) {
	st := start(t, options{})
	s0 := totpStep()
	keys := map[string]otpKey{}
	tickets := map[string]string{}
	for _, user := range []string{"ann@pbs", "ben@pbs"} {
		pw := strings.TrimSuffix(user, "@pbs") + "-pass-1"
		st.addUser(t, user, pw)
		keys[user] = newOTPKey(t)
		st.enrolTOTP(t, st.login(t, user, pw), pw, keys[user], keys[user].code(t, s0))
		tickets[user], _ = st.tfaStep1(t, user, pw, nil)
	}
	annCode, benCode := keys["ann@pbs"].code(t, s0+1), keys["ben@pbs"].code(t, s0+1)

	// ann's challenge ticket with ben's name and ben's (valid, unused) code, or ann's.
	for _, code := range []string{benCode, annCode} {
		if a := st.tfaStep2(t, "ben@pbs", tickets["ann@pbs"], "totp:"+code, nil); a.status != 401 {
			t.Errorf("ann's challenge ticket as ben = %d %s; want 401", a.status, a.data)
		}
	}
	// A full ticket is no challenge ticket.
	annFull := st.fullSession(t, st.tfaStep2(t, "ann@pbs", tickets["ann@pbs"], "totp:"+annCode, nil), "ann@pbs")
	if a := st.tfaStep2(t, "ann@pbs", annFull.ticket, "totp:"+annCode, nil); a.status != 401 {
		t.Errorf("a full ticket as tfa-challenge = %d %s; want 401", a.status, a.data)
	}
	n := 0
	for _, l := range st.failLines(t, "ben@pbs") {
		if strings.HasSuffix(l, "msg=invalid tfa challenge ticket") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("auth log has %d 'invalid tfa challenge ticket' lines for ben; want 2", n)
	}
	// The refusals used nothing: ben's code still works with his own ticket.
	st.fullSession(t, st.tfaStep2(t, "ben@pbs", tickets["ben@pbs"], "totp:"+benCode, nil), "ben@pbs")

	// Challenge tickets signed with apid's key at chosen times: 11 minutes ago and 2 minutes
	// ahead are refused; now is accepted, so the refusals were for the time alone.
	st.addUser(t, "cyd@pbs", "cyd-pass-1")
	cydKey := newOTPKey(t)
	st.enrolTOTP(t, st.login(t, "cyd@pbs", "cyd-pass-1"), "cyd-pass-1", cydKey, cydKey.code(t, s0))
	cydTicket, _ := st.tfaStep1(t, "cyd@pbs", "cyd-pass-1", nil)
	cydCode := cydKey.code(t, s0+1)
	signer, err := ticket.LoadSigner(st.dirs.AuthKey())
	if err != nil {
		t.Fatal(err)
	}
	signed := func(at time.Time) string {
		t.Helper()
		tk, err := signer.SignTFA("PBS", "cyd@pbs", challengeOf(t, cydTicket).raw, at)
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	for _, tt := range []struct {
		name string
		at   time.Time
	}{{"expired", time.Now().Add(-11 * time.Minute)}, {"future", time.Now().Add(2 * time.Minute)}} {
		if a := st.tfaStep2(t, "cyd@pbs", signed(tt.at), "totp:"+cydCode, nil); a.status != 401 {
			t.Errorf("%s challenge ticket = %d %s; want 401", tt.name, a.status, a.data)
		}
	}
	if a := st.tfaStep2(t, "cyd@pbs", cydTicket, "sms:1", nil); a.status != 401 {
		t.Errorf("an unknown answer type = %d; want 401", a.status)
	}
	lines := st.failLines(t, "cyd@pbs")
	if len(lines) != 3 || !strings.HasSuffix(lines[0], "msg=invalid tfa challenge ticket") || !strings.HasSuffix(lines[1], "msg=invalid tfa challenge ticket") {
		t.Errorf("auth log for cyd = %q; want two invalid challenge tickets and a bad answer", lines)
	}
	st.fullSession(t, st.tfaStep2(t, "cyd@pbs", signed(time.Now().Add(-9*time.Minute)), "totp:"+cydCode, nil), "cyd@pbs")
}

// TestTFAPermissions: users manage their own factors with their password, root@pam everyone's;
// nobody else's, and API tokens none.
func TestTFAPermissions(t *testing.T) {
	st := start(t, options{})
	s0 := totpStep()
	st.addUser(t, "pia@pbs", "pia-pass-1")
	st.addUser(t, "quinn@pbs", "quinn-pass-1")
	pia, quinn := st.login(t, "pia@pbs", "pia-pass-1"), st.login(t, "quinn@pbs", "quinn-pass-1")
	k := newOTPKey(t)
	totp := func(target string, extra ...string) url.Values {
		v := url.Values{"type": {"totp"}, "description": {"phone"}, "totp": {k.uri(target)}, "value": {k.code(t, s0)}}
		for i := 0; i+1 < len(extra); i += 2 {
			v.Set(extra[i], extra[i+1])
		}
		return v
	}
	entries := func(user string) int {
		t.Helper()
		a := st.admin(t, call{method: "GET", path: "/access/tfa/" + user})
		var list []json.RawMessage
		a.decode(t, &list)
		return len(list)
	}

	// Without the password, or with a wrong one: 401, logged, nothing added, session kept.
	for _, tt := range []struct {
		name, password, reason string
	}{{"no password", "", "tfa change without the current password"}, {"wrong password", "wrong", "wrong password for tfa change"}} {
		f := totp("pia@pbs")
		if tt.password != "" {
			f.Set("password", tt.password)
		}
		for _, typ := range []string{"totp", "recovery"} {
			if typ == "recovery" {
				f = url.Values{"type": {"recovery"}, "password": f["password"]}
			}
			if a := st.do(t, call{method: "POST", path: "/access/tfa/pia@pbs", header: pia.header(true), form: f}); a.status != 401 {
				t.Errorf("%s: adding %s = %d %s; want 401", tt.name, typ, a.status, a.data)
			}
		}
		found := 0
		for _, l := range st.failLines(t, "pia@pbs") {
			if strings.HasSuffix(l, "msg="+tt.reason) {
				found++
			}
		}
		if found != 2 {
			t.Errorf("%s: auth log has %d lines %q for pia; want 2", tt.name, found, tt.reason)
		}
	}
	if n := entries("pia@pbs"); n != 0 {
		t.Errorf("pia has %d entries after refused additions; want 0", n)
	}
	if got := st.versionWith(t, pia.header(false)); got != 200 {
		t.Errorf("pia's session after refused additions = %d; want 200", got)
	}

	// A wrong code or a short secret is a bad request.
	if a := st.do(t, call{method: "POST", path: "/access/tfa/pia@pbs", header: pia.header(true), form: totp("pia@pbs", "password", "pia-pass-1", "value", k.wrongCodes(t, s0, 1)[0])}); a.status != 400 {
		t.Errorf("adding totp with a wrong code = %d %s; want 400", a.status, a.data)
	}
	short := url.Values{"type": {"totp"}, "description": {"x"}, "totp": {"otpauth://totp/x?secret=JBSWY3DP"}, "value": {"123456"}, "password": {"pia-pass-1"}}
	if a := st.do(t, call{method: "POST", path: "/access/tfa/pia@pbs", header: pia.header(true), form: short}); a.status != 400 {
		t.Errorf("adding totp with a 40-bit secret = %d %s; want 400", a.status, a.data)
	}

	id := st.enrolTOTP(t, pia, "pia-pass-1", k, k.code(t, s0))
	entry := "/access/tfa/pia@pbs/" + id

	// Another user, even with their own or pia's password: 403 on every call.
	for _, c := range []call{
		{method: "GET", path: "/access/tfa/pia@pbs"},
		{method: "GET", path: entry},
		{method: "POST", path: "/access/tfa/pia@pbs", form: totp("pia@pbs", "password", "quinn-pass-1")},
		{method: "POST", path: "/access/tfa/pia@pbs", form: url.Values{"type": {"recovery"}, "password": {"pia-pass-1"}}},
		{method: "PUT", path: entry, form: url.Values{"enable": {"0"}, "password": {"quinn-pass-1"}}},
		{method: "DELETE", path: entry + "?password=quinn-pass-1"},
		{method: "PUT", path: "/access/users/pia@pbs/unlock-tfa"},
	} {
		c.header = quinn.header(true)
		if a := st.do(t, c); a.status != 403 {
			t.Errorf("quinn: %s %s = %d %s; want 403", c.method, c.path, a.status, a.data)
		}
	}
	a := st.do(t, call{method: "GET", path: "/access/tfa", header: quinn.header(false)})
	if a.status != 200 || strings.Contains(string(a.data), "pia@pbs") {
		t.Errorf("quinn's GET /access/tfa = %d %s; want 200 without pia", a.status, a.data)
	}

	// pia's API token: 403, even for pia's own factors and with her password.
	a = st.do(t, call{method: "POST", path: "/access/users/pia@pbs/token/tfa", header: pia.header(true)})
	var tok struct{ Tokenid, Value string }
	a.decode(t, &tok)
	if a.status != 200 || tok.Value == "" {
		t.Fatalf("pia creating a token = %d %s %s %v", a.status, a.message, a.data, a.errors)
	}
	tokenHeader := http.Header{"Authorization": {"PBSAPIToken=" + tok.Tokenid + ":" + tok.Value}}
	for _, c := range []call{
		{method: "GET", path: "/access/tfa"},
		{method: "GET", path: "/access/tfa/pia@pbs"},
		{method: "GET", path: entry},
		{method: "POST", path: "/access/tfa/pia@pbs", form: url.Values{"type": {"recovery"}, "password": {"pia-pass-1"}}},
		{method: "PUT", path: entry, form: url.Values{"enable": {"0"}, "password": {"pia-pass-1"}}},
		{method: "DELETE", path: entry + "?password=pia-pass-1"},
		{method: "GET", path: "/config/access/tfa/webauthn"},
	} {
		c.header = tokenHeader
		if a := st.do(t, c); a.status != 403 {
			t.Errorf("pia's token: %s %s = %d %s; want 403", c.method, c.path, a.status, a.data)
		}
	}
	if n := entries("pia@pbs"); n != 1 {
		t.Errorf("pia has %d entries after the refused calls; want 1", n)
	}

	// pia herself: reads freely, changes with her password.
	if a := st.do(t, call{method: "GET", path: entry, header: pia.header(false)}); a.status != 200 || !strings.Contains(string(a.data), id) {
		t.Errorf("pia reading her entry = %d %s", a.status, a.data)
	}
	if a := st.do(t, call{method: "PUT", path: entry, header: pia.header(true), form: url.Values{"description": {"new"}}}); a.status != 401 {
		t.Errorf("pia renaming her entry without the password = %d; want 401", a.status)
	}
	if a := st.do(t, call{method: "PUT", path: entry, header: pia.header(true), form: url.Values{"description": {"new"}, "password": {"pia-pass-1"}}}); a.status != 200 {
		t.Errorf("pia renaming her entry = %d %s", a.status, a.message)
	}
	if a := st.do(t, call{method: "DELETE", path: entry, header: pia.header(true)}); a.status != 401 {
		t.Errorf("pia deleting her entry without the password = %d; want 401", a.status)
	}

	// root@pam needs no password, for anyone; an unknown user is 404.
	k2 := newOTPKey(t)
	a = st.admin(t, call{method: "POST", path: "/access/tfa/quinn@pbs", form: url.Values{"type": {"totp"}, "description": {"by root"}, "totp": {k2.uri("quinn@pbs")}, "value": {k2.code(t, s0)}}})
	if a.status != 200 {
		t.Errorf("root adding totp for quinn = %d %s %v", a.status, a.message, a.errors)
	}
	if a := st.admin(t, call{method: "POST", path: "/access/tfa/nobody@pbs", form: url.Values{"type": {"recovery"}}}); a.status != 404 {
		t.Errorf("root adding recovery codes for an unknown user = %d; want 404", a.status)
	}
	if l := st.tfaList(t); len(l) != 2 || len(l["pia@pbs"].Entries) != 1 || len(l["quinn@pbs"].Entries) != 1 {
		t.Errorf("root's GET /access/tfa = %+v; want pia and quinn with one entry each", l)
	}
	if a := st.admin(t, call{method: "DELETE", path: entry}); a.status != 200 {
		t.Errorf("root deleting pia's entry = %d %s", a.status, a.message)
	}
	st.login(t, "pia@pbs", "pia-pass-1") // no factor left: one call

	// Deleting a user drops their factors: a new user of that name has none.
	if a := st.admin(t, call{method: "DELETE", path: "/access/users/quinn@pbs"}); a.status != 200 {
		t.Fatalf("deleting quinn = %d %s", a.status, a.message)
	}
	st.addUser(t, "quinn@pbs", "quinn-pass-2")
	st.login(t, "quinn@pbs", "quinn-pass-2")
}
