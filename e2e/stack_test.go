package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gatehouse/authority"
	"gatehouse/gateway"
	"gatehouse/layout"
)

// Roles of the re-executed test binary, chosen by GATEHOUSE_E2E_ROLE; its arguments come as a
// JSON array in GATEHOUSE_E2E_ARGS.
const (
	roleEnv      = "GATEHOUSE_E2E_ROLE"
	argsEnv      = "GATEHOUSE_E2E_ARGS"
	listenPIDEnv = "GATEHOUSE_E2E_LISTEN_PID" // the child sets LISTEN_PID to its own pid
	nobody       = 65534
)

func TestMain(m *testing.M) {
	role := os.Getenv(roleEnv)
	if role == "" {
		os.Exit(m.Run())
	}
	var args []string
	if err := json.Unmarshal([]byte(os.Getenv(argsEnv)), &args); err != nil {
		fmt.Fprintln(os.Stderr, "e2e child: bad args:", err)
		os.Exit(2)
	}
	if os.Getenv(listenPIDEnv) != "" {
		os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var err error
	switch role {
	case "apid":
		err = authority.Main(ctx, args, os.Stderr)
	case "proxyd":
		err = gateway.Main(ctx, args, os.Stderr)
	case "read":
		err = readFiles(args)
	case "hold-locks":
		err = holdLocks(args)
	case "apid-call":
		err = apidCall(args)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, role+":", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// readFiles opens each file and prints "<path> ok" or "<path> <errno>" per line.
func readFiles(paths []string) error {
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			fmt.Printf("%s %v\n", p, err.(*os.PathError).Err)
			continue
		}
		f.Close()
		fmt.Printf("%s ok\n", p)
	}
	return nil
}

// stack is a running apid + proxyd.
type stack struct {
	dirs    layout.Dirs
	bin     string // the test binary, copied where uid 65534 can run it
	base    string
	url     string // https://127.0.0.1:port/api2/json
	metrics string // http://127.0.0.1:port/metrics, from proxyd's msg="metrics listening" line
	authLog string
	split   bool     // proxyd runs as another uid than apid
	apidArg []string // apid's command line, to start it again
	http    *http.Client
	apid    *http.Client          // straight to apid's socket, as a local administrator
	procs   map[string]*proc      // by role
	logs    map[string]*daemonLog // each daemon's log, by role
}

// proc is a running daemon child.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once its stderr is at EOF
	wait func() error  // cmd.Wait, once
}

// stop sends SIGTERM to a daemon and returns how it exited (nil: status 0).
func (st *stack) stop(role string) error {
	p := st.procs[role]
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	return p.wait()
}

type options struct {
	burst      int
	pamService string
	upstream   string   // --upstream URL
	apidArgs   []string // more apid flags
	proxydArgs []string // more proxyd flags
	// prepare, when set, runs once the directories are chosen and before apid starts (the
	// config directory may not exist yet), e.g. to mount a file system there.
	prepare func(t *testing.T, d layout.Dirs)
}

