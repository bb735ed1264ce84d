package e2e

import (
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gatehouse/realm"
	"gatehouse/shmem"
	"gatehouse/ticket"
)

func TestTicketFlows(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "alice@pbs", "alice-pass-1")
	st.addUser(t, "bob@pbs", "bob-pass-1")
	alice := st.login(t, "alice@pbs", "alice-pass-1")
	version := call{method: "GET", path: "/version"}

	t.Run("legacy cookie", func(t *testing.T) {
		c := version
		c.header = alice.header(false)
		if a := st.do(t, c); a.status != 200 || !strings.Contains(string(a.data), `"version"`) {
			t.Errorf("GET /version with the ticket = %d %s; want 200 with a version", a.status, a.data)
		}
		c.header = http.Header{"Cookie": {"PBSAuthCookie=" + url.QueryEscape(alice.ticket)}}
		if a := st.do(t, c); a.status != 200 {
			t.Errorf("GET /version with a percent-encoded ticket = %d; want 200", a.status)
		}
		if a := st.do(t, version); a.status != 401 {
			t.Errorf("GET /version without credentials = %d; want 401", a.status)
		}
	})

	t.Run("login bodies", func(t *testing.T) {
		for name, c := range map[string]call{
			"json":                {raw: `{"username":"alice@pbs","password":"alice-pass-1"}`},
			"form without type":   {raw: "username=alice%40pbs&password=alice-pass-1"},
			"realm given apart":   {form: url.Values{"username": {"alice"}, "realm": {"pbs"}, "password": {"alice-pass-1"}}},
			"ignored pbs options": {form: url.Values{"username": {"alice@pbs"}, "password": {"alice-pass-1"}, "path": {"/"}, "privs": {"Sys.Audit"}}},
		} {
			c.method, c.path = "POST", "/access/ticket"
			if a := st.do(t, c); a.status != 200 {
				t.Errorf("%s: login = %d %s; want 200", name, a.status, a.message)
			}
		}
	})

	t.Run("400 and 401", func(t *testing.T) {
		tests := []struct {
			name   string
			form   url.Values
			status int
			param  string
		}{
			{"unknown parameter", url.Values{"username": {"alice@pbs"}, "password": {"x"}, "foo": {"1"}}, 400, "foo"},
			{"missing password", url.Values{"username": {"alice@pbs"}}, 400, "password"},
			{"bad http-only", url.Values{"username": {"alice@pbs"}, "password": {"x"}, "http-only": {"maybe"}}, 400, "http-only"},
			{"wrong password", url.Values{"username": {"alice@pbs"}, "password": {"wrong"}}, 401, ""},
			{"unknown user", url.Values{"username": {"nobody@pbs"}, "password": {"x"}}, 401, ""},
			{"unknown realm", url.Values{"username": {"alice@ldap"}, "password": {"x"}}, 401, ""},
		}
		for _, tt := range tests {
			a := st.do(t, call{method: "POST", path: "/access/ticket", form: tt.form})
			if a.status != tt.status || (tt.param != "" && a.errors[tt.param] == "") {
				t.Errorf("%s: %d %s %v; want %d naming %q", tt.name, a.status, a.message, a.errors, tt.status, tt.param)
			}
			if tt.status == 401 && a.message != "authentication failure" {
				t.Errorf("%s: 401 message %q; want no detail", tt.name, a.message)
			}
		}
		lines := st.authLogLines(t)
		want := "authentication failure; rhost=[127.0.0.1]:"
		found := false
		for _, l := range lines {
			if strings.Contains(l, want) && strings.HasSuffix(l, "user=alice@pbs msg=invalid credentials") {
				found = true
			}
		}
		if !found {
			t.Errorf("auth log %q has no line for alice's wrong password", lines)
		}
	})

	t.Run("renewal", func(t *testing.T) {
		renewed := st.login(t, "alice@pbs", alice.ticket)
		if renewed.ticket == alice.ticket && renewed.ticket == "" {
			t.Fatal("renewal returned no ticket")
		}
		a := st.do(t, call{method: "POST", path: "/access/ticket", form: url.Values{"username": {"bob@pbs"}, "password": {alice.ticket}}})
		if a.status != 401 {
			t.Errorf("renewing alice's ticket as bob = %d; want 401", a.status)
		}
	})

	t.Run("http-only", func(t *testing.T) {
		a := st.do(t, call{method: "POST", path: "/access/ticket", form: url.Values{"username": {"bob@pbs"}, "password": {"bob-pass-1"}, "http-only": {"1"}}})
		if a.status != 200 {
			t.Fatalf("http-only login = %d", a.status)
		}
		var d map[string]string
		a.decode(t, &d)
		if _, has := d["ticket"]; has || !strings.HasPrefix(d["ticket-info"], "PBS:bob@pbs:") || strings.Contains(d["ticket-info"], "::x") {
			t.Errorf("http-only answer = %v; want ticket-info and no ticket", d)
		}
		sc := a.header.Get("Set-Cookie")
		for _, attr := range []string{"__Host-PBSAuthCookie=PBS:bob@pbs:", "Path=/", "Secure", "HttpOnly", "SameSite=Lax"} {
			if !strings.Contains(sc, attr) {
				t.Errorf("Set-Cookie %q lacks %q", sc, attr)
			}
		}
		cookie := strings.SplitN(sc, ";", 2)[0]
		c := version
		c.header = http.Header{"Cookie": {cookie}}
		if a := st.do(t, c); a.status != 200 {
			t.Errorf("GET /version with the HttpOnly cookie = %d; want 200", a.status)
		}
		// The HttpOnly cookie wins over a legacy one.
		c.header = http.Header{"Cookie": {cookie + "; PBSAuthCookie=garbage"}}
		if a := st.do(t, c); a.status != 200 {
			t.Errorf("GET /version with both cookies = %d; want 200", a.status)
		}
	})

	t.Run("csrf", func(t *testing.T) {
		bob := st.login(t, "bob@pbs", "bob-pass-1")
		put := func(h http.Header) int {
			return st.do(t, call{method: "PUT", path: "/access/users/alice@pbs", form: url.Values{"comment": {"hi"}}, header: h}).status
		}
		if got := put(alice.header(false)); got != 401 {
			t.Errorf("PUT without CSRF token = %d; want 401", got)
		}
		h := alice.header(false)
		h.Set("CSRFPreventionToken", bob.csrf)
		if got := put(h); got != 401 {
			t.Errorf("PUT with bob's CSRF token = %d; want 401", got)
		}
		h.Set("CSRFPreventionToken", alice.csrf[:len(alice.csrf)-2]+"AA")
		if got := put(h); got != 401 {
			t.Errorf("PUT with a forged CSRF token = %d; want 401", got)
		}
		if got := put(alice.header(true)); got != 200 {
			t.Errorf("PUT with the CSRF token = %d; want 200", got)
		}
	})

	t.Run("expired ticket", func(t *testing.T) {
		signer, err := ticket.LoadSigner(st.dirs.AuthKey())
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			age  time.Duration
			want int
		}{{ticket.FullLifetime - time.Minute, 200}, {ticket.FullLifetime + time.Minute, 401}, {-10 * time.Minute, 401}} {
			tk, err := signer.SignUser("PBS", "alice@pbs", time.Now().Add(-tt.age))
			if err != nil {
				t.Fatal(err)
			}
			c := version
			c.header = http.Header{"Cookie": {"PBSAuthCookie=" + tk}}
			if a := st.do(t, c); a.status != tt.want {
				t.Errorf("ticket stamped %v ago = %d; want %d", tt.age, a.status, tt.want)
			}
		}
	})
}

