package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// caddyGlobal comes before the README's Caddy site (readmeBlock "caddy"): no admin endpoint,
// no certificates to get; the site itself listens on plain HTTP.
const caddyGlobal = `{
	admin off
	auto_https off
}
`

// startCaddy runs Debian's caddy with the README's configuration (the site address replaced by
// a plain HTTP listener on 127.0.0.1, proxyd's address, certificate and the application's
// address by the test's) and returns its http://127.0.0.1:port. It is stopped at cleanup.
func startCaddy(t *testing.T, p *proxied) string {
	t.Helper()
	bin := requireTool(t, "caddy", "caddy")
	dir := t.TempDir()
	listen := freeAddr(t)
	site := readmeConfig(t, "caddy", "app.example.com {", "http://"+listen+" {",
		"https://127.0.0.1:8007", "https://"+strings.TrimPrefix(p.origin, "https://"),
		"/etc/gatehouse/proxy.pem", p.dirs.ProxyCert(), "reverse_proxy 127.0.0.1:8080", "reverse_proxy "+p.app.URL)
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(caddyGlobal+site), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--adapter", "caddyfile", "--config", filepath.Join(dir, "Caddyfile"))
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	return runFront(t, cmd, listen, syscall.SIGTERM, filepath.Join(dir, "none"))
}

// TestCaddyForwardAuth: Caddy's forward_auth (Debian's caddy) in front of the app, as the
// README configures it. Without caddy it is skipped, or fails under GATEHOUSE_REQUIRE_TOOLS
// (CI; `make test` installs it).
func TestCaddyForwardAuth(t *testing.T) {
	p := startProxied(t)
	front := startCaddy(t, p)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	u := front + "/app/page?x=1&y=2"

	if r := fetch(t, c, "GET", u, http.Header{"X-Gatehouse-User": {"root@pam"}}, ""); r.status != 401 {
		t.Errorf("no credentials, forged identity = %d; want 401", r.status)
	}
	r := fetch(t, c, "GET", u, p.browser, "")
	if loc := r.header.Get("Location"); r.status != http.StatusFound || loc != "/gatehouse/login?next=%2Fapp%2Fpage%3Fx%3D1%26y%3D2" {
		t.Errorf("browser without credentials = %d Location %q; want 302 to the login page", r.status, loc)
	}
	if r := fetch(t, c, "GET", u, http.Header{"Cookie": {"PBSAuthCookie=" + p.lee.ticket}}, ""); r.status != 401 {
		t.Errorf("the legacy cookie alone through caddy = %d; want 401 (proxyd's --host-cookie-only default)", r.status)
	}
	if p.app.hits.Load() != 0 {
		t.Fatalf("unauthenticated requests reached the app through caddy")
	}
	s := fetch(t, c, "GET", u, http.Header{"Authorization": {p.token}, "X-Gatehouse-User": {"root@pam"}, "X-Forwarded-For": {"203.0.113.9"},
		"X-Forwarded-Host": {"evil.example"}, "X-Forwarded-Proto": {"gopher"}}, "").seen(t, "token through caddy")
	if fmt.Sprint(s.User) != "[lee@pbs]" || fmt.Sprint(s.Authid) != "[lee@pbs!ci]" || s.Path != "/app/page" || s.Authorization != "" {
		t.Errorf("token through caddy: app saw user %v authid %v path %s Authorization sent %v; want lee@pbs, lee@pbs!ci, /app/page, no Authorization",
			s.User, s.Authid, s.Path, s.Authorization != "")
	}
	if host := strings.TrimPrefix(front, "http://"); fmt.Sprint(s.Header.Values("X-Forwarded-For"), s.Header.Values("X-Forwarded-Host"), s.Header.Values("X-Forwarded-Proto")) != fmt.Sprint([]string{"127.0.0.1"}, []string{host}, []string{"http"}) {
		t.Errorf("through caddy the app got X-Forwarded-For %q, -Host %q, -Proto %q; want caddy's: 127.0.0.1, %s, http",
			s.Header.Values("X-Forwarded-For"), s.Header.Values("X-Forwarded-Host"), s.Header.Values("X-Forwarded-Proto"), host)
	}
	cookie := http.Header{"Cookie": {"__Host-PBSAuthCookie=" + p.httpTk}, "X-Gatehouse-Authid": {"root@pam"}}
	if s := fetch(t, c, "GET", u, cookie, "").seen(t, "ticket through caddy"); fmt.Sprint(s.User) != "[lee@pbs]" || fmt.Sprint(s.Authid) != "[lee@pbs]" {
		t.Errorf("ticket through caddy: app saw user %v authid %v", s.User, s.Authid)
	}
	for _, tt := range []struct {
		name string
		h    http.Header
		want int
	}{
		{"cookie alone", cookie, 401},
		{"CSRF token", with(cookie, "CSRFPreventionToken", p.lee.csrf), 200},
		{"caddy's origin", with(cookie, "Origin", front), 200},
	} {
		if r := fetch(t, c, "POST", u, tt.h, "x"); r.status != tt.want {
			t.Errorf("POST through caddy, %s = %d; want %d", tt.name, r.status, tt.want)
		}
	}
	if r := fetch(t, c, "GET", front+"/gatehouse/login", nil, ""); r.status != 200 {
		t.Errorf("login page through caddy = %d", r.status)
	}
	// Caddy passes headers with '_' in their name; the README's request_header drops them, or
	// a CGI-style app would read HTTP_X_GATEHOUSE_USER "lee@pbs,root@pam".
	for _, h := range []http.Header{{"Authorization": {p.token}}, {"Cookie": {"__Host-PBSAuthCookie=" + p.httpTk}}} {
		s := fetch(t, c, "GET", u, underscoreHeaders(h), "").seen(t, "headers with '_' through caddy")
		authid := "lee@pbs"
		if h.Get("Authorization") != "" {
			authid = "lee@pbs!ci"
		}
		oneIdentity(t, "through caddy", s, "lee@pbs", authid)
	}
	p.websocketThroughFront(t, front)
}
