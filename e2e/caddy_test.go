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

// caddyConf is the README's Caddy setup with test paths and a plain HTTP listener.
const caddyConf = `{
	admin off
	auto_https off
}
http://{{listen}} {
	handle /api2/* {
		reverse_proxy https://{{proxyd}} {
			transport http {
				tls_trusted_ca_certs {{cert}}
				tls_server_name localhost
			}
		}
	}
	handle /gatehouse/* {
		reverse_proxy https://{{proxyd}} {
			transport http {
				tls_trusted_ca_certs {{cert}}
				tls_server_name localhost
			}
		}
	}
	handle {
		forward_auth https://{{proxyd}} {
			uri /gatehouse/auth
			copy_headers X-Gatehouse-User X-Gatehouse-Authid
			transport http {
				tls_trusted_ca_certs {{cert}}
				tls_server_name localhost
			}
			@login header X-Gatehouse-Login *
			handle_response @login {
				redir {rp.header.X-Gatehouse-Login} 302
			}
		}
		reverse_proxy {{app}}
	}
}
`

// TestCaddyForwardAuth: Caddy's forward_auth (Debian's caddy) in front of the app, as the
// README configures it. Skipped when caddy is not installed (it is not among the required tools).
func TestCaddyForwardAuth(t *testing.T) {
	bin, err := exec.LookPath("caddy")
	if err != nil {
		t.Skip("caddy not installed (package caddy)")
	}
	p := startProxied(t)
	dir := t.TempDir()
	listen := freeAddr(t)
	conf := strings.NewReplacer("{{listen}}", listen, "{{proxyd}}", strings.TrimPrefix(p.origin, "https://"),
		"{{app}}", p.app.URL, "{{cert}}", p.dirs.ProxyCert()).Replace(caddyConf)
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--adapter", "caddyfile", "--config", filepath.Join(dir, "Caddyfile"))
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	front := runFront(t, cmd, listen, syscall.SIGTERM, filepath.Join(dir, "none"))
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	u := front + "/app/page?x=1&y=2"

	if r := fetch(t, c, "GET", u, http.Header{"X-Gatehouse-User": {"root@pam"}}, ""); r.status != 401 {
		t.Errorf("no credentials, forged identity = %d; want 401", r.status)
	}
	r := fetch(t, c, "GET", u, p.browser, "")
	if loc := r.header.Get("Location"); r.status != http.StatusFound || loc != "/gatehouse/login?next=%2Fapp%2Fpage%3Fx%3D1%26y%3D2" {
		t.Errorf("browser without credentials = %d Location %q; want 302 to the login page", r.status, loc)
	}
	if p.app.hits.Load() != 0 {
		t.Fatalf("unauthenticated requests reached the app through caddy")
	}
	s := fetch(t, c, "GET", u, http.Header{"Authorization": {p.token}, "X-Gatehouse-User": {"root@pam"}}, "").seen(t, "token through caddy")
	if fmt.Sprint(s.User) != "[lee@pbs]" || fmt.Sprint(s.Authid) != "[lee@pbs!ci]" || s.Path != "/app/page" {
		t.Errorf("token through caddy: app saw %+v", s)
	}
	cookie := http.Header{"Cookie": {"PBSAuthCookie=" + p.lee.ticket}, "X-Gatehouse-Authid": {"root@pam"}}
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
}
