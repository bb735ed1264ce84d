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
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gatehouse/authority"
	"gatehouse/gateway"
	"gatehouse/layout"
	"gatehouse/shmem"
)

// stack is apid and one or more proxyd running as child processes of this one (the harness
// binary re-executed with roleEnv set, see runRole), on temp config and run dirs, with a pbs
// user, a ticket for it and one of its API tokens. Every proxyd serves the same config and maps
// the same generation file.
type stack struct {
	dir     string
	dirs    layout.Dirs
	daemons []*daemon    // apid first, then each proxyd
	urls    []string     // https://127.0.0.1:port/api2/json, one per proxyd
	url     string       // urls[0]
	client  *http.Client // the one keep-alive HTTPS client every row shares
	apid    *http.Client // apid's unix socket, as the local administrator (root@pam)
	gen     *shmem.Cache // the generation file, opened as a config writer would
	ticket  string       // PBSAuthCookie value
	token   string       // Authorization header value: tokenHeader(tokenID, the secret)
	tokenID string       // user@realm!name of token
	// proxydEnv is added to the environment of every proxyd started afterwards (attack.go:
	// the GOMEMLIMIT of proxyd's systemd unit).
	proxydEnv []string
}

const (
	e2eUser     = "bench@pbs"
	e2ePassword = "bench-pass-1"
	e2eToken    = "load"
)

// Roles of the re-executed harness binary: roleEnv names the daemon, argsEnv holds its
// arguments as a JSON array.
const (
	roleEnv = "GATEHOUSE_BENCH_ROLE"
	argsEnv = "GATEHOUSE_BENCH_ARGS"
)

// runRole runs the daemon roleEnv names, when it is set, and exits; main and TestMain call it
// first.
func runRole() {
	role := os.Getenv(roleEnv)
	if role == "" {
		return
	}
	var args []string
	if err := json.Unmarshal([]byte(os.Getenv(argsEnv)), &args); err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: bad %s: %v\n", role, argsEnv, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var err error
	switch role {
	case "apid":
		err = authority.Main(ctx, args, os.Stderr)
	case "proxyd":
		err = gateway.Main(ctx, args, os.Stderr)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// stackOptions says how many proxyd processes to start and what extra arguments each gets.
type stackOptions struct {
	conns      int      // keep-alive connections the client keeps per proxyd (the rows' goroutines)
	proxyds    int      // proxyd processes; 0 means 1
	proxydArgs []string // added to every proxyd's arguments
	// prepare, if set, writes config files into the (made, empty) config dir before apid
	// starts, e.g. a user.cfg and token.shadow with many tokens.
	prepare   func(layout.Dirs) error
	proxydEnv []string // see stack.proxydEnv
}

// startStack starts apid, then each proxyd on 127.0.0.1:0, and makes the user, ticket and
// token.
func startStack(o stackOptions) (_ *stack, err error) {
	dir, err := os.MkdirTemp("", "gatehouse-bench-e2e-")
	if err != nil {
		return nil, err
	}
	s := &stack{dir: dir, dirs: layout.Dirs{Config: filepath.Join(dir, "etc"), Run: filepath.Join(dir, "run")}, proxydEnv: o.proxydEnv}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.close())
		}
	}()
	d := s.dirs
	if o.prepare != nil {
		if err := os.MkdirAll(d.Config, 0o755); err != nil {
			return nil, err
		}
		if err := o.prepare(d); err != nil {
			return nil, fmt.Errorf("preparing the config: %w", err)
		}
	}
	if _, err := s.start("apid", "--config-dir", d.Config, "--run-dir", d.Run, "--proxy-user", fmt.Sprint(os.Getuid())); err != nil {
		return nil, err
	}
	for range max(o.proxyds, 1) {
		u, err := s.addProxyd(o.proxydArgs...)
		if err != nil {
			return nil, err
		}
		s.urls = append(s.urls, u)
	}
	s.url = s.urls[0]
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
		MaxIdleConnsPerHost: max(o.conns, 1),
	}}
	sock := d.Socket()
	s.apid = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	if s.gen, err = shmem.Dial(d.ShmemSocket()); err != nil {
		return nil, err
	}
	if err := s.setUpUser(); err != nil {
		return nil, err
	}
	return s, nil
}

