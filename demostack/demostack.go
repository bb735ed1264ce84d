// Package demostack runs the demo stack of `make run`: apid and proxyd as child processes
// in one local folder, without root, with a bootstrap administrator.
//
// The folder (default ./demo; --dir) holds:
//
//	bin/      apid, proxyd (and gatectl, gatehouse-demo), built by make
//	etc/      apid's --config-dir (keys, proxy.pem, user.cfg, acl.cfg, ...)
//	run/      apid's --run-dir (apid.sock, the generation file, locks)
//	log/      apid.log, proxyd.log (each daemon's stderr, appended), auth.log (proxyd's)
//
// Steps: make etc, run and log (0755); start apid (--proxy-user <own uid>: proxyd runs as the
// same user) and wait for its "listening" log line; start proxyd (--listen 127.0.0.1:<port>,
// port 8007 by default, 0 for any) and wait for its line. On the first run (no admin@pbs in
// user.cfg) create, over apid's socket as the local administrator (a peer of apid's own uid
// that sends no client address acts as root@pam), admin@pbs with a random 130-bit password,
// role Admin on "/" (propagate 1) for it, and its API token admin@pbs!demo, then print, once:
// the URL, the user and password, the token secret, a curl line that gets a ticket and one
// that calls /api2/json/version with the token (both --cacert <dir>/etc/proxy.pem), and
// "Ctrl-C stops both". Later runs reuse the folder and print no secret.
//
// Each daemon runs in its own process group (a terminal's Ctrl-C reaches only the demo,
// which stops them in order) and gets SIGTERM should the demo die (Linux parent-death
// signal). A daemon that stops before its "listening" line or later is an error that quotes
// the last 10 lines of its log; the other daemon is then stopped. On ctx's end (SIGINT or
// SIGTERM in cmd/gatehouse-demo) both get SIGTERM and 10 s to exit (then SIGKILL), and Run
// prints "stopped" and returns nil.
package demostack

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gatehouse/apidclient"
	"gatehouse/layout"
)

// Names of the bootstrap administrator and its token.
const (
	AdminUser  = "admin@pbs"
	AdminToken = "demo"
	// DefaultPort is proxyd's port unless DEMO_PORT or --port says otherwise.
	DefaultPort = 8007
	// stopWait is how long a daemon gets to exit after SIGTERM.
	stopWait = 10 * time.Second
	// tailLines is how many log lines an error quotes.
	tailLines = 10
)

// Options configure Run.
type Options struct {
	Dir    string    // the demo folder
	Bin    string    // where apid and proxyd are; default Dir/bin
	Port   int       // proxyd's port on 127.0.0.1; 0: any free one
	Stdout io.Writer // what the user reads
}

// Main parses args (--dir, --bin, --port; DEMO_PORT is the port's default) and runs the demo
// until ctx is done.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("gatehouse-demo", flag.ContinueOnError)
	fl.SetOutput(stderr)
	port := DefaultPort
	if v := os.Getenv("DEMO_PORT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 65535 {
			return fmt.Errorf("reading DEMO_PORT %q: want a port number (0: any free port)", v)
		}
		port = n
	}
	o := Options{Stdout: stdout}
	fl.StringVar(&o.Dir, "dir", "demo", "demo folder (bin, etc, run, log)")
	fl.StringVar(&o.Bin, "bin", "", "folder holding apid and proxyd (default <dir>/bin)")
	fl.IntVar(&o.Port, "port", port, "proxyd's port on 127.0.0.1 (0: any free port; default from DEMO_PORT)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fl.Args())
	}
	return Run(ctx, o)
}