func TestLogoutAndPasswordChangeRevoke(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "carol@pbs", "carol-pass-1")
	a1, a2 := st.login(t, "carol@pbs", "carol-pass-1"), st.login(t, "carol@pbs", "carol-pass-1")
	status := func(s session) int {
		return st.do(t, call{method: "GET", path: "/version", header: s.header(false)}).status
	}

	// Without the current password (confirmation-password, as PBS) nothing changes.
	for _, confirm := range []string{"", "wrong-pass-1"} {
		form := url.Values{"userid": {"carol@pbs"}, "password": {"carol-pass-2"}}
		if confirm != "" {
			form.Set("confirmation-password", confirm)
		}
		if a := st.do(t, call{method: "PUT", path: "/access/password", form: form, header: a1.header(true)}); a.status != 401 {
			t.Fatalf("password change with confirmation %q = %d; want 401", confirm, a.status)
		}
	}
	if status(a1) != 200 || status(a2) != 200 {
		t.Fatal("a refused password change ended a session")
	}
	// Password change: the session that made it gets a new ticket; the other one is revoked.
	a := st.do(t, call{method: "PUT", path: "/access/password", form: url.Values{"userid": {"carol@pbs"}, "password": {"carol-pass-2"}, "confirmation-password": {"carol-pass-1"}}, header: a1.header(true)})
	if a.status != 200 {
		t.Fatalf("password change = %d %s", a.status, a.message)
	}
	sc := a.header.Get("Set-Cookie")
	newTicket, ok := strings.CutPrefix(strings.SplitN(sc, ";", 2)[0], "PBSAuthCookie=")
	if !ok || newTicket == "" {
		t.Fatalf("password change Set-Cookie = %q; want a new PBSAuthCookie", sc)
	}
	if got := status(a2); got != 401 {
		t.Errorf("other session after the password change = %d; want 401", got)
	}
	if got := status(a1); got != 401 {
		t.Errorf("changing session's old ticket = %d; want 401", got)
	}
	a1.ticket = newTicket
	if got := status(a1); got != 200 {
		t.Errorf("changing session's new ticket = %d; want 200", got)
	}
	if a := st.do(t, call{method: "POST", path: "/access/ticket", form: url.Values{"username": {"carol@pbs"}, "password": {"carol-pass-1"}}}); a.status != 401 {
		t.Errorf("login with the old password = %d; want 401", a.status)
	}
	fresh := st.login(t, "carol@pbs", "carol-pass-2")

	// Logout clears the cookies and revokes every older ticket.
	a = st.do(t, call{method: "DELETE", path: "/access/ticket", header: fresh.header(true)})
	if a.status != 200 {
		t.Fatalf("logout = %d %s", a.status, a.message)
	}
	cleared := strings.Join(a.header.Values("Set-Cookie"), "\n")
	for _, want := range []string{"__Host-PBSAuthCookie=; Path=/; Max-Age=0", "PBSAuthCookie=; Path=/; Max-Age=0"} {
		if !strings.Contains(cleared, want) {
			t.Errorf("logout Set-Cookie %q lacks %q", cleared, want)
		}
	}
	for name, s := range map[string]session{"logged-out": fresh, "other": a1} {
		if got := status(s); got != 401 {
			t.Errorf("%s session after logout = %d; want 401", name, got)
		}
	}
	renew := st.do(t, call{method: "POST", path: "/access/ticket", form: url.Values{"username": {"carol@pbs"}, "password": {fresh.ticket}}})
	if renew.status != 401 {
		t.Errorf("renewing a revoked ticket = %d; want 401", renew.status)
	}
	if got := status(st.login(t, "carol@pbs", "carol-pass-2")); got != 200 {
		t.Errorf("a login after logout = %d; want 200", got)
	}
}

