package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/authfail"
	"gatehouse/layout"
	"gatehouse/revocation"
	"gatehouse/shmem"
	"gatehouse/ticket"
	"gatehouse/tokenshadow"
	"gatehouse/users"
)

// fuzzUser and fuzzSecret are the account FuzzServe's requests may authenticate as: the
// placeholders in a fuzzed input are replaced by a valid ticket (@T@), CSRF token (@C@) and
// API token header value (@K@), so mutations explore past authentication.
const (
	fuzzUser   = "fuzz@pbs"
	fuzzSecret = "6f0d6c56-94d0-4d4a-8c4b-8b4d5c1e2f3a"
)

// newFuzzServer builds proxyd's handler on real files in dir: keys, user.cfg with fuzzUser and
// its token tk, token.shadow, revocations and the generation file. apid is not running: calls
// forwarded to it get proxyd's "apid unreachable" answer. It returns the placeholder values.
func newFuzzServer(tb testing.TB, dir string, now time.Time) (*Server, *strings.Replacer) {
	tb.Helper()
	d := layout.Dirs{Config: filepath.Join(dir, "etc"), Run: filepath.Join(dir, "run")}
	for _, p := range []string{d.Config, d.Run, d.ShmemDir()} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	gen, err := shmem.New()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { gen.Close() })
	if err := ticket.GenerateKeys(d.AuthKey(), d.AuthPub(), -1); err != nil {
		tb.Fatal(err)
	}
	if err := ticket.GenerateCSRFKey(d.CSRFKey(), -1); err != nil {
		tb.Fatal(err)
	}
	cfg := "user: " + fuzzUser + "\n\tenable true\n\ntoken: " + fuzzUser + "!tk\n\tenable true\n"
	if err := os.WriteFile(d.UserCfg(), []byte(cfg), 0o640); err != nil {
		tb.Fatal(err)
	}
	signer, err := ticket.LoadSigner(d.AuthKey())
	if err != nil {
		tb.Fatal(err)
	}
	csrf, err := ticket.LoadCSRFKey(d.CSRFKey())
	if err != nil {
		tb.Fatal(err)
	}
	tokens, err := tokenshadow.Open(tokenshadow.Options{Path: d.TokenShadow(), LockPath: d.Lock("token.shadow"), Generations: gen})
	if err != nil {
		tb.Fatal(err)
	}
	if err := tokens.Set(fuzzUser+"!tk", fuzzSecret); err != nil {
		tb.Fatal(err)
	}
	us, err := users.Open(users.Options{Path: d.UserCfg(), LockPath: d.Lock("user.cfg"), Generations: gen})
	if err != nil {
		tb.Fatal(err)
	}
	rev, err := revocation.Open(revocation.Options{Path: d.Revocations(), Generations: gen})
	if err != nil {
		tb.Fatal(err)
	}
	guard, err := authfail.Open(authfail.Options{LogPath: filepath.Join(dir, "auth.log"), Burst: 1 << 20, Refill: time.Millisecond, Delay: -1})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { guard.Close() })
	s, err := New(Options{
		Tickets: ticket.NewCache(signer.Public(), 100), CSRF: csrf, Tokens: tokens, Users: us, Revocations: rev,
		Generations: gen, Guard: guard, ApidSocket: filepath.Join(dir, "no-apid.sock"), Now: func() time.Time { return now },
	})
	if err != nil {
		tb.Fatal(err)
	}
	tk, err := signer.SignUser("PBS", fuzzUser, now)
	if err != nil {
		tb.Fatal(err)
	}
	return s, strings.NewReplacer("@T@", tk, "@C@", csrf.Token(fuzzUser, now), "@K@", "PBSAPIToken="+fuzzUser+"!tk:"+fuzzSecret)
}

// FuzzServe sends proxyd's whole handler arbitrary requests: method, target, the three
// credentials (cookie, Authorization, CSRFPreventionToken), the content type and the body,
// as a client on the network can. Whatever arrives, proxyd must answer without panicking and
// without a 500 (which would mean bad input reached an internal error).
func FuzzServe(f *testing.F) {
	now := time.Unix(1_790_000_000, 0)
	s, fill := newFuzzServer(f, f.TempDir(), now)
	form := "application/x-www-form-urlencoded"
	for _, c := range [][7]string{
		{"GET", "/api2/json/ping", "", "", "", "", ""},
		{"GET", "/api2/json/version", "PBSAuthCookie=@T@", "", "", "", ""},
		{"GET", "/api2/json/version", "__Host-PBSAuthCookie=@T@", "", "", "", ""},
		{"GET", "/api2/json/version", "", "@K@", "", "", ""},
		{"GET", "/api2/json/version", "", "PBSAPIToken=fuzz@pbs!tk:wrong", "", "", ""},
		{"GET", "/api2/json/version", "", "PBSAPIToken fuzz@pbs!tk=x", "", "", ""},
		{"POST", "/api2/json/access/ticket", "", "", "", form, "username=fuzz&realm=pbs&password=x"},
		{"POST", "/api2/json/access/ticket", "", "", "", "application/json", `{"username":"fuzz@pbs","password":"x","http-only":1}`},
		{"POST", "/api2/json/access/ticket", "PBSAuthCookie=@T@", "", "", form, "username=fuzz@pbs&password=@T@"},
		{"PUT", "/api2/json/access/password", "PBSAuthCookie=@T@", "", "@C@", form, "userid=fuzz@pbs&password=n"},
		{"POST", "/api2/json/access/users/fuzz@pbs/token/x", "PBSAuthCookie=@T@", "", "1:bad", form, ""},
		{"DELETE", "/api2/json/access/ticket", "__Host-PBSAuthCookie=@T@", "", "@C@", "", ""},
		{"GET", "/gatehouse/login?next=%2F%2Fevil.example", "", "", "", "", ""},
		{"GET", "/gatehouse/account", "__Host-PBSAuthCookie=@T@", "", "", "", ""},
		{"GET", "/gatehouse/session", "__Host-PBSAuthCookie=%50BS%3A", "", "", "", ""},
		{"GET", "/gatehouse/totp", "__Host-PBSAuthCookie=@T@", "", "", "", ""},
		{"GET", "/gatehouse/auth", "PBSAuthCookie=@T@", "", "", "", ""},
		{"GET", "/api2/json/nodes", "", "", "", "", ""},
	} {
		f.Add(c[0], c[1], c[2], c[3], c[4], c[5], c[6])
	}
	f.Fuzz(func(t *testing.T, method, target, cookie, authz, csrf, ctype, body string) {
		target = fill.Replace(target)
		if !strings.HasPrefix(target, "/") {
			target = "/" + target
		}
		r, err := http.NewRequest(method, "https://gatehouse.test"+target, strings.NewReader(fill.Replace(body)))
		if err != nil {
			return // not a request net/http would parse off the wire
		}
		r.RemoteAddr = "192.0.2.7:40000"
		for name, v := range map[string]string{"Cookie": cookie, "Authorization": authz, "CSRFPreventionToken": csrf, "Content-Type": ctype} {
			if v != "" {
				r.Header.Set(name, fill.Replace(v))
			}
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code == http.StatusInternalServerError {
			b, _ := io.ReadAll(w.Result().Body)
			t.Fatalf("%s %s: 500 %s", method, target, b)
		}
	})
}