// Run runs the demo stack until ctx is done (see the package comment).
func Run(ctx context.Context, o Options) error {
	if o.Bin == "" {
		o.Bin = filepath.Join(o.Dir, "bin")
	}
	d := layout.Dirs{Config: filepath.Join(o.Dir, "etc"), Run: filepath.Join(o.Dir, "run")}
	logDir := filepath.Join(o.Dir, "log")
	for _, dir := range []string{d.Config, d.Run, logDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("making demo folder %s: %w", dir, err)
		}
	}
	apid, err := start(ctx, "apid", filepath.Join(o.Bin, "apid"), filepath.Join(logDir, "apid.log"),
		"--config-dir", d.Config, "--run-dir", d.Run, "--proxy-user", strconv.Itoa(os.Getuid()))
	if err != nil {
		return err
	}
	if _, err := apid.ready(ctx); err != nil || ctx.Err() != nil {
		apid.stop()
		return stopped(o.Stdout, err)
	}
	proxyd, err := start(ctx, "proxyd", filepath.Join(o.Bin, "proxyd"), filepath.Join(logDir, "proxyd.log"),
		"--config-dir", d.Config, "--run-dir", d.Run, "--listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(o.Port)),
		"--auth-log", filepath.Join(logDir, "auth.log"), "--metrics-listen", "127.0.0.1:0")
	if err != nil {
		apid.stop()
		return err
	}
	stopBoth := func() {
		proxyd.stop()
		apid.stop()
	}
	addr, err := proxyd.ready(ctx)
	if err != nil && strings.Contains(err.Error(), "address already in use") {
		err = fmt.Errorf("port %d on 127.0.0.1 is busy (choose another with DEMO_PORT=<port>): %w", o.Port, err)
	}
	if err == nil && ctx.Err() == nil {
		err = greet(ctx, o, d, addr, proxyd.metrics)
	}
	if err != nil || ctx.Err() != nil {
		stopBoth()
		return stopped(o.Stdout, err)
	}
	select {
	case <-ctx.Done():
		stopBoth()
		return stopped(o.Stdout, nil)
	case <-apid.exited:
		stopBoth()
		return apid.failure("stopped")
	case <-proxyd.exited:
		stopBoth()
		return proxyd.failure("stopped")
	}
}

// stopped ends Run once the daemons are stopped: err, or "stopped" printed and nil.
func stopped(w io.Writer, err error) error {
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "stopped")
	return nil
}

// daemon is one running child.
type daemon struct {
	name, logPath string
	cmd           *exec.Cmd
	addr          chan string   // the "listening" line's addr=, once
	metrics       string        // proxyd's "metrics listening" addr=; set before addr is sent
	exited        chan struct{} // closed once the process has been waited for
	waitErr       error         // set before exited is closed
}

// start runs bin with args, its stderr and stdout appended to logPath.
func start(ctx context.Context, name, bin, logPath string, args ...string) (*daemon, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening %s log %s: %w", name, logPath, err)
	}
	fmt.Fprintf(logf, "--- gatehouse-demo starting %s at %s\n", name, time.Now().Format(time.RFC3339))
	cmd := exec.Command(bin, args...)
	cmd.Stdout = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	pipe, err := cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s (%s; run `make run` to build it): %w", name, bin, err)
	}
	dm := &daemon{name: name, logPath: logPath, cmd: cmd, addr: make(chan string, 1), exited: make(chan struct{})}
	go func() {
		defer close(dm.exited)
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if !sent && strings.Contains(line, `msg="metrics listening"`) {
				for f := range strings.FieldsSeq(line) {
					if a, ok := strings.CutPrefix(f, "addr="); ok {
						dm.metrics = a
					}
				}
			}
			if !sent && strings.Contains(line, "msg=listening") {
				for f := range strings.FieldsSeq(line) {
					if a, ok := strings.CutPrefix(f, "addr="); ok {
						dm.addr <- a
						sent = true
					}
				}
			}
		}
		io.Copy(logf, pipe) // a line over 1 MiB: keep the rest
		dm.waitErr = cmd.Wait()
		logf.Close()
	}()
	return dm, nil
}

// ready waits for the "listening" line and returns its address.
func (dm *daemon) ready(ctx context.Context) (string, error) {
	select {
	case a := <-dm.addr:
		return a, nil
	case <-dm.exited:
		return "", dm.failure("stopped before listening")
	case <-ctx.Done():
		return "", nil // the caller stops everything
	}
}

// failure describes an unexpected exit, with the last lines of the log.
func (dm *daemon) failure(what string) error {
	status := "exit status 0"
	if dm.waitErr != nil {
		status = dm.waitErr.Error()
	}
	return fmt.Errorf("%s %s (%s); last lines of %s:\n%s", dm.name, what, status, dm.logPath, tail(dm.logPath, tailLines))
}

// stop sends SIGTERM and waits for the exit, with SIGKILL after stopWait.
func (dm *daemon) stop() {
	select {
	case <-dm.exited:
		return
	default:
	}
	dm.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-dm.exited:
	case <-time.After(stopWait):
		dm.cmd.Process.Kill()
		<-dm.exited
	}
}

