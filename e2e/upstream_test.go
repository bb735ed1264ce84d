package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// app is the upstream application behind Gatehouse, a real HTTP server on 127.0.0.1:0. It
// answers every request with what it received; /stream sends one line, waits for release,
// then a second; /ws switches protocols and echoes.
type app struct {
	*httptest.Server
	hits    atomic.Int64
	release chan struct{}
}

// seen is what the app received.
type seen struct {
	Method, Path, Query         string
	User, Authid                []string
	Internal                    []string // other X-Gatehouse-* headers
	Authorization, Cookie, CSRF string
	XFF, XFH, XFP               string
	Body                        string
	// Every header as received, and the HTTP_* variables a CGI-style (WSGI) server would
	// make of them (wsgiEnviron): X_Gatehouse_User and X-Gatehouse-User share one.
	Header http.Header
	WSGI   map[string]string
}

// wsgiEnviron is what Python's wsgiref (and CGI, and gunicorn alike) make of request headers:
// the name upper-cased with '-' turned into '_', after "HTTP_"; the values of names that meet
// joined with ','. Names are taken in sorted order, so the joined value is stable.
func wsgiEnviron(h http.Header) map[string]string {
	env := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(h)) {
		key := "HTTP_" + strings.ToUpper(strings.ReplaceAll(k, "-", "_"))
		for _, v := range h[k] {
			if prev, ok := env[key]; ok {
				env[key] = prev + "," + strings.TrimSpace(v)
			} else {
				env[key] = strings.TrimSpace(v)
			}
		}
	}
	return env
}

func newApp(t *testing.T) *app {
	a := &app{release: make(chan struct{})}
	a.Server = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.Close)
	return a
}

func (a *app) serve(w http.ResponseWriter, r *http.Request) {
	a.hits.Add(1)
	switch r.URL.Path {
	case "/stream":
		fmt.Fprintln(w, "first")
		w.(http.Flusher).Flush()
		select {
		case <-a.release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprintln(w, "second")
		return
	case "/ws":
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "not an upgrade", http.StatusBadRequest)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Seen-User: %s\r\n\r\n",
			strings.Join(r.Header.Values("X-Gatehouse-User"), ","))
		rw.Flush()
		io.Copy(conn, rw) // echo until the client closes
		return
	}
	body, _ := io.ReadAll(r.Body)
	var internal []string
	for k := range r.Header {
		if strings.HasPrefix(k, "X-Gatehouse-") && k != "X-Gatehouse-User" && k != "X-Gatehouse-Authid" {
			internal = append(internal, k)
		}
	}
	json.NewEncoder(w).Encode(map[string]seen{"data": {
		Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		User: r.Header.Values("X-Gatehouse-User"), Authid: r.Header.Values("X-Gatehouse-Authid"), Internal: internal,
		Authorization: r.Header.Get("Authorization"), Cookie: strings.Join(r.Header.Values("Cookie"), "|"),
		CSRF: r.Header.Get("CSRFPreventionToken"), XFF: r.Header.Get("X-Forwarded-For"),
		XFH: r.Header.Get("X-Forwarded-Host"), XFP: r.Header.Get("X-Forwarded-Proto"), Body: string(body),
		Header: r.Header, WSGI: wsgiEnviron(r.Header),
	}})
}

// reply is one raw HTTP answer.
type reply struct {
	status int
	header http.Header
	body   string
}

// seen decodes the app's echo; it fails the test unless the answer is 200 from the app.
func (r reply) seen(t *testing.T, what string) seen {
	t.Helper()
	var out struct{ Data *seen }
	if r.status != 200 || json.Unmarshal([]byte(r.body), &out) != nil || out.Data == nil {
		t.Fatalf("%s = %d %q; want 200 from the app", what, r.status, r.body)
	}
	return *out.Data
}

// fetch makes one request with c, which must not follow redirects.
func fetch(t *testing.T, c *http.Client, method, u string, h http.Header, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, u, err)
	}
	return reply{resp.StatusCode, resp.Header, string(b)}
}

func noRedirects(c *http.Client) *http.Client {
	cc := *c
	cc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cc
}

// proxied is a stack with an upstream app and a user lee@pbs with a legacy session, an
// HttpOnly ticket (logged in as the login page does it) and an API token lee@pbs!ci.
type proxied struct {
	*stack
	app     *app
	origin  string       // https://127.0.0.1:port
	client  *http.Client // to proxyd, not following redirects
	lee     session
	httpTk  string // the __Host- cookie's value
	token   string // Authorization header value
	browser http.Header
}

