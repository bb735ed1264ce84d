package authority

import (
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gatehouse/layout"
	"gatehouse/lockfile"
	"gatehouse/realm"
)

// newTestServer sets up apid's stores in a temp dir, as a first start does.
func newTestServer(t *testing.T) (*Server, layout.Dirs) {
	t.Helper()
	base := t.TempDir()
	d := layout.Dirs{Config: filepath.Join(base, "etc"), Run: filepath.Join(base, "run")}
	s, gen, err := setUp(d, -1, "PBS", realm.DefaultPAMService, lockfile.DefaultTimeout, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gen.Close() })
	return s, d
}

// as calls s as caller, with a form body and the caller's own credential (withCredential).
func as(t *testing.T, s *Server, caller, method, path string, form url.Values) (int, string) {
	t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	r := httptest.NewRequest(method, "http://apid/api2/json"+path, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	withCredential(t, s, r, caller)
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

func TestAdministrators(t *testing.T) {
	s, d := newTestServer(t)
	must := func(caller, method, path string, form url.Values, want int) string {
		t.Helper()
		code, body := as(t, s, caller, method, path, form)
		if code != want {
			t.Fatalf("%s %s %s as %s = %d %s; want %d", method, path, form.Encode(), caller, code, body, want)
		}
		return body
	}
	const root = "root@pam"
	must(root, "POST", "/access/users", url.Values{"userid": {"boss@pbs"}, "password": {"boss-pass-1"}}, 200)
	must(root, "POST", "/access/users/boss@pbs/token/ci", nil, 200)
	must("boss@pbs", "POST", "/access/users", url.Values{"userid": {"x@pbs"}}, 403)
	must("boss@pbs", "GET", "/access/acl", nil, 403)
	must("boss@pbs", "PUT", "/access/acl", url.Values{"path": {"/"}, "role": {"Admin"}, "auth-id": {"boss@pbs"}}, 403)

	// Bad requests, as PBS refuses them.
	for _, f := range []url.Values{
		{"path": {"/"}, "role": {"Boss"}, "auth-id": {"boss@pbs"}},
		{"path": {"nope"}, "role": {"Admin"}, "auth-id": {"boss@pbs"}},
		{"path": {"/"}, "role": {"Admin"}},
		{"path": {"/"}, "role": {"Admin"}, "group": {"ops"}},
		{"path": {"/"}, "role": {"Admin"}, "auth-id": {"ghost@pbs"}},
		{"path": {"/"}, "role": {"Admin"}, "auth-id": {"boss@pbs!nope"}},
		{"path": {"/"}, "role": {"Admin"}, "auth-id": {"boss@pbs"}, "propagate": {"maybe"}},
	} {
		must(root, "PUT", "/access/acl", f, 400)
	}
	if _, err := os.Stat(d.AclCfg()); err == nil {
		t.Error("acl.cfg written by refused requests")
	}

	must(root, "PUT", "/access/acl", url.Values{"path": {"/"}, "role": {"Admin"}, "auth-id": {"boss@pbs"}}, 200)
	got, _ := os.ReadFile(d.AclCfg())
	if string(got) != "acl:1:/:boss@pbs:Admin\n" {
		t.Errorf("acl.cfg = %q", got)
	}
	fi, _ := os.Stat(d.AclCfg())
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("acl.cfg mode %04o; want 0640", fi.Mode().Perm())
	}
	// boss is an administrator now: users, others' tokens, TFA unlock, the ACL.
	must("boss@pbs", "POST", "/access/users", url.Values{"userid": {"carol@pbs"}, "password": {"carol-pass-1"}}, 200)
	must("boss@pbs", "PUT", "/access/users/carol@pbs", url.Values{"enable": {"0"}}, 200)
	must("boss@pbs", "PUT", "/access/password", url.Values{"userid": {"carol@pbs"}, "password": {"carol-pass-2"}}, 401) // no confirmation
	must("boss@pbs", "PUT", "/access/password", url.Values{"userid": {"carol@pbs"}, "password": {"carol-pass-2"}, "confirmation-password": {"carol-pass-1"}}, 401)
	must("boss@pbs", "PUT", "/access/password", url.Values{"userid": {"carol@pbs"}, "password": {"carol-pass-2"}, "confirmation-password": {"boss-pass-1"}}, 200)
	must("boss@pbs", "PUT", "/access/users/carol@pbs/unlock-tfa", nil, 200)
	must("boss@pbs", "PUT", "/access/acl", url.Values{"path": {"/datastore/s1"}, "role": {"DatastoreReader"}, "auth-id": {"carol@pbs"}, "propagate": {"0"}}, 200)
	var list struct {
		Data []aclJSON `json:"data"`
	}
	if err := json.Unmarshal([]byte(must("boss@pbs", "GET", "/access/acl", nil, 200)), &list); err != nil {
		t.Fatal(err)
	}
	want := []aclJSON{
		{Path: "/", UGID: "boss@pbs", UGIDType: "user", RoleID: "Admin", Propagate: true},
		{Path: "/datastore/s1", UGID: "carol@pbs", UGIDType: "user", RoleID: "DatastoreReader"},
	}
	if len(list.Data) != 2 || list.Data[0] != want[0] || list.Data[1] != want[1] {
		t.Errorf("GET /access/acl = %+v; want %+v", list.Data, want)
	}
	if err := json.Unmarshal([]byte(must(root, "GET", "/access/acl?path=/datastore&exact=1", nil, 200)), &list); err != nil || len(list.Data) != 0 {
		t.Errorf("GET /access/acl exact /datastore = %+v, %v; want none", list.Data, err)
	}
	if err := json.Unmarshal([]byte(must(root, "GET", "/access/acl?path=/datastore", nil, 200)), &list); err != nil || len(list.Data) != 1 {
		t.Errorf("GET /access/acl under /datastore = %+v, %v; want carol's", list.Data, err)
	}

	// The token of an administrator is not one; given its own Admin, it is, but still changes
	// no password and manages no token.
	must("boss@pbs!ci", "POST", "/access/users", url.Values{"userid": {"dan@pbs"}}, 403)
	must("boss@pbs!ci", "GET", "/access/acl", nil, 403)
	must(root, "PUT", "/access/acl", url.Values{"path": {"/"}, "role": {"Admin"}, "auth-id": {"boss@pbs!ci"}}, 200)
	must("boss@pbs!ci", "POST", "/access/users", url.Values{"userid": {"dan@pbs"}}, 200)
	must("boss@pbs!ci", "PUT", "/access/password", url.Values{"userid": {"carol@pbs"}, "password": {"x-pass-123"}}, 403)
	must("boss@pbs!ci", "POST", "/access/users/carol@pbs/token/t1", nil, 403)
	// Nor can it make itself a login: no password for a new user, no roles, no second factors.
	must("boss@pbs!ci", "POST", "/access/users", url.Values{"userid": {"mallory@pbs"}, "password": {"mallory-pass-1"}}, 403)
	must("boss@pbs!ci", "PUT", "/access/acl", url.Values{"path": {"/"}, "role": {"Admin"}, "auth-id": {"dan@pbs"}}, 403)
	must("boss@pbs!ci", "PUT", "/access/users/carol@pbs/unlock-tfa", nil, 403)
	must("boss@pbs!ci", "PUT", "/config/access/tfa/webauthn", url.Values{"rp": {"evil"}, "origin": {"https://evil.example"}, "id": {"evil.example"}}, 403)
	// Propagate 0 or another path does not make an administrator.
	must(root, "PUT", "/access/acl", url.Values{"path": {"/"}, "role": {"Admin"}, "auth-id": {"dan@pbs"}, "propagate": {"0"}}, 200)
	must("dan@pbs", "GET", "/access/acl", nil, 403)

	// Deleting the token removes its entry: a new token of that name is no administrator.
	must(root, "DELETE", "/access/users/boss@pbs/token/ci", nil, 200)
	must(root, "POST", "/access/users/boss@pbs/token/ci", nil, 200)
	must("boss@pbs!ci", "GET", "/access/acl", nil, 403)

	// Taking Admin away works at the next request.
	must(root, "PUT", "/access/acl", url.Values{"path": {"/"}, "role": {"Admin"}, "auth-id": {"boss@pbs"}, "delete": {"1"}}, 200)
	must("boss@pbs", "POST", "/access/users", url.Values{"userid": {"erin@pbs"}}, 403)

	// Deleting a user removes their entries (and their tokens').
	must(root, "PUT", "/access/acl", url.Values{"path": {"/"}, "role": {"Admin"}, "auth-id": {"boss@pbs"}}, 200)
	must(root, "PUT", "/access/acl", url.Values{"path": {"/"}, "role": {"Audit"}, "auth-id": {"boss@pbs!ci"}}, 200)
	must(root, "DELETE", "/access/users/boss@pbs", nil, 200)
	got, _ = os.ReadFile(d.AclCfg())
	if strings.Contains(string(got), "boss@pbs") {
		t.Errorf("acl.cfg after deleting boss@pbs: %q", got)
	}
	must(root, "POST", "/access/users", url.Values{"userid": {"boss@pbs"}}, 200)
	must("boss@pbs", "GET", "/access/acl", nil, 403)
}
