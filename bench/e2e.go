package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gatehouse/authority"
	"gatehouse/gateway"
	"gatehouse/layout"
	"gatehouse/shmem"
)

// stack is apid and proxyd running in this process (each Main in its own goroutine, on temp
// config and run dirs), with a pbs user, a ticket for it and one of its API tokens.
type stack struct {
	dir     string
	cancel  context.CancelFunc
	daemons []*daemon
	url     string       // https://127.0.0.1:port/api2/json
	client  *http.Client // the one keep-alive HTTPS client every row shares
	apid    *http.Client // apid's unix socket, as the local administrator (root@pam)
	gen     *shmem.Cache // the generation file, opened as a config writer would
	ticket  string       // PBSAuthCookie value
	token   string       // Authorization header value: PBSAPIToken=<id>:<secret>
}

const (
	e2eUser     = "bench@pbs"
	e2ePassword = "bench-pass-1"
	e2eToken    = "load"
)

// startStack starts apid, then proxyd on 127.0.0.1:0, and makes the user, ticket and token.
// conns is how many keep-alive connections the client keeps open (the rows' goroutines).
func startStack(conns int) (_ *stack, err error) {
	dir, err := os.MkdirTemp("", "gatehouse-bench-e2e-")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &stack{dir: dir, cancel: cancel}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.close())
		}
	}()
	d := layout.Dirs{Config: filepath.Join(dir, "etc"), Run: filepath.Join(dir, "run")}
	self := fmt.Sprint(os.Getuid())
	if _, err := s.start(ctx, "apid", authority.Main,
		"--config-dir", d.Config, "--run-dir", d.Run, "--proxy-user", self); err != nil {
		return nil, err
	}
	addr, err := s.start(ctx, "proxyd", gateway.Main,
		"--config-dir", d.Config, "--run-dir", d.Run, "--listen", "127.0.0.1:0",
		"--auth-log", filepath.Join(dir, "auth.log"), "--fail-delay", "-1s", "--metrics-listen", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.url = "https://" + addr + "/api2/json"
	pem, err := os.ReadFile(d.ProxyCert())
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", d.ProxyCert())
	}
	// HTTP/1.1 (a custom TLSClientConfig turns off the transport's HTTP/2), one keep-alive
	// connection per goroutine.
	s.client = &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool},
		MaxIdleConnsPerHost: conns,
	}}
	sock := d.Socket()
	s.apid = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	if s.gen, err = shmem.Open(d.Generations()); err != nil {
		return nil, err
	}
	if err := s.setUpUser(); err != nil {
		return nil, err
	}
	return s, nil
}

// setUpUser creates the user over apid's socket, logs in through proxyd and creates a token
// with the ticket and CSRF token.
func (s *stack) setUpUser() error {
	if _, err := call(s.apid, "POST", "http://apid/api2/json/access/users", url.Values{"userid": {e2eUser}, "password": {e2ePassword}}, nil); err != nil {
		return fmt.Errorf("creating %s: %w", e2eUser, err)
	}
	data, err := call(s.client, "POST", s.url+"/access/ticket", url.Values{"username": {e2eUser}, "password": {e2ePassword}}, nil)
	if err != nil {
		return fmt.Errorf("logging in as %s: %w", e2eUser, err)
	}
	var login struct{ Ticket, CSRFPreventionToken string }
	if err := json.Unmarshal(data, &login); err != nil || login.Ticket == "" || login.CSRFPreventionToken == "" {
		return fmt.Errorf("logging in as %s: no ticket in the answer", e2eUser)
	}
	s.ticket = login.Ticket
	h := http.Header{"Cookie": {"PBSAuthCookie=" + s.ticket}, "CSRFPreventionToken": {login.CSRFPreventionToken}}
	if data, err = call(s.client, "POST", s.url+"/access/users/"+e2eUser+"/token/"+e2eToken, url.Values{}, h); err != nil {
		return fmt.Errorf("creating a token: %w", err)
	}
	var tok struct{ Tokenid, Value string }
	if err := json.Unmarshal(data, &tok); err != nil || tok.Tokenid == "" || tok.Value == "" {
		return errors.New("creating a token: no tokenid or value in the answer")
	}
	s.token = "PBSAPIToken=" + tok.Tokenid + ":" + tok.Value
	return nil
}

