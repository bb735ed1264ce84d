package e2e

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The attacks of issue 17 on proxyd's public port, each from its own loopback address (Linux
// routes all of 127/8 to lo; 127.0.0.1, the tests' own address, is a trusted proxy of the
// stack's proxyd and so exempt from the per-client cap).

// shortTimeout is every proxyd timeout in TestSlowClients: long enough for a login on a
// loaded machine, short enough to wait for a few times.
const shortTimeout = 3 * time.Second

// closeWait is how long a client waits for proxyd to close a connection before it counts as
// left open: several times shortTimeout, well below the attacks' 40 s.
const closeWait = 20 * time.Second

// dialFrom opens a TCP connection to addr from the loopback address from.
func dialFrom(from, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	return d.Dial("tcp", addr)
}

// tlsFrom opens a TLS connection to the stack's proxyd from the loopback address from,
// offering the ALPN protocols protos, and completes the handshake.
func (st *stack) tlsFrom(from string, protos ...string) (*tls.Conn, error) {
	raw, err := dialFrom(from, st.addr())
	if err != nil {
		return nil, err
	}
	cfg := st.http.Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = protos
	cfg.ServerName, _, _ = net.SplitHostPort(st.addr())
	c := tls.Client(raw, cfg)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// addr is proxyd's host:port.
func (st *stack) addr() string {
	return strings.TrimSuffix(strings.TrimPrefix(st.url, "https://"), "/api2/json")
}

// closedByServer reads c until the server closes it and returns nil, or returns an error when
// closeWait passes first: the connection was left open.
func closedByServer(c net.Conn) error {
	c.SetReadDeadline(time.Now().Add(closeWait))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	switch {
	case err == nil, errors.Is(err, syscall.ECONNRESET):
		return nil
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("still open after %v", closeWait)
	}
	return nil // any other end of the connection is the server's doing
}

// h2Preface is an HTTP/2 client's connection preface and an empty SETTINGS frame: after it a
// connection is an open, idle HTTP/2 connection.
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\x00\x00\x00\x04\x00\x00\x00\x00\x00"

// witness opens an idle HTTP/1.1 TLS connection, which proxyd's short timeouts close, and
// returns a channel that is closed when they have: everything proxyd's timeouts would end that
// was open when witness was called has outlived them then.
func (st *stack) witness(t *testing.T) <-chan struct{} {
	t.Helper()
	c, err := st.tlsFrom("127.0.0.9", "http/1.1")
	if err != nil {
		t.Fatalf("opening a witness connection: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer c.Close()
		if err := closedByServer(c); err != nil {
			t.Errorf("the witness connection (no request): %v", err)
		}
	}()
	return done
}

// TestSlowClients: proxyd's read, write and idle timeouts (3 s here) close idle and slow
// connections that have not authenticated, while an authenticated stream, upload and WebSocket
// to the upstream application outlive them.
func TestSlowClients(t *testing.T) {
	d := shortTimeout.String()
	p := startProxied(t, "--read-header-timeout", d, "--read-timeout", d, "--write-timeout", d, "--idle-timeout", d)
	host := p.addr()
	t.Run("idle", func(t *testing.T) {
		t.Parallel()
		cases := []struct {
			name string
			open func() (net.Conn, error)
		}{
			{"TCP, no TLS handshake", func() (net.Conn, error) { return dialFrom("127.0.0.2", host) }},
			{"TLS, no request", func() (net.Conn, error) { return p.tlsFrom("127.0.0.2", "http/1.1") }},
			{"HTTP/2, no request", func() (net.Conn, error) {
				c, err := p.tlsFrom("127.0.0.2", "h2")
				if err == nil {
					if got := c.ConnectionState().NegotiatedProtocol; got != "h2" {
						return nil, fmt.Errorf("negotiated %q; want h2", got)
					}
					_, err = io.WriteString(c, h2Preface)
				}
				return c, err
			}},
			{"HTTP/1.1 keep-alive after a request", func() (net.Conn, error) {
				c, err := p.tlsFrom("127.0.0.2", "http/1.1")
				if err != nil {
					return nil, err
				}
				fmt.Fprintf(c, "GET /api2/json/ping HTTP/1.1\r\nHost: %s\r\n\r\n", host)
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					return nil, err
				}
				if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != 200 || resp.Close {
					return nil, fmt.Errorf("GET /ping = %d, close %v, %v; want a kept-alive 200", resp.StatusCode, resp.Close, err)
				}
				return c, nil
			}},
			{"header never finished", func() (net.Conn, error) {
				c, err := p.tlsFrom("127.0.0.2", "http/1.1")
				if err == nil {
					_, err = fmt.Fprintf(c, "GET /api2/json/ping HTTP/1.1\r\nHost: %s\r\nX-Slow: a", host)
				}
				return c, err
			}},
		}
		for _, tt := range cases {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				c, err := tt.open()
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if err := closedByServer(c); err != nil {
					t.Errorf("%s: %v; want closed by proxyd after %v", tt.name, err, shortTimeout)
				}
			})
		}
	})
	t.Run("slow body", func(t *testing.T) {
		t.Parallel()
		for _, path := range []string{"/api2/json/access/ticket", "/app/upload"} {
			c, err := p.tlsFrom("127.0.0.3", "http/1.1")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// 10 of the 1000 bytes announced, and no more.
			fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\n"+
				"Content-Length: 1000\r\n\r\nusername=a", path, host)
			if err := closedByServer(c); err != nil {
				t.Errorf("POST %s without credentials, body stalled: %v; want closed by proxyd after %v", path, err, shortTimeout)
			}
		}
	})
	t.Run("authenticated stream", func(t *testing.T) {
		t.Parallel()
		req, _ := http.NewRequest("GET", p.origin+"/stream", nil)
		req.Header.Set("Authorization", p.token)
		resp, err := p.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		if line, err := br.ReadString('\n'); err != nil || line != "first\n" {
			t.Fatalf("first streamed line = %q, %v", line, err)
		}
		<-p.witness(t)
		close(p.app.release)
		if rest, err := io.ReadAll(br); err != nil || string(rest) != "second\n" {
			t.Errorf("rest of the stream after the timeouts = %q, %v; want \"second\\n\"", rest, err)
		}
	})
	t.Run("authenticated upload", func(t *testing.T) {
		t.Parallel()
		c, err := p.tlsFrom("127.0.0.4", "http/1.1")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /app/upload HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nContent-Type: text/plain\r\n"+
			"Content-Length: 10\r\n\r\nfirst", host, p.token)
		<-p.witness(t)
		io.WriteString(c, "-last")
		c.SetReadDeadline(time.Now().Add(closeWait))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("upload outliving the timeouts: %v; want the app's answer", err)
		}
		body, _ := io.ReadAll(resp.Body)
		if s := (reply{resp.StatusCode, resp.Header, string(body)}).seen(t, "slow upload"); s.Body != "first-last" {
			t.Errorf("app received %q; want \"first-last\"", s.Body)
		}
	})
	t.Run("authenticated WebSocket", func(t *testing.T) {
		t.Parallel()
		c, err := p.tlsFrom("127.0.0.5", "http/1.1")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nAuthorization: %s\r\n\r\n", host, p.token)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade = %v, %v; want 101", resp, err)
		}
		<-p.witness(t)
		c.SetDeadline(time.Now().Add(closeWait))
		fmt.Fprint(c, "ping\n")
		if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
			t.Errorf("echo through the WebSocket after the timeouts = %q, %v; want \"ping\\n\"", line, err)
		}
	})
}

