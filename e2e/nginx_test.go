package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nginxConf is the configuration the README gives, with test paths: nginx in front of the app
// and of proxyd, asking proxyd's /gatehouse/auth about every app request (auth_request).
const nginxConf = `{{user}}
worker_processes 1;
pid {{dir}}/nginx.pid;
error_log {{dir}}/error.log info;
events { worker_connections 64; }
http {
    access_log {{dir}}/access.log;
    client_body_temp_path {{dir}}/client_body;
    proxy_temp_path {{dir}}/proxy;
    fastcgi_temp_path {{dir}}/fastcgi;
    uwsgi_temp_path {{dir}}/uwsgi;
    scgi_temp_path {{dir}}/scgi;

    server {
        listen {{listen}};

        # proxyd's own paths: the API (login) and the login page.
        location /api2/ { include {{dir}}/to-proxyd.conf; proxy_pass https://{{proxyd}}; }
        location /gatehouse/ { include {{dir}}/to-proxyd.conf; proxy_pass https://{{proxyd}}; }

        location = /gatehouse-auth {
            internal;
            include {{dir}}/to-proxyd.conf;
            proxy_pass https://{{proxyd}}/gatehouse/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
        }

        location / {
            auth_request /gatehouse-auth;
            auth_request_set $gatehouse_user $upstream_http_x_gatehouse_user;
            auth_request_set $gatehouse_authid $upstream_http_x_gatehouse_authid;
            auth_request_set $gatehouse_login $upstream_http_x_gatehouse_login;
            proxy_set_header X-Gatehouse-User $gatehouse_user;
            proxy_set_header X-Gatehouse-Authid $gatehouse_authid;
            proxy_set_header Authorization "";
            proxy_pass {{app}};
            error_page 401 = @gatehouse_login;
        }
        location @gatehouse_login {
            if ($gatehouse_login = "") { return 401; }
            return 302 $gatehouse_login;
        }
    }
}
`

// toProxyd is included wherever nginx talks to proxyd: verify its certificate, tell it the
// client address (nginx's address is in proxyd's --trusted-proxies) and the original host.
const toProxyd = `proxy_ssl_verify on;
proxy_ssl_trusted_certificate {{cert}};
proxy_ssl_name localhost;
proxy_set_header Host $http_host;
proxy_set_header X-Forwarded-Host $http_host;
proxy_set_header X-Forwarded-Proto $scheme;
proxy_set_header X-Forwarded-For $remote_addr;
`

// startNginx runs Debian's nginx in the foreground with everything under a temporary
// directory and returns its http://127.0.0.1:port. It is stopped at cleanup.
func startNginx(t *testing.T, proxyd, app, cert string) string {
	t.Helper()
	bin := "/usr/sbin/nginx" // not in a user's PATH
	if _, err := os.Stat(bin); err != nil {
		bin = requireTool(t, "nginx", "nginx")
	}
	dir := t.TempDir()
	listen := freeAddr(t)
	user := "" // the master process is not root: workers stay this user
	if os.Getuid() == 0 {
		user = "user root;" // the temp directory belongs to root
	}
	r := strings.NewReplacer("{{user}}", user, "{{dir}}", dir, "{{listen}}", listen, "{{proxyd}}", proxyd,
		"{{app}}", app, "{{cert}}", cert)
	for name, text := range map[string]string{"nginx.conf": nginxConf, "to-proxyd.conf": toProxyd} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(r.Replace(text)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", filepath.Join(dir, "nginx.conf"), "-g", "daemon off;")
	return runFront(t, cmd, listen, syscall.SIGQUIT, filepath.Join(dir, "error.log"))
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// runFront starts a front proxy and returns http://listen once it accepts there; it is
// stopped with stop at cleanup, and its output (and logFile) logged.
func runFront(t *testing.T, cmd *exec.Cmd, listen string, stop os.Signal, logFile string) string {
	t.Helper()
	var out bytes.Buffer // written by the child only; read after it exits or for a failure
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", cmd.Path, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	logs := func() string {
		b, _ := os.ReadFile(logFile)
		return out.String() + string(b)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(stop)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		t.Logf("%s log:\n%s", cmd.Path, logs())
	})
	// No "listening" line to wait for: poll the port, with a deadline.
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("%s exited before listening: %v\n%s", cmd.Path, err, logs())
		default:
		}
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			c.Close()
			return "http://" + listen
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not accepting on %s after 20 s: %v", cmd.Path, listen, err)
		}
		time.Sleep(20 * time.Millisecond) // polling an external process, bounded by the deadline
	}
}