// call makes one form-encoded request and returns the "data" of a 200 answer.
func call(c *http.Client, method, u string, form url.Values, h http.Header) (json.RawMessage, error) {
	req, err := http.NewRequest(method, u, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s = %s", method, req.URL.Path, resp.Status)
	}
	var out struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("%s %s: answer is not JSON: %w", method, req.URL.Path, err)
	}
	return out.Data, nil
}

// close stops both daemons, waits for them to return and removes the temp dir. The daemons'
// logs are part of the error when one failed.
func (s *stack) close() error {
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
	if s.apid != nil {
		s.apid.CloseIdleConnections()
	}
	s.cancel()
	var errs []error
	for _, d := range s.daemons {
		if err := <-d.done; err != nil {
			errs = append(errs, fmt.Errorf("%s: %w\n%s", d.name, err, d.log.String()))
		}
	}
	if s.gen != nil {
		s.gen.Close()
	}
	errs = append(errs, os.RemoveAll(s.dir))
	return errors.Join(errs...)
}

// daemon is one Main running in a goroutine.
type daemon struct {
	name string
	log  logWriter
	done chan error // Main's result; buffered
}

// start runs main in a goroutine and returns the address it logs with msg=listening, or an
// error with its log if it returns first.
func (s *stack) start(ctx context.Context, name string, main func(context.Context, []string, io.Writer) error, args ...string) (string, error) {
	d := &daemon{name: name, done: make(chan error, 1), log: logWriter{addr: make(chan string, 1)}}
	s.daemons = append(s.daemons, d)
	go func() { d.done <- main(ctx, args, &d.log) }()
	select {
	case addr := <-d.log.addr:
		return addr, nil
	case err := <-d.done:
		d.done <- nil // reported here, not again by close
		return "", fmt.Errorf("%s returned before listening: %v\n%s", name, err, d.log.String())
	}
}

// logWriter keeps a daemon's log and sends the addr= of its first "msg=listening" line.
type logWriter struct {
	addr chan string // buffered, one address

	mu    sync.Mutex
	buf   bytes.Buffer
	lines int // complete lines already scanned
	found bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.found {
		return len(p), nil
	}
	lines := strings.Split(w.buf.String(), "\n")
	for _, line := range lines[w.lines : len(lines)-1] {
		if !strings.Contains(line, "msg=listening") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if a, ok := strings.CutPrefix(f, "addr="); ok {
				w.found = true
				w.addr <- a
				return len(p), nil
			}
		}
	}
	w.lines = len(lines) - 1
	return len(p), nil
}

func (w *logWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// An end-to-end case: one kind of request through proxyd, sent by GOMAXPROCS goroutines
// (b.RunParallel) over the stack's one client.
type e2eCase struct {
	name     string
	baseline bool // the no-auth row the percentages divide
	target   bool // the cached-token row the target judges
	run      func(b *testing.B, s *stack)
}

func e2eCases() []e2eCase {
	return []e2eCase{
		{name: "no auth (GET /ping)", baseline: true, run: func(b *testing.B, s *stack) { s.hammer(b, "/ping", "", "", nil) }},
		{name: "ticket cookie (GET /version)", run: func(b *testing.B, s *stack) {
			s.hammer(b, "/version", "Cookie", "PBSAuthCookie="+s.ticket, nil)
		}},
		{name: "API token, cached (GET /version)", target: true, run: func(b *testing.B, s *stack) {
			s.hammer(b, "/version", "Authorization", s.token, nil)
		}},
		{name: "API token, uncached (generation bumped each request)", run: func(b *testing.B, s *stack) {
			s.hammer(b, "/version", "Authorization", s.token, func() { s.gen.Bump(shmem.TokenShadow) })
		}},
	}
}

// hammer sends GET path with one header from GOMAXPROCS goroutines, each reusing its own
// request, calling before (if set) ahead of every request; every answer must be 200.
func (s *stack) hammer(b *testing.B, path, header, value string, before func()) {
	b.RunParallel(func(pb *testing.PB) {
		req, err := http.NewRequest("GET", s.url+path, nil)
		if err != nil {
			b.Error(err)
			return
		}
		if header != "" {
			req.Header.Set(header, value)
		}
		for pb.Next() {
			if before != nil {
				before()
			}
			resp, err := s.client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				b.Errorf("GET %s = %s, %v; want 200", path, resp.Status, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