func TestTokens(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "dave@pbs", "dave-pass-1")
	dave := st.login(t, "dave@pbs", "dave-pass-1")
	a := st.do(t, call{method: "POST", path: "/access/users/dave@pbs/token/ci", form: url.Values{"comment": {"CI"}}, header: dave.header(true)})
	if a.status != 200 {
		t.Fatalf("creating a token = %d %s", a.status, a.message)
	}
	var created struct{ Tokenid, Value string }
	a.decode(t, &created)
	if created.Tokenid != "dave@pbs!ci" || len(created.Value) != 36 {
		t.Fatalf("token answer = %s; want tokenid dave@pbs!ci and a UUID", a.data)
	}
	with := func(header string) int {
		return st.do(t, call{method: "GET", path: "/version", header: http.Header{"Authorization": {header}}}).status
	}
	for _, h := range []string{"PBSAPIToken=dave@pbs!ci:" + created.Value, "PBSAPIToken dave@pbs!ci:" + created.Value} {
		if got := with(h); got != 200 {
			t.Errorf("GET /version with %q = %d; want 200", h[:16], got)
		}
	}
	tokenHeader := http.Header{"Authorization": {"PBSAPIToken=dave@pbs!ci:" + created.Value}}
	for _, tt := range []struct {
		name string
		c    call
		want int
	}{
		{"mutation needs no CSRF token", call{method: "PUT", path: "/access/users/dave@pbs", form: url.Values{"comment": {"via token"}}}, 200},
		{"token cannot make tokens", call{method: "POST", path: "/access/users/dave@pbs/token/more"}, 403},
		{"token cannot change the password", call{method: "PUT", path: "/access/password", form: url.Values{"userid": {"dave@pbs"}, "password": {"x-pass-12"}}}, 403},
		{"another user's entry", call{method: "GET", path: "/access/users/root@pam"}, 403},
	} {
		tt.c.header = tokenHeader
		if a := st.do(t, tt.c); a.status != tt.want {
			t.Errorf("%s: %d %s; want %d", tt.name, a.status, a.message, tt.want)
		}
	}

	// Rotation through the API: the old secret stops at once, in proxyd, the other process.
	a = st.do(t, call{method: "PUT", path: "/access/users/dave@pbs/token/ci", form: url.Values{"regenerate": {"1"}}, header: dave.header(true)})
	var rotated struct{ Secret string }
	a.decode(t, &rotated)
	if a.status != 200 || len(rotated.Secret) != 36 {
		t.Fatalf("regenerate = %d %s", a.status, a.data)
	}
	if got := with("PBSAPIToken=dave@pbs!ci:" + created.Value); got != 401 {
		t.Errorf("old secret after rotation = %d; want 401", got)
	}
	if got := with("PBSAPIToken=dave@pbs!ci:" + rotated.Secret); got != 200 {
		t.Errorf("new secret after rotation = %d; want 200", got)
	}

	toggle := func(enable string) {
		if a := st.do(t, call{method: "PUT", path: "/access/users/dave@pbs/token/ci", form: url.Values{"enable": {enable}}, header: dave.header(true)}); a.status != 200 {
			t.Fatalf("enable=%s = %d %s", enable, a.status, a.message)
		}
	}
	toggle("0")
	if got := with("PBSAPIToken=dave@pbs!ci:" + rotated.Secret); got != 401 {
		t.Errorf("disabled token = %d; want 401", got)
	}
	toggle("1")
	if got := with("PBSAPIToken=dave@pbs!ci:" + rotated.Secret); got != 200 {
		t.Errorf("re-enabled token = %d; want 200", got)
	}
	if a := st.do(t, call{method: "DELETE", path: "/access/users/dave@pbs/token/ci", header: dave.header(true)}); a.status != 200 {
		t.Fatalf("deleting the token = %d %s", a.status, a.message)
	}
	if got := with("PBSAPIToken=dave@pbs!ci:" + rotated.Secret); got != 401 {
		t.Errorf("deleted token = %d; want 401", got)
	}
	if got := with("PBSAPIToken=dave@pbs!ci"); got != 401 {
		t.Errorf("malformed token header = %d; want 401", got)
	}
}