// TestHeaderLimit: proxyd's default --max-header-bytes (16 KiB) takes a ticket and 12 KiB of an
// application's cookies, and answers 431 to a 21 KiB header (net/http allows 4 KiB above the
// limit).
func TestHeaderLimit(t *testing.T) {
	p := startProxied(t)
	var cookies []string
	for i := range 12 {
		cookies = append(cookies, fmt.Sprintf("app%d=%s", i, strings.Repeat("v", 1000)))
	}
	appCookies := strings.Join(cookies, "; ")
	h := http.Header{"Cookie": {"__Host-PBSAuthCookie=" + p.httpTk + "; " + appCookies}}
	s := fetch(t, p.client, "GET", p.origin+"/app/page", h, "").seen(t, "a ticket and 12 KiB of cookies")
	if s.Cookie != appCookies {
		t.Errorf("app got %d bytes of cookies; want the %d sent besides the ticket", len(s.Cookie), len(appCookies))
	}
	for _, path := range []string{"/app/page", "/api2/json/version"} {
		big := with(h, "X-Big", strings.Repeat("b", 21<<10))
		if r := fetch(t, p.client, "GET", p.origin+path, big, ""); r.status != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("GET %s with a 21 KiB header = %d; want 431", path, r.status)
		}
	}
}

