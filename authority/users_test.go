package authority

import (
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
)

// TestCreateUserRefusalKeepsPassword: creating a user that exists is refused and leaves its
// password alone; a value user.cfg cannot hold is a 400, and nothing is stored.
func TestCreateUserRefusalKeepsPassword(t *testing.T) {
	s, _ := newTestServer(t)
	if code, body := as(t, s, Superuser, "POST", "/access/users", url.Values{"userid": {"ann@pbs"}, "password": {"first-pass-1"}}); code != 200 {
		t.Fatalf("creating ann = %d %s", code, body)
	}
	code, body := as(t, s, Superuser, "POST", "/access/users", url.Values{"userid": {"ann@pbs"}, "password": {"second-pass-2"}})
	if code != http.StatusBadRequest || !strings.Contains(body, "already exists") {
		t.Errorf("creating ann again = %d %s; want 400 already exists", code, body)
	}
	if err := s.o.Realms.Check("ann@pbs", "first-pass-1"); err != nil {
		t.Errorf("ann's first password after the refused creation: %v", err)
	}
	if err := s.o.Realms.Check("ann@pbs", "second-pass-2"); err == nil {
		t.Error("the refused creation changed ann's password")
	}

	code, body = as(t, s, Superuser, "POST", "/access/users", url.Values{"userid": {"bob@pbs"}, "password": {"bob-pass-1"}, "comment": {"a\x01b"}})
	if code != http.StatusBadRequest {
		t.Errorf("creating bob with a control character in the comment = %d %s; want 400", code, body)
	}
	if err := s.o.Realms.Check("bob@pbs", "bob-pass-1"); err == nil {
		t.Error("a refused creation stored bob's password")
	}
	if code, _ := as(t, s, Superuser, "GET", "/access/users/bob@pbs", nil); code != http.StatusNotFound {
		t.Errorf("bob after the refused creation: %d; want 404", code)
	}
	code, body = as(t, s, Superuser, "PUT", "/access/users/ann@pbs", url.Values{"comment": {"x\x7fy"}})
	if code != http.StatusBadRequest {
		t.Errorf("updating ann with a control character = %d %s; want 400", code, body)
	}

	// A password PBS's schema refuses is the caller's mistake, not an internal error.
	code, body = as(t, s, Superuser, "POST", "/access/users", url.Values{"userid": {"cid@pbs"}, "password": {"bad\x00pass"}})
	if code != http.StatusBadRequest {
		t.Errorf("creating cid with a NUL in the password = %d %s; want 400", code, body)
	}
	code, body = as(t, s, Superuser, "PUT", "/access/password", url.Values{"userid": {"ann@pbs"}, "password": {"bad\x00pass"}})
	if code != http.StatusBadRequest {
		t.Errorf("setting ann's password with a NUL = %d %s; want 400", code, body)
	}
}

// TestDeleteUserWithoutPassword: a pbs user made without a password is deleted whole, second
// factors included.
func TestDeleteUserWithoutPassword(t *testing.T) {
	s, _ := newTestServer(t)
	if code, body := as(t, s, Superuser, "POST", "/access/users", url.Values{"userid": {"pat@pbs"}}); code != 200 {
		t.Fatalf("creating pat = %d %s", code, body)
	}
	if code, body := as(t, s, Superuser, "POST", "/access/tfa/pat@pbs", url.Values{"type": {"recovery"}}); code != 200 {
		t.Fatalf("recovery codes for pat = %d %s", code, body)
	}
	if code, body := as(t, s, Superuser, "DELETE", "/access/users/pat@pbs", nil); code != 200 {
		t.Fatalf("deleting pat = %d %s; want 200", code, body)
	}
	cfg, err := s.o.TFA.Config()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg.Users["pat@pbs"]; ok {
		t.Error("pat's second factors survived the deletion")
	}
}

