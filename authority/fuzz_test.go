package authority

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"gatehouse/authid"
	"gatehouse/forward"
	"gatehouse/layout"
	"gatehouse/lockfile"
)

// FuzzServe sends apid's whole handler arbitrary request bodies and parameters, as proxyd
// forwards them from a client: method, path, content type and body, with the credential of a
// caller (withCredential: a ticket and CSRF token for a user, root@pam the administrator, a
// secret for a token; empty is no caller). The
// stores are real files in a temp dir and accumulate what earlier inputs created. apid must
// answer without panicking and without a 500, which would mean bad input reached an internal
// error. Inputs naming the pam realm are skipped: a real PAM conversation takes seconds per
// failure (pam_unix's delay) and is covered by e2e's TestPAMLogin.
func FuzzServe(f *testing.F) {
	base := f.TempDir()
	d := layout.Dirs{Config: filepath.Join(base, "etc"), Run: filepath.Join(base, "run")}
	s, gen, err := setUp(d, -1, "PBS", "gatehouse-fuzz-none", lockfile.DefaultTimeout, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { gen.Close() })
	form, js := "application/x-www-form-urlencoded", "application/json"
	for _, c := range [][5]string{
		{"root@pam", "POST", "/access/users", form, "userid=alice@pbs&password=alice-pass-1&comment=x"},
		{"root@pam", "POST", "/access/users", js, `{"userid":"bob@pbs","password":"bob-pass-12","expire":0,"enable":true}`},
		{"root@pam", "POST", "/access/ticket", js, `{"username":"alice@pbs","password":"alice-pass-1"}`},
		{"root@pam", "POST", "/access/ticket", js, `{"username":"alice","realm":"pbs","password":"x","tfa-challenge":"PBS:!tfa!"}`},
		{"alice@pbs", "PUT", "/access/password", form, "userid=alice@pbs&password=alice-pass-2&confirmation-password=alice-pass-1"},
		{"alice@pbs", "POST", "/access/users/alice@pbs/token/ci", form, "comment=c&expire=0"},
		{"alice@pbs", "PUT", "/access/users/alice@pbs/token/ci", form, "regenerate=1"},
		{"alice@pbs", "DELETE", "/access/users/alice@pbs/token/ci", "", ""},
		{"root@pam", "PUT", "/access/users/bob@pbs", form, "enable=0&expire=1"},
		{"root@pam", "PUT", "/access/acl", form, "path=/&role=Admin&auth-id=bob@pbs&propagate=1"},
		{"alice@pbs", "POST", "/access/tfa/alice@pbs", form, "type=recovery&password=alice-pass-2"},
		{"alice@pbs", "POST", "/access/tfa/alice@pbs", form, "type=totp&totp=otpauth%3A%2F%2Ftotp%2Fx%3Fsecret%3DAAAA&value=123456&password=alice-pass-2"},
		{"alice@pbs", "POST", "/access/tfa/alice@pbs", form, "type=webauthn&challenge=%7B%7D&value=%7B%7D&password=alice-pass-2"},
		{"root@pam", "GET", "/access/tfa/alice@pbs", "", ""},
		{"alice@pbs!ci", "DELETE", "/access/ticket", "", ""},
		{"root@pam", "POST", "/keys/rotate", "", ""},
		{"root@pam", "DELETE", "/access/users/alice@pbs", "", ""},
	} {
		f.Add(c[0], c[1], c[2], c[3], c[4])
	}
	tokens := map[string]bool{} // token ids whose secret withCredential has set
	f.Fuzz(func(t *testing.T, caller, method, path, ctype, body string) {
		if strings.Contains(strings.ToLower(path+body), "pam") {
			t.Skip("a PAM conversation")
		}
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		r, err := http.NewRequest(method, "http://apid/api2/json"+path, strings.NewReader(body))
		if err != nil {
			return // not a request proxyd would forward
		}
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		a, err := authid.Parse(caller)
		switch {
		case caller == "":
			r.Header.Set(forward.Rhost, "192.0.2.1:40000")
		case err != nil:
			return // no credential names it
		case a.IsToken() && !tokens[caller] && len(tokens) >= 16:
			return // each new token id rewrites token.shadow: keep the file small
		default:
			if a.IsToken() {
				tokens[caller] = true
			}
			withCredential(t, s, r, caller)
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code == http.StatusInternalServerError {
			b, _ := io.ReadAll(w.Result().Body)
			t.Fatalf("%s %s as %q: 500 %s", method, path, caller, b)
		}
	})
}