// TestConnectionCaps: proxyd with --max-conns 6 --max-conns-per-client 2 closes a client's
// third connection at once while serving others, exempts its trusted proxy (127.0.0.1) from
// the per-client cap but not from the global one, frees a slot when a connection closes,
// counts refusals in /metrics and logs them at most once per 10 s.
func TestConnectionCaps(t *testing.T) {
	st := start(t, options{proxydArgs: []string{"--max-conns", "6", "--max-conns-per-client", "2"}})
	open := func(from string) *tls.Conn {
		t.Helper()
		c, err := st.tlsFrom(from, "http/1.1")
		if err != nil {
			t.Fatalf("connection from %s: %v; want it served", from, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	refused := func(from string) {
		t.Helper()
		if c, err := st.tlsFrom(from, "http/1.1"); err == nil {
			c.Close()
			t.Fatalf("connection from %s: handshake done; want it closed at once", from)
		}
	}
	ping := func(c *tls.Conn) {
		t.Helper()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET /api2/json/ping HTTP/1.1\r\nHost: %s\r\n\r\n", st.addr())
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET /ping from %s = %v, %v; want 200", c.LocalAddr(), resp, err)
		}
		resp.Body.Close()
	}
	attacker := []*tls.Conn{open("127.0.0.2"), open("127.0.0.2")}
	refused("127.0.0.2")
	ping(open("127.0.0.3")) // another client is served meanwhile
	for _, c := range attacker {
		ping(c)
	}
	for range 3 { // the trusted proxy: over the per-client cap
		ping(open("127.0.0.1"))
	}
	refused("127.0.0.4") // 6 open: the global cap
	refused("127.0.0.1")
	m := st.scrape(t)
	for _, w := range []struct {
		labels []string
		want   float64
	}{{[]string{"reason", "per_client"}, 1}, {[]string{"reason", "total"}, 2}} {
		if got := m.get("gatehouse_connections_refused_total", w.labels...); got != w.want {
			t.Errorf("gatehouse_connections_refused_total%v = %v; want %v", w.labels, got, w.want)
		}
	}
	if got := m.get("gatehouse_connections_open"); got != 6 {
		t.Errorf("gatehouse_connections_open = %v; want 6", got)
	}
	// A closed connection frees its slot: once proxyd has seen the close, the attacker's
	// address may connect again, and only once.
	attacker[0].Close()
	deadline := time.Now().Add(10 * time.Second)
	for st.scrape(t).get("gatehouse_connections_open") != 5 {
		if time.Now().After(deadline) {
			t.Fatal("gatehouse_connections_open still not 5 10 s after a client closed its connection")
		}
		time.Sleep(10 * time.Millisecond) // polling proxyd's metrics, bounded by the deadline
	}
	ping(open("127.0.0.2"))
	for range 20 {
		refused("127.0.0.2")
	}
	if got := st.scrape(t).get("gatehouse_connections_refused_total", "reason", "per_client"); got != 21 {
		t.Errorf("gatehouse_connections_refused_total{reason=per_client} = %v; want 21", got)
	}
	// 23 refusals in a few seconds: the first is logged at once, the rest at most once per 10 s.
	log := st.logs["proxyd"].waitFor(t, `msg="connections refused" reason=per_client client=127.0.0.2 refused=1 max=6 per_client=2`)
	if n := strings.Count(log, `msg="connections refused"`); n > 2 {
		t.Errorf("23 refusals logged %d lines; want 1, or 2 on a machine slow enough to take 10 s:\n%s", n, log)
	}
}

// TestTLSProfile: proxyd speaks Mozilla's intermediate profile. A Go client and the real
// openssl s_client offering only CBC-SHA1 suites at TLS 1.2, or TLS 1.1, are refused; AEAD
// suites at TLS 1.2, and TLS 1.3, are accepted.
func TestTLSProfile(t *testing.T) {
	st := start(t, options{})
	base := st.http.Transport.(*http.Transport).TLSClientConfig
	for _, tt := range []struct {
		name     string
		min, max uint16
		suites   []uint16
		ok       bool
	}{
		{"TLS 1.2, ECDHE-ECDSA AES-128-CBC-SHA", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}, false},
		{"TLS 1.2, every CBC suite", tls.VersionTLS12, tls.VersionTLS12, []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
			tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA,
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256, tls.TLS_RSA_WITH_AES_128_CBC_SHA256}, false},
		{"TLS 1.1", tls.VersionTLS11, tls.VersionTLS11, nil, false},
		{"TLS 1.2, ECDHE-ECDSA AES-128-GCM", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, true},
		{"TLS 1.2, ECDHE-ECDSA ChaCha20-Poly1305", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}, true},
		{"TLS 1.3", tls.VersionTLS13, tls.VersionTLS13, nil, true},
	} {
		cfg := base.Clone()
		cfg.MinVersion, cfg.MaxVersion, cfg.CipherSuites = tt.min, tt.max, tt.suites
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", st.addr(), cfg)
		if err == nil {
			c.Close()
		}
		if (err == nil) != tt.ok {
			t.Errorf("Go client, %s: handshake error %v; want ok %v", tt.name, err, tt.ok)
		}
	}
	openssl := requireTool(t, "openssl", "openssl")
	for _, tt := range []struct {
		args []string
		ok   bool
	}{
		// @SECLEVEL=0: openssl itself would offer these; only proxyd may refuse them.
		{[]string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0"}, false},
		{[]string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256:AES128-SHA:@SECLEVEL=0"}, false},
		{[]string{"-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"}, false},
		{[]string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"}, true},
		{[]string{"-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"}, true},
		{[]string{"-tls1_3"}, true},
	} {
		cmd := exec.Command(openssl, append([]string{"s_client", "-connect", st.addr(), "-servername", "localhost", "-brief"}, tt.args...)...)
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		if (err == nil) != tt.ok || (tt.ok && !strings.Contains(string(out), "CONNECTION ESTABLISHED")) {
			t.Errorf("openssl s_client %s: %v; want ok %v:\n%s", strings.Join(tt.args, " "), err, tt.ok, out)
		}
	}
}

// h2From is an HTTP/2 client whose connections come from the loopback address from.
func (st *stack) h2From(t *testing.T, from string) *http.Client {
	t.Helper()
	cfg := st.http.Transport.(*http.Transport).TLSClientConfig.Clone()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true, DialContext: d.DialContext, MaxConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// TestRequestCaps: proxyd with --max-requests 4 --max-requests-per-client 2 answers a client's
// third unauthenticated request in flight 503 at once, over one HTTP/2 connection, while other
// clients are served; authenticated streams to the upstream application hold no slot; the
// trusted proxy (127.0.0.1) is held to the global cap only; a finished request frees its slot.
func TestRequestCaps(t *testing.T) {
	p := startProxied(t, "--max-requests", "4", "--max-requests-per-client", "2")
	c := p.h2From(t, "127.0.0.2")
	// Three authenticated streams, open until the end: out of the count once authenticated.
	var streams []io.ReadCloser
	for range 3 {
		req, _ := http.NewRequest("GET", p.origin+"/stream", nil)
		req.Header.Set("Authorization", p.token)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
			t.Fatalf("authenticated stream = %s %s; want HTTP/2 200", resp.Proto, resp.Status)
		}
		streams = append(streams, resp.Body)
	}
	defer func() {
		close(p.app.release)
		for _, b := range streams {
			io.Copy(io.Discard, b)
			b.Close()
		}
	}()
	// Logins whose bodies never finish, until their writer is closed.
	type held struct {
		w    *io.PipeWriter
		resp chan *http.Response
	}
	slow := func(c *http.Client) held {
		t.Helper()
		r, w := io.Pipe()
		req, _ := http.NewRequest("POST", p.url+"/access/ticket", r)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		h := held{w, make(chan *http.Response, 1)}
		go func() {
			resp, err := c.Do(req)
			if err != nil {
				t.Errorf("slow login: %v", err)
				close(h.resp)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			h.resp <- resp
		}()
		io.WriteString(w, "username=lee@pbs") // proxyd has the request once this is read
		t.Cleanup(func() { w.Close() })
		return h
	}
	status := func(c *http.Client, path string, h http.Header) int {
		t.Helper()
		req, _ := http.NewRequest("GET", p.url+path, nil)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// inFlight waits until proxyd counts n requests in flight (the handlers take their slots
	// on their own goroutines, after the requests were sent).
	inFlight := func(n float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for p.scrape(t).get("gatehouse_requests_in_flight") != n {
			if time.Now().After(deadline) {
				t.Fatalf("gatehouse_requests_in_flight is not %v after 10 s", n)
			}
			time.Sleep(10 * time.Millisecond) // polling proxyd's metrics, bounded by the deadline
		}
	}
	first := slow(c)
	inFlight(1)
	slow(c)
	inFlight(2)
	if got := status(c, "/ping", nil); got != http.StatusServiceUnavailable {
		t.Errorf("a third request in flight from 127.0.0.2 = %d; want 503", got)
	}
	if got := status(p.h2From(t, "127.0.0.3"), "/version", http.Header{"Authorization": {p.token}}); got != 200 {
		t.Errorf("another client meanwhile = %d; want 200", got)
	}
	trusted := p.h2From(t, "127.0.0.1")
	slow(trusted)
	slow(trusted) // 4 in flight: the global cap; the trusted proxy is over the per-client one
	inFlight(4)
	if got := status(trusted, "/ping", nil); got != http.StatusServiceUnavailable {
		t.Errorf("a fifth request in flight, from the trusted proxy = %d; want 503", got)
	}
	m := p.scrape(t)
	for _, w := range []struct {
		labels []string
		want   float64
	}{{[]string{"reason", "per_client"}, 1}, {[]string{"reason", "total"}, 1}} {
		if got := m.get("gatehouse_requests_refused_total", w.labels...); got != w.want {
			t.Errorf("gatehouse_requests_refused_total%v = %v; want %v", w.labels, got, w.want)
		}
	}
	if got := m.get("gatehouse_requests_in_flight"); got != 4 {
		t.Errorf("gatehouse_requests_in_flight = %v; want 4", got)
	}
	// A finished login (here a 400: the body lacks the password) frees its slot.
	first.w.Close()
	if resp := <-first.resp; resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("the first slow login, ended = %v; want 400", resp)
	}
	inFlight(3)
	if got := status(c, "/ping", nil); got != 200 {
		t.Errorf("127.0.0.2 after one of its requests ended = %d; want 200", got)
	}
	p.logs["proxyd"].waitFor(t, `msg="requests refused" reason=per_client client=127.0.0.2 refused=1 max=4 per_client=2`)
}