// start runs apid, then proxyd, and waits until both listen.
func start(t *testing.T, o options) *stack {
	t.Helper()
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	st := &stack{
		dirs: layout.Dirs{Config: filepath.Join(base, "etc"), Run: filepath.Join(base, "run")},
		base: base, bin: filepath.Join(base, "e2e.test"), authLog: filepath.Join(base, "log", "auth.log"),
		split: os.Getuid() == 0, procs: map[string]*proc{}, logs: map[string]*daemonLog{},
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(st.bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Dir(st.authLog), 0o755); err != nil {
		t.Fatal(err)
	}
	proxyUser := fmt.Sprint(os.Getuid())
	if st.split {
		proxyUser = fmt.Sprint(nobody)
		if err := os.Chown(filepath.Dir(st.authLog), nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	apidArgs := []string{"--config-dir", st.dirs.Config, "--run-dir", st.dirs.Run, "--proxy-user", proxyUser}
	if o.pamService != "" {
		apidArgs = append(apidArgs, "--pam-service", o.pamService)
	}
	st.apidArg = append(apidArgs, o.apidArgs...)
	if o.prepare != nil {
		o.prepare(t, st.dirs)
	}
	st.run(t, "apid", false, st.apidArg...)
	burst := o.burst
	if burst == 0 {
		burst = 1000
	}
	proxydArgs := []string{"--config-dir", st.dirs.Config, "--run-dir", st.dirs.Run,
		"--listen", "127.0.0.1:0", "--auth-log", st.authLog, "--fail-delay", "-1s",
		"--fail-burst", fmt.Sprint(burst), "--trusted-proxies", "127.0.0.1", "--upstream", o.upstream,
		"--metrics-listen", "127.0.0.1:0"}
	addr := st.run(t, "proxyd", st.split, append(proxydArgs, o.proxydArgs...)...)
	st.url = "https://" + addr + "/api2/json"
	pem, err := os.ReadFile(st.dirs.ProxyCert())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	st.http = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	sock := st.dirs.Socket()
	st.apid = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	return st
}

// run starts a daemon role, as uid 65534 when asUnprivileged, and returns the address it logs
// with msg=listening; a msg="metrics listening" line before it sets st.metrics. The process is
// stopped with SIGTERM at cleanup; its log goes to t.Log.
func (st *stack) run(t *testing.T, role string, asUnprivileged bool, args ...string) string {
	t.Helper()
	return st.runStored(t, role, asUnprivileged, nil, args...)
}

// runStored is run passing stored, when not nil, as systemd passes a unit's file descriptor
// store back: descriptor 3, LISTEN_FDS=1, LISTEN_FDNAMES=its name, and LISTEN_PID the child's
// (set by the child itself, see TestMain: systemd sets it between fork and exec).
func (st *stack) runStored(t *testing.T, role string, asUnprivileged bool, stored *os.File, args ...string) string {
	t.Helper()
	js, _ := json.Marshal(args)
	cmd := exec.Command(st.bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"="+role, argsEnv+"="+string(js))
	if stored != nil {
		cmd.ExtraFiles = []*os.File{stored}
		cmd.Env = append(cmd.Env, "LISTEN_FDS=1", "LISTEN_FDNAMES="+stored.Name(), listenPIDEnv+"=1")
	}
	if asUnprivileged {
		cmd.SysProcAttr = nobodyAttr()
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", role, err)
	}
	addr := make(chan string, 1)
	log := &daemonLog{changed: make(chan struct{})}
	st.logs[role] = log
	metrics := "" // written before addr is sent, read after it is received
	done := make(chan struct{})
	p := &proc{cmd: cmd, done: done, wait: sync.OnceValue(cmd.Wait)}
	st.procs[role] = p
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			log.add(line)
			for _, f := range strings.Fields(line) {
				a, ok := strings.CutPrefix(f, "addr=")
				switch {
				case !ok:
				case strings.Contains(line, "msg=listening"):
					addr <- a
				case strings.Contains(line, `msg="metrics listening"`):
					metrics = "http://" + a + "/metrics"
				}
			}
		}
		close(addr)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-done
		p.wait()
		t.Logf("%s log:\n%s", role, log.String())
	})
	a, ok := <-addr
	if !ok {
		p.wait()
		t.Fatalf("%s exited before listening:\n%s", role, log.String())
	}
	if metrics != "" {
		st.metrics = metrics
	}
	return a
}

// daemonLog is a daemon's standard error as read so far.
type daemonLog struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced when a line arrives
}

func (l *daemonLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.WriteString(line + "\n")
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *daemonLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// waitFor returns the log once it contains every one of subs; it fails the test if that takes
// more than 10 s.
func (l *daemonLog) waitFor(t *testing.T, subs ...string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		l.mu.Lock()
		s, changed := l.buf.String(), l.changed
		l.mu.Unlock()
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(s, sub)
		}
		if all {
			return s
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("log has no %q after 10 s:\n%s", subs, s)
		}
	}
}

// call is one HTTPS request to proxyd. body is form-encoded unless it is a string (sent as is,
// with Content-Type application/json when it starts with '{').
type call struct {
	method, path string
	form         url.Values
	raw          string
	header       http.Header
}

type answer struct {
	status  int
	header  http.Header
	data    json.RawMessage
	message string
	errors  map[string]string
}