// TestDisabledUser: a disabled or expired user is refused everywhere at once; disabling (or
// expiry) ends the user's sessions for good: after re-enabling, the user's tokens and password
// work again, but no ticket from before does (before, the old sessions came back).
func TestDisabledUser(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "erin@pbs", "erin-pass-1")
	erin := st.login(t, "erin@pbs", "erin-pass-1")
	tokenHeader := st.newToken(t, erin, "t1")
	check := func(what string, s session, ticket, others int) {
		t.Helper()
		if got := st.do(t, call{method: "GET", path: "/version", header: s.header(false)}).status; got != ticket {
			t.Errorf("%s: ticket = %d; want %d", what, got, ticket)
		}
		if got := st.do(t, call{method: "POST", path: "/access/ticket", form: url.Values{"username": {"erin@pbs"}, "password": {s.ticket}}}).status; got != ticket {
			t.Errorf("%s: renewing the ticket = %d; want %d", what, got, ticket)
		}
		if got := st.do(t, call{method: "GET", path: "/version", header: tokenHeader}).status; got != others {
			t.Errorf("%s: token = %d; want %d", what, got, others)
		}
		if got := st.do(t, call{method: "POST", path: "/access/ticket", form: url.Values{"username": {"erin@pbs"}, "password": {"erin-pass-1"}}}).status; got != others {
			t.Errorf("%s: login = %d; want %d", what, got, others)
		}
	}
	check("enabled", erin, 200, 200)
	if a := st.admin(t, call{method: "PUT", path: "/access/users/erin@pbs", form: url.Values{"enable": {"0"}}}); a.status != 200 {
		t.Fatalf("disabling = %d %s", a.status, a.message)
	}
	check("disabled", erin, 401, 401)
	past := time.Now().Add(-time.Minute).Unix()
	st.admin(t, call{method: "PUT", path: "/access/users/erin@pbs", form: url.Values{"enable": {"1"}, "expire": {strconv.FormatInt(past, 10)}}})
	check("expired", erin, 401, 401)
	st.admin(t, call{method: "PUT", path: "/access/users/erin@pbs", form: url.Values{"expire": {"0"}}})
	check("enabled again, old session", erin, 401, 200)
	erin = st.login(t, "erin@pbs", "erin-pass-1")
	check("enabled again, new session", erin, 200, 200)
	// A change that leaves an active user active (a comment) ends nothing.
	st.admin(t, call{method: "PUT", path: "/access/users/erin@pbs", form: url.Values{"comment": {"still here"}}})
	check("comment changed", erin, 200, 200)
	// Only root@pam enables users.
	if a := st.do(t, call{method: "PUT", path: "/access/users/erin@pbs", form: url.Values{"enable": {"0"}}, header: erin.header(true)}); a.status != 403 {
		t.Errorf("erin disabling herself = %d; want 403", a.status)
	}
}

