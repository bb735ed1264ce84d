package authority

import (
	"net/http"
	"net/url"
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
}