func (st *stack) do(t *testing.T, c call) answer {
	t.Helper()
	return doOn(t, st.http, st.url, c)
}

// admin calls apid directly over its socket as the local administrator (root@pam).
func (st *stack) admin(t *testing.T, c call) answer {
	t.Helper()
	return doOn(t, st.apid, "http://apid/api2/json", c)
}

func doOn(t *testing.T, client *http.Client, base string, c call) answer {
	t.Helper()
	a, err := tryOn(client, base, c)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// tryOn is doOn returning the failures it would fail the test with: no answer, or not JSON.
func tryOn(client *http.Client, base string, c call) (answer, error) {
	var body io.Reader
	ctype := ""
	switch {
	case c.raw != "":
		body = strings.NewReader(c.raw)
		if strings.HasPrefix(c.raw, "{") {
			ctype = "application/json"
		}
	case c.form != nil:
		body = strings.NewReader(c.form.Encode())
		ctype = "application/x-www-form-urlencoded"
	}
	req, err := http.NewRequest(c.method, base+c.path, body)
	if err != nil {
		return answer{}, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, vs := range c.header {
		req.Header[k] = vs
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: %w", c.method, c.path, err)
	}
	defer resp.Body.Close()
	var out struct {
		Data    json.RawMessage   `json:"data"`
		Message string            `json:"message"`
		Errors  map[string]string `json:"errors"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		return answer{}, fmt.Errorf("%s %s: answer %d is not JSON: %q", c.method, c.path, resp.StatusCode, raw)
	}
	return answer{resp.StatusCode, resp.Header, out.Data, out.Message, out.Errors}, nil
}

func (a answer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.data, v); err != nil {
		t.Fatalf("decoding %s: %v", a.data, err)
	}
}

// session is a logged-in legacy-flow client.
type session struct {
	user, ticket, csrf string
}

func (s session) header(withCSRF bool) http.Header {
	h := http.Header{"Cookie": {"PBSAuthCookie=" + s.ticket}}
	if withCSRF {
		h.Set("CSRFPreventionToken", s.csrf)
	}
	return h
}

// login makes a ticket with the legacy flow; it fails the test unless the answer is 200.
func (st *stack) login(t *testing.T, user, password string) session {
	t.Helper()
	a := st.do(t, call{method: "POST", path: "/access/ticket", form: url.Values{"username": {user}, "password": {password}}})
	if a.status != http.StatusOK {
		t.Fatalf("login %s = %d %s; want 200", user, a.status, a.message)
	}
	var d struct {
		Username, Ticket, CSRFPreventionToken string
	}
	a.decode(t, &d)
	if d.Username != user || d.Ticket == "" || d.CSRFPreventionToken == "" {
		t.Fatalf("login %s answered %s", user, a.data)
	}
	return session{user, d.Ticket, d.CSRFPreventionToken}
}

// addUser creates a pbs-realm user with a password, as root@pam.
func (st *stack) addUser(t *testing.T, user, password string) {
	t.Helper()
	if a := st.admin(t, call{method: "POST", path: "/access/users", form: url.Values{"userid": {user}, "password": {password}}}); a.status != 200 {
		t.Fatalf("creating %s = %d %s %v", user, a.status, a.message, a.errors)
	}
}

// newToken makes the API token name of s's user through proxyd, with s's session, and returns
// the Authorization header that carries it.
func (st *stack) newToken(t *testing.T, s session, name string) http.Header {
	t.Helper()
	a := st.do(t, call{method: "POST", path: "/access/users/" + s.user + "/token/" + name, header: s.header(true)})
	var tok struct{ Value string }
	a.decode(t, &tok)
	if a.status != http.StatusOK || tok.Value == "" {
		t.Fatalf("making token %s of %s = %d %s", name, s.user, a.status, a.message)
	}
	return http.Header{"Authorization": {"PBSAPIToken=" + s.user + "!" + name + ":" + tok.Value}}
}

// authLogLines returns the auth log's lines.
func (st *stack) authLogLines(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(st.authLog)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// nobodyAttr runs a child as uid and gid 65534 with no supplementary groups.
func nobodyAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
}
