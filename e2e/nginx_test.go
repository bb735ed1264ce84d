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

// nginxMain wraps the README's nginx configuration (readmeBlock "nginx": a map and a server,
// as a file in Debian's /etc/nginx/sites-enabled/ holds them) in a main configuration with every
// path under a temporary directory.
const nginxMain = `{{user}}
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

{{readme}}
}
`

// readmeBlock returns the README's one fenced code block in lang ("nginx", "caddy"): the front
// proxy configurations the tests run are the README's, byte for byte but for what
// readmeConfig replaces.
func readmeBlock(t *testing.T, lang string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(string(b), "\n```"+lang+"\n")
	if len(parts) != 2 {
		t.Fatalf("README.md has %d ```%s blocks; want 1", len(parts)-1, lang)
	}
	block, _, ok := strings.Cut(parts[1], "\n```\n")
	if !ok {
		t.Fatalf("README.md: the ```%s block does not end", lang)
	}
	return block + "\n"
}

// readmeConfig is the README's lang block with each old string replaced by its new one (test
// listeners, addresses and paths); every old string must be there, so that a README edit
// cannot leave the tests running something else.
func readmeConfig(t *testing.T, lang string, oldnew ...string) string {
	t.Helper()
	text := readmeBlock(t, lang)
	for i := 0; i < len(oldnew); i += 2 {
		if !strings.Contains(text, oldnew[i]) {
			t.Fatalf("README.md's %s configuration has no %q to replace", lang, oldnew[i])
		}
	}
	return strings.NewReplacer(oldnew...).Replace(text)
}

// startNginx runs Debian's nginx in the foreground with the README's configuration (its TLS
// listener replaced by a plain HTTP one on 127.0.0.1, proxyd's address, certificate and the
// application's address by the test's) and everything else under a temporary directory, and
// returns its http://127.0.0.1:port. It is stopped at cleanup.
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
	server := readmeConfig(t, "nginx", "listen 443 ssl;  # ssl_certificate ...", "listen "+listen+";",
		"127.0.0.1:8007", proxyd, "/etc/gatehouse/proxy.pem", cert, "http://127.0.0.1:8080", app)
	conf := strings.NewReplacer("{{user}}", user, "{{dir}}", dir, "{{readme}}", server).Replace(nginxMain)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", filepath.Join(dir, "nginx.conf"), "-g", "daemon off;")
	return runFront(t, cmd, listen, syscall.SIGQUIT, filepath.Join(dir, "error.log"))
}

// websocketThroughFront runs websocketThrough against a front proxy's plain HTTP listener.
func (p *proxied) websocketThroughFront(t *testing.T, front string) {
	t.Helper()
	addr := strings.TrimPrefix(front, "http://")
	p.websocketThrough(t, func() net.Conn {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return conn
	}, addr, front)
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

	claims := with(forged, "Authorization", p.token, "X-Forwarded-For", "203.0.113.9", "X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "gopher")
	s := fetch(t, c, "GET", u, claims, "").seen(t, "token through nginx")
	if fmt.Sprint(s.User) != "[lee@pbs]" || fmt.Sprint(s.Authid) != "[lee@pbs!ci]" || s.Path != "/app/page" || s.Query != "x=1&y=2" || s.Authorization != "" {
		t.Errorf("token through nginx: app saw user %v authid %v %s?%s Authorization sent %v; want lee@pbs, lee@pbs!ci, /app/page?x=1&y=2, no Authorization",
			s.User, s.Authid, s.Path, s.Query, s.Authorization != "")
	}
	if host := strings.TrimPrefix(front, "http://"); fmt.Sprint(s.Header.Values("X-Forwarded-For"), s.Header.Values("X-Forwarded-Host"), s.Header.Values("X-Forwarded-Proto")) != fmt.Sprint([]string{"127.0.0.1"}, []string{host}, []string{"http"}) {
		t.Errorf("through nginx the app got X-Forwarded-For %q, -Host %q, -Proto %q; want nginx's: 127.0.0.1, %s, http",
			s.Header.Values("X-Forwarded-For"), s.Header.Values("X-Forwarded-Host"), s.Header.Values("X-Forwarded-Proto"), host)
	}
	s = fetch(t, c, "GET", u, with(forged, "Cookie", "__Host-PBSAuthCookie="+p.httpTk), "").seen(t, "ticket through nginx")
	if fmt.Sprint(s.User) != "[lee@pbs]" || fmt.Sprint(s.Authid) != "[lee@pbs]" {
		t.Errorf("ticket through nginx: app saw user %v authid %v; want lee@pbs only", s.User, s.Authid)
	}
	before = p.app.hits.Load()
	if r := fetch(t, c, "GET", u, http.Header{"Cookie": {"PBSAuthCookie=" + p.lee.ticket}}, ""); r.status != 401 || p.app.hits.Load() != before {
		t.Errorf("the legacy cookie alone through nginx = %d; want 401 (proxyd's --host-cookie-only default), not the app", r.status)
	}
	// nginx drops headers with '_' in their name (underscores_in_headers off): a CGI-style app
	// reads only the identity proxyd vouched for.
	s = fetch(t, c, "GET", u, underscoreHeaders(http.Header{"Authorization": {p.token}}), "").seen(t, "headers with '_' through nginx")
	oneIdentity(t, "through nginx", s, "lee@pbs", "lee@pbs!ci")
	// Two X-Forwarded-Method headers reach proxyd as the client sent them: 400, which nginx's
	// auth_request answers 500; the app never sees the request.
	before = p.app.hits.Load()
	r = fetch(t, c, "GET", u, http.Header{"Authorization": {p.token}, "X-Forwarded-Method": {"GET", "POST"}}, "")
	if r.status != http.StatusInternalServerError || p.app.hits.Load() != before {
		t.Errorf("two X-Forwarded-Method headers through nginx = %d; want 500, not the app", r.status)
	}
	// WebSockets pass (proxy_http_version 1.1, Upgrade and Connection), but nginx drops Upgrade
	// from the auth_request subrequest: proxyd must see the handshake in what is left.
	p.websocketThroughFront(t, front)

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