// tail returns the last n lines of the file at path, indented.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// greet bootstraps the administrator on the first run and prints how to use the stack. The
// first run is finished when admin@pbs's token exists: a run that stopped before (after making
// the user, say) is finished by the next one, which sets a new password and prints it, so the
// password is never lost.
func greet(ctx context.Context, o Options, d layout.Dirs, addr, metrics string) error {
	c := apidclient.New(d.Socket())
	base := "https://" + addr
	api := base + "/api2/json"
	cacert := filepath.Join(d.Config, "proxy.pem")
	w := o.Stdout
	tokenPath := "/access/users/" + AdminUser + "/token/" + AdminToken
	// The web pages: WebAuthn wants a domain, so the browser goes to localhost, and the relying
	// party follows the port of this run.
	_, port, _ := net.SplitHostPort(addr)
	web := "https://localhost:" + port
	if err := c.Call(ctx, "PUT", "/config/access/tfa/webauthn", url.Values{"rp": {"Gatehouse demo"}, "id": {"localhost"}, "origin": {web}}, nil); err != nil {
		fmt.Fprintf(w, "warning: security keys will not work in the web pages: setting the WebAuthn relying party: %v\n", err)
	}
	err := c.Call(ctx, "GET", tokenPath, nil, nil)
	if err == nil {
		fmt.Fprintf(w, "Gatehouse demo at %s (API under %s)\n", base, api)
		fmt.Fprintf(w, "  web:      %s/gatehouse/login (the certificate is self-signed: %s)\n", web, cacert)
		fmt.Fprintf(w, "  user:     %s (its password and the secret of %s!%s were printed at the first run)\n", AdminUser, AdminUser, AdminToken)
		fmt.Fprintf(w, "  to start over: make run-reset (or rm -rf %s)\n", o.Dir)
		fmt.Fprintf(w, "  logs:     %s\n", filepath.Join(o.Dir, "log"))
		if metrics != "" {
			fmt.Fprintf(w, "  metrics:  http://%s/metrics\n", metrics)
		}
		fmt.Fprintln(w, "Ctrl-C stops both")
		return nil
	}
	if !apidclient.IsStatus(err, http.StatusNotFound) {
		return fmt.Errorf("looking up %s!%s on apid: %w", AdminUser, AdminToken, err)
	}
	password := rand.Text() // 26 base32 characters, 130 bits
	err = c.Call(ctx, "GET", "/access/users/"+AdminUser, nil, nil)
	switch {
	case err == nil: // an earlier first run stopped half-way: its password was never shown
		err = c.Call(ctx, "PUT", "/access/password", url.Values{"userid": {AdminUser}, "password": {password}}, nil)
	case apidclient.IsStatus(err, http.StatusNotFound):
		err = c.Call(ctx, "POST", "/access/users", url.Values{"userid": {AdminUser}, "password": {password}, "comment": {"demo administrator"}}, nil)
	}
	if err == nil {
		err = c.Call(ctx, "PUT", "/access/acl", url.Values{"path": {"/"}, "role": {"Admin"}, "auth-id": {AdminUser}, "propagate": {"1"}}, nil)
	}
	var tok struct{ Tokenid, Value string }
	if err == nil {
		err = c.Call(ctx, "POST", tokenPath, url.Values{"comment": {"demo token"}}, &tok)
	}
	if err == nil && tok.Value == "" {
		err = errors.New("apid answered no secret")
	}
	if err != nil {
		return fmt.Errorf("bootstrapping %s: %w", AdminUser, err)
	}
	fmt.Fprintf(w, "Gatehouse demo at %s (API under %s)\n", base, api)
	fmt.Fprintf(w, "  web:      %s/gatehouse/login (the certificate is self-signed: %s)\n", web, cacert)
	fmt.Fprintf(w, "  user:     %s (Admin on /)\n", AdminUser)
	fmt.Fprintf(w, "  password: %s\n", password)
	fmt.Fprintf(w, "  token:    %s (no Admin of its own: tokens do not inherit it)\n", tok.Tokenid)
	fmt.Fprintf(w, "  secret:   %s\n", tok.Value)
	fmt.Fprintln(w, "  (printed this once; to start over: make run-reset, or rm -rf "+o.Dir+")")
	fmt.Fprintln(w, "Get a ticket:")
	fmt.Fprintf(w, "  curl --cacert %s %s/access/ticket -d username=%s -d password=%s\n", shellQuote(cacert), api, AdminUser, password)
	fmt.Fprintln(w, "Call the API with the token:")
	fmt.Fprintf(w, "  curl --cacert %s -H %s %s/version\n", shellQuote(cacert),
		shellQuote("Authorization: PBSAPIToken="+tok.Tokenid+":"+tok.Value), api)
	fmt.Fprintf(w, "Logs: %s\n", filepath.Join(o.Dir, "log"))
	if metrics != "" {
		fmt.Fprintf(w, "Metrics: http://%s/metrics\n", metrics)
	}
	fmt.Fprintln(w, "Ctrl-C stops both")
	return nil
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./-_") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
