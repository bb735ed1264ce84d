package e2e

import (
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
)

// TestACLAdministrator: a user given Admin on "/" creates users through proxyd; taking it away
// ends that at the next request; the user's token is no administrator, unless it holds Admin
// itself. acl.cfg is written 0640, as user.cfg.
func TestACLAdministrator(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "boss@pbs", "boss-pass-1")
	boss := st.login(t, "boss@pbs", "boss-pass-1")
	a := st.admin(t, call{method: "POST", path: "/access/users/boss@pbs/token/ci"})
	if a.status != 200 {
		t.Fatalf("creating token = %d %s", a.status, a.message)
	}
	var tok struct{ Value string }
	a.decode(t, &tok)
	asToken := http.Header{"Authorization": {"PBSAPIToken=boss@pbs!ci:" + tok.Value}}

	createUser := func(h http.Header, id string) int {
		t.Helper()
		return st.do(t, call{method: "POST", path: "/access/users", form: url.Values{"userid": {id}, "password": {"pass-" + id}}, header: h}).status
	}
	grant := func(id string, del bool) {
		t.Helper()
		f := url.Values{"path": {"/"}, "role": {"Admin"}, "auth-id": {id}}
		if del {
			f.Set("delete", "1")
		}
		if a := st.admin(t, call{method: "PUT", path: "/access/acl", form: f}); a.status != 200 {
			t.Fatalf("PUT /access/acl %s = %d %s %v", f.Encode(), a.status, a.message, a.errors)
		}
	}

	if got := createUser(boss.header(true), "u1@pbs"); got != 403 {
		t.Fatalf("before the grant: create user = %d; want 403", got)
	}
	grant("boss@pbs", false)
	if got := createUser(boss.header(true), "u1@pbs"); got != 200 {
		t.Fatalf("with Admin on /: create user = %d; want 200", got)
	}
	st.login(t, "u1@pbs", "pass-u1@pbs")
	list := st.do(t, call{method: "GET", path: "/access/acl", header: boss.header(false)})
	if list.status != 200 || !strings.Contains(string(list.data), `"ugid":"boss@pbs"`) || !strings.Contains(string(list.data), `"ugid_type":"user"`) {
		t.Errorf("GET /access/acl through proxyd = %d %s", list.status, list.data)
	}
	if got := createUser(asToken, "u2@pbs"); got != 403 {
		t.Errorf("the administrator's token: create user = %d; want 403 (its user's Admin does not pass to it)", got)
	}
	grant("boss@pbs", true)
	if got := createUser(boss.header(true), "u3@pbs"); got != 403 {
		t.Errorf("after the removal: create user = %d; want 403 at once", got)
	}
	grant("boss@pbs!ci", false)
	// With its own Admin the token manages users, but sets no password: it cannot make itself
	// a login.
	if got := createUser(asToken, "u4@pbs"); got != 403 {
		t.Errorf("token with its own Admin: create user with a password = %d; want 403", got)
	}
	if got := st.do(t, call{method: "POST", path: "/access/users", form: url.Values{"userid": {"u5@pbs"}}, header: asToken}).status; got != 200 {
		t.Errorf("token with its own Admin: create user without a password = %d; want 200", got)
	}

	if fi, err := os.Stat(st.dirs.AclCfg()); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("acl.cfg: %v; want mode 0640", err)
	}
}