func TestRateLimit(t *testing.T) {
	st := start(t, options{burst: 3})
	st.addUser(t, "frank@pbs", "frank-pass-1")
	from := func(ip, password string) int {
		return st.do(t, call{method: "POST", path: "/access/ticket", form: url.Values{"username": {"frank@pbs"}, "password": {password}},
			header: http.Header{"X-Forwarded-For": {ip}}}).status
	}
	for i := range 3 {
		if got := from("203.0.113.9", "wrong"); got != 401 {
			t.Fatalf("failure %d = %d; want 401", i+1, got)
		}
	}
	if got := from("203.0.113.9", "wrong"); got != 429 {
		t.Errorf("4th failure = %d; want 429", got)
	}
	if got := from("203.0.113.9", "frank-pass-1"); got != 429 {
		t.Errorf("right password from the blocked client = %d; want 429 (credentials not checked)", got)
	}
	if got := from("203.0.113.10", "frank-pass-1"); got != 200 {
		t.Errorf("right password from another client = %d; want 200", got)
	}
	tokenFail := st.do(t, call{method: "GET", path: "/version", header: http.Header{
		"X-Forwarded-For": {"203.0.113.9"}, "Authorization": {"PBSAPIToken=frank@pbs!x:nope"}}})
	if tokenFail.status != 429 || tokenFail.header.Get("Retry-After") == "" {
		t.Errorf("token attempt from the blocked client = %d (Retry-After %q); want 429 with Retry-After", tokenFail.status, tokenFail.header.Get("Retry-After"))
	}
	var n int
	for _, l := range st.authLogLines(t) {
		if strings.Contains(l, "rhost=[203.0.113.9]:0 user=frank@pbs msg=invalid credentials") {
			n++
		}
	}
	if n != 3 {
		t.Errorf("auth log has %d lines for 203.0.113.9; want 3", n)
	}
}

// TestPrivilegeSeparation runs, as proxyd's uid, an attempt to open each config file.
func TestPrivilegeSeparation(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "gina@pbs", "gina-pass-1")
	if !st.split {
		t.Skip("needs root: proxyd runs as apid's uid otherwise")
	}
	files := map[string]string{
		st.dirs.AuthKey(): "permission denied", st.dirs.Shadow(): "permission denied",
		st.dirs.AuthPub(): "ok", st.dirs.CSRFKey(): "ok", st.dirs.UserCfg(): "ok", st.dirs.ProxyKey(): "ok",
	}
	var args []string
	for f := range files {
		args = append(args, f)
	}
	js := `["` + strings.Join(args, `","`) + `"]`
	cmd := exec.Command(st.bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=read", argsEnv+"="+js)
	cmd.SysProcAttr = nobodyAttr()
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, result, _ := strings.Cut(line, " ")
		got[path] = result
	}
	for f, want := range files {
		if got[f] != want {
			t.Errorf("opening %s as proxyd's uid: %q; want %q", f, got[f], want)
		}
	}
}

