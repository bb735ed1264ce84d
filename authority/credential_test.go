package authority

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"gatehouse/authid"
	"gatehouse/credential"
	"gatehouse/forward"
	"gatehouse/shmem"
)

// withCredential gives r caller's own credential, as proxyd forwards a client's call: for a
// user, a ticket cookie signed by apid's key (and the CSRF token); for a token, its secret,
// "secret-of-<id>", written to token.shadow first unless it is there (the tests name tokens
// they created).
// The client address is set as proxyd sets it. apid then verifies it like any other.
func withCredential(t testing.TB, s *Server, r *http.Request, caller string) {
	t.Helper()
	r.Header.Set(forward.Rhost, "192.0.2.1:40000")
	if caller == "" {
		return
	}
	a, err := authid.Parse(caller)
	if err != nil {
		t.Fatalf("caller %q: %v", caller, err)
	}
	if a.IsToken() {
		secret := "secret-of-" + caller
		if s.o.Tokens.Verify(caller, secret) != nil {
			if err := s.o.Tokens.Set(caller, secret); err != nil {
				t.Fatal(err)
			}
		}
		r.Header.Set("Authorization", "PBSAPIToken="+caller+":"+secret)
		return
	}
	now := s.o.Now()
	tk, err := s.newTicket(caller, now)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Cookie", "PBSAuthCookie="+credential.Encode(tk))
	r.Header.Set("CSRFPreventionToken", s.csrfToken(caller, now))
}

// call sends s one request with the given headers and answers its status and body.
func call(s *Server, method, path string, h http.Header) (int, string) {
	r := httptest.NewRequest(method, "http://apid/api2/json"+path, strings.NewReader(""))
	for k, v := range h {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

// TestNoIdentityWithoutCredential: apid believes no identity proxyd (or anyone on its socket)
// names; only a credential it verifies itself makes a caller. Before, X-Gatehouse-Authid:
// root@pam with a client address was root@pam, so uid 65534 could rotate the signing key.
func TestNoIdentityWithoutCredential(t *testing.T) {
	s, _ := newTestServer(t)
	if code, body := as(t, s, Superuser, "POST", "/access/users", url.Values{"userid": {"ann@pbs"}, "password": {"ann-pass-1"}}); code != 200 {
		t.Fatalf("creating ann = %d %s", code, body)
	}
	keysBefore := s.o.Generations.Load(shmem.Keys)
	named := http.Header{"X-Gatehouse-Authid": {Superuser}, forward.Rhost: {"192.0.2.1:1"}}
	for _, tt := range []struct {
		name, method, path string
		h                  http.Header
	}{
		{"identity header alone", "POST", "/keys/rotate", named},
		{"identity header, read", "GET", "/access/users", named},
		{"forged ticket", "POST", "/keys/rotate", http.Header{"Cookie": {"PBSAuthCookie=PBS:root@pam:6B043829::forged"}, forward.Rhost: {"192.0.2.1:1"}}},
		{"wrong token secret", "GET", "/access/users", http.Header{"Authorization": {"PBSAPIToken=root@pam!x:nope"}, forward.Rhost: {"192.0.2.1:1"}}},
	} {
		if code, body := call(s, tt.method, tt.path, tt.h); code != http.StatusUnauthorized {
			t.Errorf("%s: %s %s = %d %s; want 401", tt.name, tt.method, tt.path, code, body)
		}
	}
	if g := s.o.Generations.Load(shmem.Keys); g != keysBefore {
		t.Errorf("keys generation moved from %d to %d: a refused caller rotated the key", keysBefore, g)
	}

	// A ticket cookie without its CSRF token does nothing but read.
	r := httptest.NewRequest("POST", "http://apid/api2/json/keys/rotate", nil)
	withCredential(t, s, r, Superuser)
	r.Header.Del("CSRFPreventionToken")
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	if w.Code != http.StatusUnauthorized || forward.Value(w.Header(), forward.Failure) != "missing or invalid CSRF prevention token" {
		t.Errorf("rotation with root's ticket but no CSRF token = %d %q; want 401 for the CSRF token", w.Code, w.Header().Get(forward.Failure))
	}
	// A verified credential acts as its own user, whatever identity header comes along.
	r = httptest.NewRequest("GET", "http://apid/api2/json/access/users", nil)
	withCredential(t, s, r, "ann@pbs")
	r.Header.Set("X-Gatehouse-Authid", Superuser)
	w = httptest.NewRecorder()
	s.ServeHTTP(w, r)
	if w.Code != 200 || strings.Contains(w.Body.String(), Superuser) || !strings.Contains(w.Body.String(), "ann@pbs") {
		t.Errorf("ann listing users with root@pam named beside her ticket = %d %s; want 200 with ann only", w.Code, w.Body.String())
	}
}