// TestNginxAuthRequest: Debian's nginx with auth_request asks proxyd's /gatehouse/auth about
// every app request and passes the identity on; nothing else reaches the app.
func TestNginxAuthRequest(t *testing.T) {
	p := startProxied(t)
	front := startNginx(t, strings.TrimPrefix(p.origin, "https://"), p.app.URL, p.dirs.ProxyCert())
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	u := front + "/app/page?x=1&y=2"
	forged := http.Header{"X-Gatehouse-User": {"root@pam"}, "X-Gatehouse-Authid": {"root@pam"}}

	before := p.app.hits.Load()
	if r := fetch(t, c, "GET", u, forged, ""); r.status != 401 {
		t.Errorf("no credentials, forged identity = %d; want 401", r.status)
	}
	r := fetch(t, c, "GET", u, with(p.browser, "X-Gatehouse-User", "root@pam"), "")
	if loc := r.header.Get("Location"); r.status != http.StatusFound || loc != front+"/gatehouse/login?next=%2Fapp%2Fpage%3Fx%3D1%26y%3D2" {
		t.Errorf("browser without credentials = %d Location %q; want 302 to %s/gatehouse/login?next=...", r.status, loc, front)
	}
	if r := fetch(t, c, "GET", u, http.Header{"Cookie": {"PBSAuthCookie=PBS:lee@pbs:6B043829::forged"}}, ""); r.status != 401 {
		t.Errorf("bad ticket = %d; want 401", r.status)
	}
	if n := p.app.hits.Load() - before; n != 0 {
		t.Fatalf("%d unauthenticated requests reached the app through nginx", n)
	}

	s := fetch(t, c, "GET", u, with(forged, "Authorization", p.token), "").seen(t, "token through nginx")
	if fmt.Sprint(s.User) != "[lee@pbs]" || fmt.Sprint(s.Authid) != "[lee@pbs!ci]" || s.Path != "/app/page" || s.Query != "x=1&y=2" || s.Authorization != "" {
		t.Errorf("token through nginx: app saw %+v; want lee@pbs, lee@pbs!ci, /app/page?x=1&y=2, no Authorization", s)
	}
	s = fetch(t, c, "GET", u, with(forged, "Cookie", "PBSAuthCookie="+p.lee.ticket), "").seen(t, "ticket through nginx")
	if fmt.Sprint(s.User) != "[lee@pbs]" || fmt.Sprint(s.Authid) != "[lee@pbs]" {
		t.Errorf("ticket through nginx: app saw user %v authid %v; want lee@pbs only", s.User, s.Authid)
	}

	// The login page and the login call go through nginx to proxyd; the HttpOnly cookie it
	// sets then opens the app, and a POST with it needs the CSRF token or the page's origin.
	if r := fetch(t, c, "GET", front+"/gatehouse/login?next=%2Fapp%2Fpage", nil, ""); r.status != 200 || !strings.Contains(r.body, `data-next="/app/page"`) {
		t.Errorf("login page through nginx = %d", r.status)
	}
	r = fetch(t, c, "POST", front+"/api2/json/access/ticket", http.Header{"Content-Type": {"application/json"}},
		`{"username":"lee","password":"lee-pass-1","realm":"pbs","http-only":1}`)
	var tk string
	for _, ck := range (&http.Response{Header: r.header}).Cookies() {
		if ck.Name == "__Host-PBSAuthCookie" {
			tk = ck.Value
		}
	}
	if r.status != 200 || tk == "" {
		t.Fatalf("login through nginx = %d %q; want 200 and the HttpOnly cookie", r.status, r.body)
	}
	cookie := http.Header{"Cookie": {"__Host-PBSAuthCookie=" + tk}, "Content-Type": {"text/plain"}}
	if s := fetch(t, c, "GET", u, cookie, "").seen(t, "HttpOnly cookie through nginx"); fmt.Sprint(s.User) != "[lee@pbs]" {
		t.Errorf("HttpOnly cookie through nginx: app saw user %v", s.User)
	}
	for _, tt := range []struct {
		name string
		h    http.Header
		want int
	}{
		{"cookie alone", cookie, 401},
		{"other origin", with(cookie, "Origin", "http://evil.example"), 401},
		{"CSRF token", with(cookie, "CSRFPreventionToken", p.lee.csrf), 200},
		{"same-origin fetch", with(cookie, "Sec-Fetch-Site", "same-origin"), 200},
		{"nginx's origin", with(cookie, "Origin", front), 200},
	} {
		if r := fetch(t, c, "POST", u, tt.h, "x"); r.status != tt.want {
			t.Errorf("POST through nginx, %s = %d; want %d", tt.name, r.status, tt.want)
		}
	}
}