// TestPAMLogin logs in through proxyd as a real system account created for the test.
func TestPAMLogin(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to create a system account and a PAM service file")
	}
	for _, tool := range []string{"useradd", "chpasswd", "userdel"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	suffix := strconv.FormatInt(time.Now().UnixNano()%1_000_000_000, 36)
	name, service, password := "ghe2e"+suffix, "gatehouse-e2e-"+suffix, "pam-Pass-"+suffix
	if out, err := exec.Command("useradd", "-M", "-N", "-s", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	chpasswd := exec.Command("chpasswd")
	chpasswd.Stdin = strings.NewReader(name + ":" + password + "\n")
	if out, err := chpasswd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v: %s", err, out)
	}
	pamFile := "/etc/pam.d/" + service
	if err := os.WriteFile(pamFile, []byte(realm.PAMServiceFile), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(pamFile) })

	st := start(t, options{pamService: service})
	user := name + "@pam"
	login := func(pw string) int {
		return st.do(t, call{method: "POST", path: "/access/ticket", form: url.Values{"username": {user}, "password": {pw}}}).status
	}
	if got := login(password); got != 401 {
		t.Errorf("login before the account is in user.cfg = %d; want 401", got)
	}
	if a := st.admin(t, call{method: "POST", path: "/access/users", form: url.Values{"userid": {user}}}); a.status != 200 {
		t.Fatalf("adding %s = %d %s", user, a.status, a.message)
	}
	s := st.login(t, user, password)
	if got := st.do(t, call{method: "GET", path: "/version", header: s.header(false)}).status; got != 200 {
		t.Errorf("GET /version as %s = %d; want 200", user, got)
	}
	if got := login(password + "x"); got != 401 {
		t.Errorf("wrong PAM password = %d; want 401", got)
	}
}

// TestKeyReload replaces authkey.pub and csrf.key and bumps the keys generation, as a key
// rotation would: proxyd must drop tickets of the old key at once and accept the new key's.
func TestKeyReload(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "kim@pbs", "kim-pass-1")
	old := st.login(t, "kim@pbs", "kim-pass-1")
	get := func(tk string) int {
		return st.do(t, call{method: "GET", path: "/version", header: http.Header{"Cookie": {"PBSAuthCookie=" + tk}}}).status
	}
	if got := get(old.ticket); got != 200 {
		t.Fatalf("old ticket before the rotation = %d; want 200", got)
	}
	dir := t.TempDir()
	newKey, newPub, newCSRF := filepath.Join(dir, "k"), filepath.Join(dir, "p"), filepath.Join(dir, "c")
	if err := ticket.GenerateKeys(newKey, newPub, -1); err != nil {
		t.Fatal(err)
	}
	if err := ticket.GenerateCSRFKey(newCSRF, -1); err != nil {
		t.Fatal(err)
	}
	for from, to := range map[string]string{newPub: st.dirs.AuthPub(), newCSRF: st.dirs.CSRFKey()} {
		if st.split {
			if err := os.Chown(from, 0, nobody); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Rename(from, to); err != nil {
			t.Fatal(err)
		}
	}
	gen, err := shmem.Dial(st.dirs.ShmemSocket())
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	gen.Bump(shmem.Keys)

	if got := get(old.ticket); got != 401 {
		t.Errorf("old key's ticket after the rotation = %d; want 401", got)
	}
	signer, err := ticket.LoadSigner(newKey)
	if err != nil {
		t.Fatal(err)
	}
	tk, err := signer.SignUser("PBS", "kim@pbs", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got := get(tk); got != 200 {
		t.Errorf("new key's ticket after the rotation = %d; want 200", got)
	}
}