// TestBrokenACL: an acl.cfg apid cannot parse takes the administrators' rights away but lets
// every user reach their own things (before, every call but root@pam's was a 500).
func TestBrokenACL(t *testing.T) {
	s, d := newTestServer(t)
	for _, f := range []url.Values{{"userid": {"ann@pbs"}, "password": {"ann-pass-1"}}, {"userid": {"boss@pbs"}}} {
		if code, body := as(t, s, Superuser, "POST", "/access/users", f); code != 200 {
			t.Fatalf("creating %s = %d %s", f.Get("userid"), code, body)
		}
	}
	if code, body := as(t, s, Superuser, "PUT", "/access/acl", url.Values{"path": {"/"}, "role": {"Admin"}, "auth-id": {"boss@pbs"}}); code != 200 {
		t.Fatalf("granting boss Admin = %d %s", code, body)
	}
	if err := os.WriteFile(d.AclCfg(), []byte("acl:1:/:boss@pbs\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	s.o.ACL.Forget()
	if code, body := as(t, s, "ann@pbs", "GET", "/access/users/ann@pbs", nil); code != 200 {
		t.Errorf("ann reading herself with a broken acl.cfg = %d %s; want 200", code, body)
	}
	if code, body := as(t, s, "ann@pbs", "DELETE", "/access/ticket", nil); code != 200 {
		t.Errorf("ann logging out with a broken acl.cfg = %d %s; want 200", code, body)
	}
	if code, body := as(t, s, "boss@pbs", "POST", "/access/users", url.Values{"userid": {"x@pbs"}}); code != http.StatusForbidden {
		t.Errorf("boss creating a user with a broken acl.cfg = %d %s; want 403", code, body)
	}
	if code, body := as(t, s, Superuser, "POST", "/access/users", url.Values{"userid": {"y@pbs"}}); code != 200 {
		t.Errorf("root@pam creating a user with a broken acl.cfg = %d %s; want 200", code, body)
	}
}

// TestDeleteTokenDropsStaleACL: deleting a token that user.cfg no longer lists still removes
// its ACL entries, so a token made later under that name is no administrator.
func TestDeleteTokenDropsStaleACL(t *testing.T) {
	s, d := newTestServer(t)
	if code, body := as(t, s, Superuser, "POST", "/access/users", url.Values{"userid": {"boss@pbs"}}); code != 200 {
		t.Fatalf("creating boss = %d %s", code, body)
	}
	if err := os.WriteFile(d.AclCfg(), []byte("acl:1:/:boss@pbs!ci:Admin\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	s.o.ACL.Forget()
	if code, body := as(t, s, Superuser, "DELETE", "/access/users/boss@pbs/token/ci", nil); code != http.StatusNotFound {
		t.Errorf("deleting the unlisted token = %d %s; want 404", code, body)
	}
	if code, body := as(t, s, Superuser, "POST", "/access/users/boss@pbs/token/ci", nil); code != 200 {
		t.Fatalf("creating boss@pbs!ci = %d %s", code, body)
	}
	if code, _ := as(t, s, "boss@pbs!ci", "GET", "/access/acl", nil); code != http.StatusForbidden {
		t.Errorf("the new boss@pbs!ci reads the ACL with %d; want 403 (no inherited Admin)", code)
	}
}

// TestTokenNameCannotNameAnotherUser: user names may hold "@" and "!", so a token name like
// "x@pbs!ci" under /access/users/eve@pbs/ would spell eve@pbs!x@pbs's token ci. It is refused.
func TestTokenNameCannotNameAnotherUser(t *testing.T) {
	s, _ := newTestServer(t)
	for _, u := range []string{"eve@pbs", "eve@pbs!x@pbs"} {
		if code, body := as(t, s, Superuser, "POST", "/access/users", url.Values{"userid": {u}}); code != 200 {
			t.Fatalf("creating %s = %d %s", u, code, body)
		}
	}
	if code, body := as(t, s, Superuser, "POST", "/access/users/eve@pbs!x@pbs/token/ci", nil); code != 200 {
		t.Fatalf("creating the other user's token = %d %s", code, body)
	}
	for _, method := range []string{"GET", "PUT", "DELETE", "POST"} {
		if code, body := as(t, s, "eve@pbs", method, "/access/users/eve@pbs/token/x@pbs!ci", nil); code != http.StatusBadRequest {
			t.Errorf("%s eve@pbs's token \"x@pbs!ci\" = %d %s; want 400", method, code, body)
		}
	}
	if code, body := as(t, s, Superuser, "GET", "/access/users/eve@pbs!x@pbs/token/ci", nil); code != 200 {
		t.Errorf("the other user's token after the attempts = %d %s", code, body)
	}
}