// startProxied starts a proxied stack; proxydArgs are more proxyd flags.
func startProxied(t *testing.T, proxydArgs ...string) *proxied {
	t.Helper()
	a := newApp(t)
	st := start(t, options{upstream: a.URL, proxydArgs: proxydArgs})
	p := &proxied{stack: st, app: a, origin: strings.TrimSuffix(st.url, "/api2/json"), client: noRedirects(st.http)}
	st.addUser(t, "lee@pbs", "lee-pass-1")
	p.lee = st.login(t, "lee@pbs", "lee-pass-1")
	// The login page's call: JSON, user and realm apart, http-only=1.
	r := fetch(t, p.client, "POST", st.url+"/access/ticket", http.Header{"Content-Type": {"application/json"}},
		`{"username":"lee","password":"lee-pass-1","realm":"pbs","http-only":1}`)
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == "__Host-PBSAuthCookie" && c.HttpOnly && c.Secure {
			p.httpTk = c.Value
		}
	}
	if r.status != 200 || p.httpTk == "" || strings.Contains(r.body, `"ticket"`) {
		t.Fatalf("login page's ticket call = %d %q %v; want 200, an HttpOnly cookie, no ticket in the body", r.status, r.body, r.header)
	}
	a2 := st.do(t, call{method: "POST", path: "/access/users/lee@pbs/token/ci", header: p.lee.header(true)})
	var tok struct{ Value string }
	a2.decode(t, &tok)
	if a2.status != 200 || tok.Value == "" {
		t.Fatalf("creating lee@pbs!ci = %d %s", a2.status, a2.data)
	}
	p.token = "PBSAPIToken=lee@pbs!ci:" + tok.Value
	p.browser = http.Header{"Accept": {"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}}
	return p
}

// replaced is h with each key's values replaced by the value after it.
func replaced(h http.Header, kv ...string) http.Header {
	out := h.Clone()
	for i := 0; i+1 < len(kv); i += 2 {
		out.Set(kv[i], kv[i+1])
	}
	return out
}

// with is h with each value after its key added.
func with(h http.Header, kv ...string) http.Header {
	out := h.Clone()
	if out == nil {
		out = http.Header{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out.Add(kv[i], kv[i+1])
	}
	return out
}

func (p *proxied) authFails(t *testing.T) int {
	t.Helper()
	n := 0
	for _, l := range p.authLogLines(t) {
		if strings.Contains(l, "authentication failure") {
			n++
		}
	}
	return n
}

// TestReverseProxy: proxyd in front of a real application. What the application receives
// (identity headers, no credentials, other cookies, X-Forwarded-*), what clients without
// valid credentials get (browser: the login page; API: 401; bad ticket: 401 and an auth.log
// line), the CSRF rule for cookie requests that change things, streaming, protocol upgrades
// (and cross-site WebSocket handshakes), what a client cannot smuggle to the application
// (headers spelled with '_', its own forwarding claims, an absolute-form target), and 502 when
// the application is down.
func TestReverseProxy(t *testing.T) {
	p := startProxied(t)
	u := p.origin + "/app/page?x=1&y=2"
	host := strings.TrimPrefix(p.origin, "https://")

	t.Run("ticket cookie", func(t *testing.T) {
		h := http.Header{
			"Cookie":             {"theme=dark; __Host-PBSAuthCookie=" + p.httpTk + "; PBSAuthCookie=" + p.lee.ticket, "sid=7"},
			"X-Gatehouse-User":   {"root@pam"},
			"x-gatehouse-authid": {"root@pam"}, // not canonical: sent as is
			"X-Gatehouse-Rhost":  {"192.0.2.1"},
			"X-Gatehouse-Extra":  {"forged"},
			"X-Forwarded-For":    {"203.0.113.9"},
		}
		s := fetch(t, p.client, "GET", u, h, "").seen(t, "GET with the HttpOnly ticket")
		want := seen{Method: "GET", Path: "/app/page", Query: "x=1&y=2", User: []string{"lee@pbs"}, Authid: []string{"lee@pbs"},
			// 127.0.0.1, this test, is a trusted proxy of this proxyd: its X-Forwarded-For is
			// the client address, and the one the app gets.
			Cookie: "theme=dark; sid=7", XFF: "203.0.113.9", XFH: host, XFP: "https"}
		s.Header, s.WSGI = nil, nil // the subtests below look at these
		if fmt.Sprint(s) != fmt.Sprint(want) {
			t.Errorf("app saw %+v;\nwant %+v", s, want)
		}
	})
	t.Run("token", func(t *testing.T) {
		h := http.Header{"Authorization": {p.token}, "Cookie": {"PBSAuthCookie=junk; a=1"}, "X-Gatehouse-User": {"root@pam"}}
		s := fetch(t, p.client, "GET", u, h, "").seen(t, "GET with a token")
		if fmt.Sprint(s.User) != "[lee@pbs]" || fmt.Sprint(s.Authid) != "[lee@pbs!ci]" || s.Authorization != "" || s.Cookie != "a=1" || s.XFF != "127.0.0.1" {
			t.Errorf("app saw user %v authid %v authorization %q cookie %q X-Forwarded-For %q; want [lee@pbs] [lee@pbs!ci] \"\" \"a=1\" 127.0.0.1",
				s.User, s.Authid, s.Authorization, s.Cookie, s.XFF)
		}
		s = fetch(t, p.client, "POST", u, with(h, "Content-Type", "text/plain"), "payload").seen(t, "POST with a token")
		if s.Body != "payload" || s.Method != "POST" {
			t.Errorf("token POST reached the app as %s with %q; want POST with the body", s.Method, s.Body)
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		before := p.app.hits.Load()
		r := fetch(t, p.client, "GET", u, with(p.browser, "X-Gatehouse-User", "root@pam"), "")
		if loc := r.header.Get("Location"); r.status != http.StatusSeeOther || loc != "/gatehouse/login?next=%2Fapp%2Fpage%3Fx%3D1%26y%3D2" {
			t.Errorf("browser without credentials = %d Location %q; want 303 to the login page with next", r.status, loc)
		}
		for _, h := range []http.Header{{"Accept": {"application/json"}}, {"X-Gatehouse-User": {"root@pam"}, "X-Gatehouse-Authid": {"root@pam"}}} {
			if r := fetch(t, p.client, "GET", u, h, ""); r.status != 401 || !strings.Contains(r.body, "authentication failure") {
				t.Errorf("API client without credentials (%v) = %d %q; want 401 JSON", h, r.status, r.body)
			}
		}
		if r := fetch(t, p.client, "POST", u, p.browser, "x"); r.status != 401 {
			t.Errorf("browser POST without credentials = %d; want 401", r.status)
		}
		if n := p.app.hits.Load() - before; n != 0 {
			t.Errorf("%d requests without credentials reached the app; want 0", n)
		}
	})
	t.Run("bad ticket", func(t *testing.T) {
		before, hits := p.authFails(t), p.app.hits.Load()
		bad := http.Header{"Cookie": {"__Host-PBSAuthCookie=PBS:lee@pbs:6B043829::forged"}}
		if r := fetch(t, p.client, "GET", u, bad, ""); r.status != 401 {
			t.Errorf("bad ticket = %d; want 401", r.status)
		}
		if r := fetch(t, p.client, "GET", u, with(bad, "Accept", "text/html"), ""); r.status != http.StatusSeeOther {
			t.Errorf("browser with a bad ticket = %d; want 303 to the login page", r.status)
		}
		if got := p.authFails(t) - before; got != 2 {
			t.Errorf("bad tickets wrote %d auth.log lines; want 2:\n%s", got, strings.Join(p.authLogLines(t), "\n"))
		}
		if p.app.hits.Load() != hits {
			t.Error("a bad ticket reached the app")
		}
	})
	t.Run("CSRF", func(t *testing.T) {
		cookie := http.Header{"Cookie": {"__Host-PBSAuthCookie=" + p.httpTk}, "Content-Type": {"application/json"}}
		for _, tt := range []struct {
			name string
			h    http.Header
			want int
		}{
			{"cookie alone", cookie, 401},
			{"cross-site fetch", with(cookie, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"), 401},
			{"same-site fetch", with(cookie, "Sec-Fetch-Site", "same-site"), 401},
			{"other origin", with(cookie, "Origin", "https://evil.example"), 401},
			{"origin null", with(cookie, "Origin", "null"), 401},
			{"forged CSRF token", with(cookie, "CSRFPreventionToken", "6B043829:forged"), 401},
			{"CSRF token", with(cookie, "CSRFPreventionToken", p.lee.csrf), 200},
			{"same-origin fetch", with(cookie, "Sec-Fetch-Site", "same-origin"), 200},
			{"own origin", with(cookie, "Origin", p.origin), 200},
		} {
			before := p.authFails(t)
			r := fetch(t, p.client, "POST", u, tt.h, `{"a":1}`)
			if r.status != tt.want {
				t.Errorf("POST, %s = %d; want %d", tt.name, r.status, tt.want)
			}
			if logged := p.authFails(t) - before; (tt.want == 401) != (logged == 1) {
				t.Errorf("POST, %s wrote %d auth.log lines", tt.name, logged)
			}
			if tt.want == 200 {
				if s := r.seen(t, tt.name); s.CSRF != "" || s.Body != `{"a":1}` || fmt.Sprint(s.User) != "[lee@pbs]" {
					t.Errorf("POST, %s: app saw %+v; want the body, lee@pbs, no CSRF header", tt.name, s)
				}
			}
		}
	})
	t.Run("streaming", func(t *testing.T) {
		req, _ := http.NewRequest("GET", p.origin+"/stream", nil)
		req.Header.Set("Authorization", p.token)
		resp, err := p.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		// The app holds the second line until the first has reached us through proxyd.
		line, err := br.ReadString('\n')
		if err != nil || line != "first\n" {
			t.Fatalf("first streamed line = %q, %v", line, err)
		}
		close(p.app.release)
		rest, err := io.ReadAll(br)
		if err != nil || string(rest) != "second\n" {
			t.Errorf("rest of the stream = %q, %v; want \"second\\n\"", rest, err)
		}
	})
	t.Run("upgrade", func(t *testing.T) {
		tlsConf := p.client.Transport.(*http.Transport).TLSClientConfig
		p.websocketThrough(t, func() net.Conn {
			conn, err := tls.Dial("tcp", host, tlsConf)
			if err != nil {
				t.Fatal(err)
			}
			return conn
		}, host, p.origin)
	})
	t.Run("underscore headers", func(t *testing.T) {
		h := underscoreHeaders(http.Header{"Authorization": {p.token}})
		s := fetch(t, p.client, "GET", u, h, "").seen(t, "GET with headers named with '_'")
		oneIdentity(t, "proxyd in front", s, "lee@pbs", "lee@pbs!ci")
		// proxyd's X-Forwarded-For: the trusted peer itself, this test, which sent none.
		if got := s.WSGI["HTTP_X_FORWARDED_FOR"]; got != "127.0.0.1" {
			t.Errorf("a WSGI application reads HTTP_X_FORWARDED_FOR %q; want 127.0.0.1", got)
		}
	})
	t.Run("client's forwarding claims", func(t *testing.T) {
		// What a front proxy would say about the request, said by the client itself.
		claims := map[string]string{
			"Forwarded": "for=192.0.2.1;host=evil.example;proto=http", "X-Real-Ip": "192.0.2.1",
			"X-Forwarded-Port": "80", "X-Forwarded-Uri": "/admin", "X-Forwarded-Prefix": "/admin",
			"X-Forwarded-Server": "evil.example", "X-Forwarded-Method": "DELETE", "X-Original-Uri": "/admin",
			"X-Original-Method": "DELETE", "X-Http-Method-Override": "DELETE", "X-Http-Method": "DELETE",
			"X-Method-Override": "DELETE", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http",
		}
		h := http.Header{"Authorization": {p.token}}
		for k, v := range claims {
			h.Set(k, v)
		}
		s := fetch(t, p.client, "GET", u, h, "").seen(t, "GET with forwarding claims")
		for k := range claims {
			if got := s.Header.Values(k); k != "X-Forwarded-Host" && k != "X-Forwarded-Proto" && len(got) > 0 {
				t.Errorf("the app got the client's %s: %q; want none", k, got)
			}
		}
		if fmt.Sprint(s.Header.Values("X-Forwarded-Host")) != "["+host+"]" || fmt.Sprint(s.Header.Values("X-Forwarded-Proto")) != "[https]" || s.Method != "GET" {
			t.Errorf("the app got %s with X-Forwarded-Host %q, X-Forwarded-Proto %q; want GET, %s and https",
				s.Method, s.Header.Values("X-Forwarded-Host"), s.Header.Values("X-Forwarded-Proto"), host)
		}
	})
	t.Run("absolute-form target", func(t *testing.T) {
		// GET https://evil.example/... makes net/http take the host from the target and drop
		// the Host header: the app would see X-Forwarded-Host evil.example.
		before := p.app.hits.Load()
		tlsConf := p.client.Transport.(*http.Transport).TLSClientConfig
		for _, target := range []string{"https://evil.example/app/page", "https://" + host + "/app/page", "http://" + host + "/app/page"} {
			conn, err := tls.Dial("tcp", host, tlsConf)
			if err != nil {
				t.Fatal(err)
			}
			resp, _ := rawRequest(t, conn, "GET "+target+" HTTP/1.1\r\nHost: "+host+"\r\nAuthorization: "+p.token+"\r\n\r\n")
			if resp.StatusCode != http.StatusBadRequest {
				var out struct{ Data seen }
				json.NewDecoder(resp.Body).Decode(&out)
				t.Errorf("GET %s = %d (the app was told X-Forwarded-Host %q); want 400", target, resp.StatusCode, out.Data.XFH)
			}
		}
		if n := p.app.hits.Load() - before; n != 0 {
			t.Errorf("%d absolute-form requests reached the app; want 0", n)
		}
	})
	t.Run("login page", func(t *testing.T) {
		r := fetch(t, p.client, "GET", p.origin+"/gatehouse/login?next="+url.QueryEscape("/app/page?x=1&y=2"), nil, "")
		if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") ||
			!strings.Contains(r.header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Fatalf("login page = %d %v", r.status, r.header)
		}
		for _, want := range []string{`<label for="username">`, `<label for="password">`, `<label for="realm">`,
			`value="pam"`, `data-next="/app/page?x=1&amp;y=2"`, `src="/gatehouse/static/login.js"`} {
			if !strings.Contains(r.body, want) {
				t.Errorf("login page lacks %s:\n%s", want, r.body)
			}
		}
		for _, next := range []string{"//evil.example/", "/\\evil.example", "https://evil.example/"} {
			r := fetch(t, p.client, "GET", p.origin+"/gatehouse/login?next="+url.QueryEscape(next), nil, "")
			// With an upstream, a sign-in without a usable next goes to the application.
			if r.status != 200 || !strings.Contains(r.body, `data-next="/"`) {
				t.Errorf("login page with next=%q = %d; want 200 going to \"/\"", next, r.status)
			}
		}
		js := fetch(t, p.client, "GET", p.origin+"/gatehouse/static/login.js", nil, "")
		if js.status != 200 || !strings.Contains(js.header.Get("Content-Type"), "javascript") {
			t.Fatalf("login.js = %d %v", js.status, js.header)
		}
		for _, want := range []string{`'/access/ticket'`, `'http-only': 1`, `':!tfa!'`, `location.assign(next)`} {
			if !strings.Contains(js.body, want) {
				t.Errorf("login.js lacks %s", want)
			}
		}
		if r := fetch(t, p.client, "GET", p.origin+"/gatehouse/static/gatehouse.css", nil, ""); r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/css") {
			t.Errorf("gatehouse.css = %d %v", r.status, r.header)
		}
		before := p.app.hits.Load()
		if r := fetch(t, p.client, "GET", p.origin+"/gatehouse/nothing", http.Header{"Authorization": {p.token}}, ""); r.status != 404 || p.app.hits.Load() != before {
			t.Errorf("/gatehouse/nothing = %d; want 404 from proxyd, not the app", r.status)
		}
	})
	t.Run("upstream down", func(t *testing.T) {
		p.app.Close()
		r := fetch(t, p.client, "GET", u, http.Header{"Authorization": {p.token}}, "")
		if r.status != http.StatusBadGateway || !strings.Contains(r.body, "upstream application unavailable") {
			t.Errorf("app down = %d %q; want 502", r.status, r.body)
		}
		p.logs["proxyd"].waitFor(t, `msg="proxying to upstream"`, "path=/app/page", "connection refused")
	})
}

// TestForwardAuth: /gatehouse/auth as Caddy's forward_auth calls it (the client's headers,
// X-Forwarded-Method/-Uri/-Host/-Proto): 200 with the identity headers or 401, the CSRF rule
// for the original method, and the login URL for a browser navigation.
func TestForwardAuth(t *testing.T) {
	p := startProxied(t)
	auth := p.origin + "/gatehouse/auth"
	fwd := http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/app/page?x=1&y=2"},
		"X-Forwarded-Host": {"app.example"}, "X-Forwarded-Proto": {"https"}}
	cookie := with(fwd, "Cookie", "__Host-PBSAuthCookie="+p.httpTk)
	post := cookie.Clone()
	post.Set("X-Forwarded-Method", "POST")
	noMethod := cookie.Clone()
	noMethod.Del("X-Forwarded-Method")
	// A WebSocket handshake as nginx's auth_request passes it: Upgrade and Connection are gone.
	ws := with(cookie, "Sec-Websocket-Key", "dGhlIHNhbXBsZSBub25jZQ==", "Sec-Websocket-Version", "13")
	for _, tt := range []struct {
		name         string
		h            http.Header
		want         int
		user, authid string
	}{
		{"token", with(fwd, "Authorization", p.token, "X-Gatehouse-User", "root@pam"), 200, "lee@pbs", "lee@pbs!ci"},
		{"ticket", with(cookie, "X-Gatehouse-Authid", "root@pam"), 200, "lee@pbs", "lee@pbs"},
		{"ticket, HEAD", replaced(cookie, "X-Forwarded-Method", "HEAD"), 200, "lee@pbs", "lee@pbs"},
		{"forged identity only", with(fwd, "X-Gatehouse-User", "root@pam", "X-Gatehouse-Authid", "root@pam"), 401, "", ""},
		{"forged identity with '_' only", underscoreHeaders(fwd), 401, "", ""},
		{"bad ticket", with(fwd, "Cookie", "__Host-PBSAuthCookie=PBS:lee@pbs:6B043829::forged"), 401, "", ""},
		{"POST, cookie alone", post, 401, "", ""},
		{"POST, CSRF token", with(post, "CSRFPreventionToken", p.lee.csrf), 200, "lee@pbs", "lee@pbs"},
		{"POST, same-origin fetch", with(post, "Sec-Fetch-Site", "same-origin"), 200, "lee@pbs", "lee@pbs"},
		{"POST, the app's origin", with(post, "Origin", "https://app.example"), 200, "lee@pbs", "lee@pbs"},
		{"POST, proxyd's origin", with(post, "Origin", p.origin), 401, "", ""},
		{"POST, token", replaced(fwd, "Authorization", p.token, "X-Forwarded-Method", "POST"), 200, "lee@pbs", "lee@pbs!ci"},
		{"no method header, cookie", noMethod, 401, "", ""},
		// nginx sets X-Original-Method; a client adding X-Forwarded-Method: GET to its POST
		// makes the two disagree, and a disagreement is unsafe.
		{"POST with a spoofed GET header, cookie", replaced(post, "X-Forwarded-Method", "GET", "X-Original-Method", "POST"), 401, "", ""},
		{"both method headers GET, cookie", with(cookie, "X-Original-Method", "GET"), 200, "lee@pbs", "lee@pbs"},
		{"GET, POST in one method header, cookie", replaced(cookie, "X-Forwarded-Method", "GET, POST"), 401, "", ""},
		// A cross-site page may open a WebSocket with the victim's cookie; checked like a POST.
		{"WebSocket from another site", with(ws, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "websocket"), 401, "", ""},
		{"WebSocket from another site, no Fetch Metadata", with(ws, "Origin", "https://evil.example"), 401, "", ""},
		{"WebSocket, no Origin", ws, 401, "", ""},
		{"Sec-Fetch-Mode websocket alone, cross-site", with(cookie, "Sec-Fetch-Mode", "websocket", "Sec-Fetch-Site", "cross-site"), 401, "", ""},
		{"WebSocket, cross-site with the app's Origin", with(ws, "Origin", "https://app.example", "Sec-Fetch-Site", "cross-site"), 401, "", ""},
		{"WebSocket from the app's page", with(ws, "Origin", "https://app.example", "Sec-Fetch-Site", "same-origin", "Sec-Fetch-Mode", "websocket"), 200, "lee@pbs", "lee@pbs"},
		{"WebSocket from the app's page, no Fetch Metadata", with(ws, "Origin", "https://app.example"), 200, "lee@pbs", "lee@pbs"},
		{"WebSocket, token", with(fwd, "Authorization", p.token, "Sec-Websocket-Key", "dGhlIHNhbXBsZSBub25jZQ==", "Origin", "https://evil.example"), 200, "lee@pbs", "lee@pbs!ci"},
	} {
		for _, m := range []string{"GET", "POST"} { // the method of the auth call itself does not matter
			r := fetch(t, p.client, m, auth, tt.h, "")
			if r.status != tt.want || r.header.Get("X-Gatehouse-User") != tt.user || r.header.Get("X-Gatehouse-Authid") != tt.authid {
				t.Errorf("%s %s = %d user %q authid %q; want %d %q %q", m, tt.name, r.status,
					r.header.Get("X-Gatehouse-User"), r.header.Get("X-Gatehouse-Authid"), tt.want, tt.user, tt.authid)
			}
			if r.status == 401 && r.body != "" {
				t.Errorf("%s %s: 401 with body %q; want none", m, tt.name, r.body)
			}
		}
	}
	r := fetch(t, p.client, "GET", auth, with(fwd, "Accept", "text/html"), "")
	if login := r.header.Get("X-Gatehouse-Login"); r.status != 401 || login != "/gatehouse/login?next=%2Fapp%2Fpage%3Fx%3D1%26y%3D2" {
		t.Errorf("browser navigation without credentials = %d X-Gatehouse-Login %q; want 401 with the login URL", r.status, login)
	}
	if r := fetch(t, p.client, "GET", auth, fwd, ""); r.status != 401 || r.header.Get("X-Gatehouse-Login") != "" {
		t.Errorf("API call without credentials = %d X-Gatehouse-Login %q; want 401 without", r.status, r.header.Get("X-Gatehouse-Login"))
	}
	if p.app.hits.Load() != 0 {
		t.Errorf("forward-auth calls reached the app %d times", p.app.hits.Load())
	}
}

// TestForwardAuthRepeated: a forward-auth request carrying one of the headers that describe the
// original request more than once (the front proxy's and a client's, or two a client sent) is
// refused with 400 and no body before its credentials are looked at, with one line in proxyd's
// log; Header.Get would have believed whichever came first.
func TestForwardAuthRepeated(t *testing.T) {
	p := startProxied(t)
	auth := p.origin + "/gatehouse/auth"
	fwd := http.Header{"X-Forwarded-Method": {"GET"}, "X-Original-Method": {"GET"}, "X-Forwarded-Uri": {"/app/page"},
		"X-Original-Uri": {"/app/page"}, "X-Forwarded-Host": {"app.example"}, "X-Forwarded-Proto": {"https"},
		"Cookie": {"__Host-PBSAuthCookie=" + p.httpTk}}
	if r := fetch(t, p.client, "GET", auth, fwd, ""); r.status != 200 {
		t.Fatalf("every header once = %d; want 200", r.status)
	}
	fails := p.authFails(t)
	cases := []struct{ name, value string }{
		{"X-Forwarded-Method", "POST"}, // a POST the front proxy announced, plus the client's GET first
		{"X-Forwarded-Method", "GET"},  // even the same value twice
		{"X-Original-Method", "POST"},
		{"X-Forwarded-Uri", "/other"},
		{"X-Original-Uri", "/other"},
		{"X-Forwarded-Host", "evil.example"},
		{"X-Forwarded-Proto", "http"},
	}
	for i, tt := range cases {
		h := with(fwd, tt.name, tt.value, "X-Forwarded-For", fmt.Sprintf("192.0.2.%d", i+1))
		r := fetch(t, p.client, "GET", auth, h, "")
		if r.status != http.StatusBadRequest || r.body != "" || r.header.Get("X-Gatehouse-User") != "" {
			t.Errorf("%s twice (%q) = %d %q user %q; want 400, no body, no user", tt.name, h.Values(tt.name), r.status, r.body, r.header.Get("X-Gatehouse-User"))
		}
	}
	// Each refusal is one line naming the header and the client; the lines are written before
	// the answers, so once the last is there all are.
	log := p.logs["proxyd"].waitFor(t, fmt.Sprintf("rhost=192.0.2.%d", len(cases)))
	for i, tt := range cases {
		var lines []string
		for _, l := range strings.Split(log, "\n") {
			if strings.Contains(l, fmt.Sprintf("rhost=192.0.2.%d", i+1)) {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 || !strings.Contains(lines[0], "refusing forward-auth request") || !strings.Contains(lines[0], "headers="+tt.name) {
			t.Errorf("%s twice: proxyd logged %q; want one line refusing it, naming the header", tt.name, lines)
		}
	}
	if n := p.authFails(t) - fails; n != 0 {
		t.Errorf("refused forward-auth requests wrote %d auth.log lines; want 0 (no credential was checked)", n)
	}
}

// TestHostCookieOnly: the legacy PBSAuthCookie, which a sibling subdomain can set for the
// parent domain, is ignored by the reverse proxy and forward-auth unless --host-cookie-only
// says otherwise; /api2 always takes it (PBS clients set it from script).
func TestHostCookieOnly(t *testing.T) {
	legacyOnly := func(p *proxied, h http.Header) http.Header {
		return with(h, "Cookie", "PBSAuthCookie="+p.lee.ticket)
	}
	fwd := http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/app/page"}, "X-Forwarded-Host": {"app.example"}}
	type want struct{ upstream, browser, auth, api, account, session int }
	for _, tt := range []struct {
		name  string
		flags []string
		want  want
	}{
		{"default", nil, want{401, 303, 401, 200, 200, 200}},
		{"legacy everywhere", []string{"--host-cookie-only="}, want{200, 200, 200, 200, 200, 200}},
		{"pages too", []string{"--host-cookie-only=upstream, auth,pages"}, want{401, 303, 401, 200, 303, 401}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxied(t, tt.flags...)
			before := p.app.hits.Load()
			got := want{
				upstream: fetch(t, p.client, "GET", p.origin+"/app/page", legacyOnly(p, nil), "").status,
				auth:     fetch(t, p.client, "GET", p.origin+"/gatehouse/auth", legacyOnly(p, fwd), "").status,
				api:      fetch(t, p.client, "GET", p.url+"/version", legacyOnly(p, nil), "").status,
				account:  fetch(t, p.client, "GET", p.origin+"/gatehouse/account", legacyOnly(p, p.browser), "").status,
				session:  fetch(t, p.client, "GET", p.origin+"/gatehouse/session", legacyOnly(p, nil), "").status,
			}
			br := fetch(t, p.client, "GET", p.origin+"/app/page", legacyOnly(p, p.browser), "")
			got.browser = br.status
			if got != tt.want {
				t.Errorf("legacy cookie alone: %+v; want %+v", got, tt.want)
			}
			wantHits := int64(0) // the API client's GET and the browser's
			if tt.want.upstream == 200 {
				wantHits = 2
			}
			if p.app.hits.Load()-before != wantHits {
				t.Errorf("%d requests with the legacy cookie alone reached the app; want %d", p.app.hits.Load()-before, wantHits)
			}
			// Refused, a browser goes to the login page as one without a cookie: no "expired",
			// and the legacy cookie (perhaps another site's) is left alone.
			if br.status == http.StatusSeeOther {
				if loc := br.header.Get("Location"); loc != "/gatehouse/login?next=%2Fapp%2Fpage" || br.header.Get("Set-Cookie") != "" {
					t.Errorf("browser with the legacy cookie alone: Location %q Set-Cookie %q; want the login page, no cookie change", loc, br.header.Get("Set-Cookie"))
				}
			}
			// The HttpOnly cookie works everywhere.
			if r := fetch(t, p.client, "GET", p.origin+"/app/page", http.Header{"Cookie": {"__Host-PBSAuthCookie=" + p.httpTk}}, ""); r.status != 200 {
				t.Errorf("the __Host- cookie at the upstream = %d; want 200", r.status)
			}
		})
	}
}

// rawRequest writes req, a whole HTTP/1.1 request, on conn and reads the answer's head; the
// reader holds what follows (the body, or an upgraded connection's bytes). conn is closed at
// cleanup.
func rawRequest(t *testing.T, conn net.Conn, req string) (*http.Response, *bufio.Reader) {
	t.Helper()
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp, br
}

// websocketThrough opens WebSockets to the app's /ws through dial (proxyd, or a front proxy
// serving host) with the HttpOnly ticket and a forged identity. A handshake a cross-site page
// could make is refused before the app; one from origin's own page reaches the app as lee@pbs
// (101) and echoes.
func (p *proxied) websocketThrough(t *testing.T, dial func() net.Conn, host, origin string) {
	t.Helper()
	handshake := func(h http.Header) (*http.Response, *bufio.Reader, net.Conn) {
		t.Helper()
		var b strings.Builder
		fmt.Fprintf(&b, "GET /ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"+
			"Cookie: __Host-PBSAuthCookie=%s\r\nX-Gatehouse-User: root@pam\r\n", host, p.httpTk)
		h.Write(&b)
		b.WriteString("\r\n")
		conn := dial()
		resp, br := rawRequest(t, conn, b.String())
		return resp, br, conn
	}
	before := p.app.hits.Load()
	for _, tt := range []struct {
		name string
		h    http.Header
	}{
		{"another site's page", http.Header{"Origin": {"https://evil.example"}, "Sec-Fetch-Site": {"cross-site"}, "Sec-Fetch-Mode": {"websocket"}}},
		{"another site, no Fetch Metadata", http.Header{"Origin": {"https://evil.example"}}},
		{"a sibling site", http.Header{"Origin": {"https://evil.example"}, "Sec-Fetch-Site": {"same-site"}, "Sec-Fetch-Mode": {"websocket"}}},
		{"cross-site, the app's Origin", http.Header{"Origin": {origin}, "Sec-Fetch-Site": {"cross-site"}}},
		{"no Origin", http.Header{}},
	} {
		if resp, _, _ := handshake(tt.h); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("WebSocket handshake, %s = %d; want 401", tt.name, resp.StatusCode)
		}
	}
	if n := p.app.hits.Load() - before; n != 0 {
		t.Errorf("%d cross-site WebSocket handshakes reached the app; want 0", n)
	}
	resp, br, conn := handshake(http.Header{"Origin": {origin}, "Sec-Fetch-Site": {"same-origin"}, "Sec-Fetch-Mode": {"websocket"}})
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("X-Seen-User") != "lee@pbs" {
		t.Fatalf("WebSocket handshake from %s = %d, app saw user %q; want 101 and lee@pbs", origin, resp.StatusCode, resp.Header.Get("X-Seen-User"))
	}
	fmt.Fprint(conn, "ping\n")
	if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
		t.Errorf("echo through the upgraded connection = %q, %v", line, err)
	}
}

// underscoreHeaders adds to h what a CGI-style application (WSGI, PHP, Rack) reads as
// X-Gatehouse-User, X-Gatehouse-Authid and X-Forwarded-For: the names with '_' for '-'.
func underscoreHeaders(h http.Header) http.Header {
	out := h.Clone()
	for _, k := range []string{"X_Gatehouse_User", "X-Gatehouse_User", "X_Gatehouse-User", "X_Gatehouse_Authid"} {
		out[k] = []string{"root@pam"} // as sent: net/http's client writes the name as it is
	}
	out["X_Forwarded_For"] = []string{"198.51.100.1"}
	return out
}

// oneIdentity fails the test unless a CGI-style application reads exactly the identity
// proxyd vouched for from what the app received, and no header name with '_' arrived.
func oneIdentity(t *testing.T, what string, s seen, user, authid string) {
	t.Helper()
	if u, a := s.WSGI["HTTP_X_GATEHOUSE_USER"], s.WSGI["HTTP_X_GATEHOUSE_AUTHID"]; u != user || a != authid {
		t.Errorf("%s: a WSGI application reads HTTP_X_GATEHOUSE_USER %q, HTTP_X_GATEHOUSE_AUTHID %q; want %q, %q", what, u, a, user, authid)
	}
	for k := range s.Header {
		if strings.Contains(k, "_") {
			t.Errorf("%s: the app got header %s: %q; want no name with '_'", what, k, s.Header[k])
		}
	}
}