// addProxyd starts one more proxyd on the stack's config and generation file, on
// 127.0.0.1:0 with its own auth log, no failure delay and no metrics listener unless args
// (added last, so they win) say otherwise, and returns its API URL. startStack's proxyd are
// started with it; a caller may add more, e.g. with other flags.
func (s *stack) addProxyd(args ...string) (string, error) {
	d := s.dirs
	args = append([]string{"--config-dir", d.Config, "--run-dir", d.Run, "--listen", "127.0.0.1:0",
		"--auth-log", filepath.Join(s.dir, fmt.Sprintf("auth-%d.log", len(s.daemons))), "--fail-delay", "-1s",
		"--metrics-listen", ""}, args...)
	addr, err := s.start("proxyd", args...)
	if err != nil {
		return "", err
	}
	return "https://" + addr + "/api2/json", nil
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
	s.token, s.tokenID = tokenHeader(tok.Tokenid, tok.Value), tok.Tokenid
	return nil
}

// tokenHeader is the Authorization header value of an API token.
func tokenHeader(tokenid, secret string) string { return "PBSAPIToken=" + tokenid + ":" + secret }

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

// close stops every daemon (SIGTERM, then SIGKILL after 10 s), waits for them and removes the
// temp dir. A daemon that exited with an error adds it and its log to the error.
func (s *stack) close() error {
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
	if s.apid != nil {
		s.apid.CloseIdleConnections()
	}
	var errs []error
	for i := len(s.daemons) - 1; i >= 0; i-- { // proxyd before apid
		if err := s.daemons[i].stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.gen != nil {
		s.gen.Close()
	}
	errs = append(errs, os.RemoveAll(s.dir))
	return errors.Join(errs...)
}

// daemon is one child process running a role.
type daemon struct {
	name string
	cmd  *exec.Cmd
	log  logWriter
	done chan error // cmd.Wait's result; buffered
}

// stopWait is how long a daemon gets to exit after SIGTERM before it is killed.
const stopWait = 10 * time.Second

// stop sends SIGTERM (SIGKILL after stopWait) and waits; a non-zero exit is an error with the
// daemon's log. Calling it again returns nil.
func (d *daemon) stop() error {
	if d.done == nil {
		return nil
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-d.done:
	case <-time.After(stopWait):
		d.cmd.Process.Kill()
		err = fmt.Errorf("did not stop within %v after SIGTERM: %w", stopWait, <-d.done)
	}
	d.done = nil
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", d.name, err, d.log.String())
	}
	return nil
}

// start runs a role as a child process (this binary re-executed; SIGTERM should this process
// die) and returns the address it logs with msg=listening, or an error with its log if it
// exits first.
func (s *stack) start(role string, args ...string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding this program to start %s: %w", role, err)
	}
	js, err := json.Marshal(args)
	if err != nil {
		return "", err
	}
	d := &daemon{name: role, done: make(chan error, 1), log: logWriter{addr: make(chan string, 1)}}
	d.cmd = exec.Command(self, "-test.run=^$")
	d.cmd.Env = append(os.Environ(), roleEnv+"="+role, argsEnv+"="+string(js))
	if role == "proxyd" {
		d.cmd.Env = append(d.cmd.Env, s.proxydEnv...)
	}
	d.cmd.Stderr = &d.log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		return "", fmt.Errorf("starting %s: %w", role, err)
	}
	s.daemons = append(s.daemons, d)
	go func() { d.done <- d.cmd.Wait() }()
	select {
	case addr := <-d.log.addr:
		return addr, nil
	case err := <-d.done:
		d.done = nil // reported here, not again by close
		return "", fmt.Errorf("%s exited before listening: %v\n%s", role, err, d.log.String())
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
