package demostack

import (
	"bufio"
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
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gatehouse/apidclient"
)

// binDir holds apid, proxyd and gatehouse-demo, built once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "demostack-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	binDir = filepath.Join(tmp, "bin")
	cmd := exec.Command("go", "build", "-o", binDir+"/", "./cmd/apid", "./cmd/proxyd", "./cmd/gatehouse-demo")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(tmp)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

func build(t *testing.T) string {
	t.Helper()
	return binDir
}

// needTool skips (or, under GATEHOUSE_REQUIRE_TOOLS, fails) when name is not installed.
func needTool(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("GATEHOUSE_REQUIRE_TOOLS") != "" {
			t.Fatalf("%s not installed (package %s), required by GATEHOUSE_REQUIRE_TOOLS", name, pkg)
		}
		t.Skipf("%s not installed (package %s)", name, pkg)
	}
}

// demoRun is a running gatehouse-demo.
type demoRun struct {
	cmd   *exec.Cmd
	lines []string // stdout up to "Ctrl-C stops both"
	rest  chan string
}

// runDemo starts the demo and reads its output up to "Ctrl-C stops both".
func runDemo(t *testing.T, bin, dir string, args ...string) *demoRun {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "gatehouse-demo"), append([]string{"--dir", dir, "--bin", bin}, args...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &demoRun{cmd: cmd, rest: make(chan string, 1)}
	t.Cleanup(func() { cmd.Process.Kill() })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		d.lines = append(d.lines, sc.Text())
		if sc.Text() == "Ctrl-C stops both" {
			go func() {
				b, _ := io.ReadAll(out)
				d.rest <- string(b)
			}()
			return d
		}
	}
	cmd.Wait()
	t.Fatalf("demo ended before \"Ctrl-C stops both\":\n%s", strings.Join(d.lines, "\n"))
	return nil
}

// interrupt sends SIGINT and checks the demo printed "stopped" and exited 0.
func (d *demoRun) interrupt(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	rest := <-d.rest
	if err := d.cmd.Wait(); err != nil {
		t.Errorf("demo after SIGINT: %v; want exit status 0", err)
	}
	if strings.TrimSpace(rest) != "stopped" {
		t.Errorf("demo printed %q after SIGINT; want \"stopped\"", rest)
	}
}

func (d *demoRun) field(prefix string) string {
	for _, l := range d.lines {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), prefix); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// running returns the pids of processes whose executable is in bin.
func running(t *testing.T, bin string) []string {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/exe")
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, p := range procs {
		if exe, err := os.Readlink(p); err == nil && filepath.Dir(exe) == bin {
			pids = append(pids, strings.Split(p, "/")[2])
		}
	}
	return pids
}

func TestDemo(t *testing.T) {
	needTool(t, "curl", "curl")
	bin := build(t)
	dir := filepath.Join(t.TempDir(), "demo")

	d := runDemo(t, bin, dir, "--port", "0")
	password := d.field("password:")
	if len(password) != 26 {
		t.Fatalf("password line %q; want 26 characters in:\n%s", password, strings.Join(d.lines, "\n"))
	}
	var curls []string
	for _, l := range d.lines {
		if c, ok := strings.CutPrefix(l, "  curl "); ok {
			curls = append(curls, "curl -sS --fail-with-body "+c)
		}
	}
	if len(curls) != 2 {
		t.Fatalf("want 2 curl lines in:\n%s", strings.Join(d.lines, "\n"))
	}
	if !strings.Contains(curls[0], "--cacert "+filepath.Join(dir, "etc", "proxy.pem")) {
		t.Errorf("ticket line %q does not pin the demo's certificate", curls[0])
	}
	shell := func(line string) string {
		t.Helper()
		out, err := exec.Command("bash", "-c", line).Output()
		if err != nil {
			t.Fatalf("%s: %v: %s", line, err, out)
		}
		return string(out)
	}
	var login struct {
		Data struct{ Ticket, CSRFPreventionToken, Username string }
	}
	if out := shell(curls[0]); json.Unmarshal([]byte(out), &login) != nil || login.Data.Username != AdminUser || !strings.HasPrefix(login.Data.Ticket, "PBS:admin@pbs:") {
		t.Fatalf("ticket line answered %q; want a ticket for %s", out, AdminUser)
	}
	if out := shell(curls[1]); !strings.Contains(out, `"version"`) {
		t.Fatalf("token line answered %q; want the version", out)
	}
	metrics := ""
	for _, l := range d.lines {
		if m, ok := strings.CutPrefix(l, "Metrics: "); ok {
			metrics = m
		}
	}
	if !strings.HasPrefix(metrics, "http://127.0.0.1:") {
		t.Fatalf("no loopback Metrics line in:\n%s", strings.Join(d.lines, "\n"))
	}
	if out := shell("curl -sS --fail " + metrics); !strings.Contains(out, `gatehouse_auth_attempts_total{method="token",result="success"} 1`) {
		t.Errorf("metrics at %s do not count the token call once:\n%.2000s", metrics, out)
	}

	// The admin creates a user through proxyd; the new user logs in.
	base := strings.Fields(d.field("Gatehouse demo at"))[0] + "/api2/json"
	pem, err := os.ReadFile(filepath.Join(dir, "etc", "proxy.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	// The web line: the login page on localhost (WebAuthn needs a domain), whose relying party
	// the demo set for this port.
	web, _, _ := strings.Cut(d.field("web:"), " ")
	if d.field("warning:") != "" {
		t.Errorf("the demo warns: %s", d.field("warning:"))
	}
	if resp, err := client.Get(web); err != nil || resp.StatusCode != 200 || !strings.HasPrefix(web, "https://localhost:") {
		t.Errorf("web line %q: %v", web, err)
	} else {
		resp.Body.Close()
	}
	req, _ := http.NewRequest("POST", base+"/access/users", strings.NewReader(url.Values{"userid": {"alice@pbs"}, "password": {"alice-pass-1"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Cookie", "PBSAuthCookie="+login.Data.Ticket)
	req.Header.Set("CSRFPreventionToken", login.Data.CSRFPreventionToken)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("admin creating alice@pbs through proxyd = %d %s; want 200", resp.StatusCode, body)
	}
	resp, err = client.PostForm(base+"/access/ticket", url.Values{"username": {"alice@pbs"}, "password": {"alice-pass-1"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("alice@pbs login = %d; want 200", resp.StatusCode)
	}
	if pids := running(t, bin); len(pids) != 3 {
		t.Errorf("running from %s: %v; want the demo, apid and proxyd", bin, pids)
	}

	d.interrupt(t)
	if pids := running(t, bin); len(pids) != 0 {
		t.Errorf("after SIGINT, still running from %s: %v", bin, pids)
	}
	if c, err := net.Dial("unix", filepath.Join(dir, "run", "apid.sock")); err == nil {
		c.Close()
		t.Error("apid's socket still accepts after SIGINT")
	}
	if _, err := client.Get(base + "/ping"); err == nil {
		t.Error("proxyd still answers after SIGINT")
	}

	// A second run reuses the folder and prints no secret.
	d = runDemo(t, bin, dir, "--port", "0")
	all := strings.Join(d.lines, "\n")
	if strings.Contains(all, password) || d.field("password:") != "" || d.field("secret:") != "" || !strings.Contains(all, "printed at the first run") {
		t.Errorf("second run printed:\n%s\nwant no password nor secret, and where they were printed", all)
	}
	// A first run that stopped before its token existed (its password never shown) is
	// finished by the next run: a new password and a token, printed.
	if err := apidclient.New(filepath.Join(dir, "run", "apid.sock")).Call(context.Background(), "DELETE",
		"/access/users/"+AdminUser+"/token/"+AdminToken, nil, nil); err != nil {
		t.Fatal(err)
	}
	d.interrupt(t)
	d = runDemo(t, bin, dir, "--port", "0")
	again := d.field("password:")
	if len(again) != 26 || again == password || d.field("secret:") == "" {
		t.Fatalf("run after an unfinished first run printed:\n%s\nwant a new password and a secret", strings.Join(d.lines, "\n"))
	}
	base = strings.Fields(d.field("Gatehouse demo at"))[0] + "/api2/json"
	for pw, want := range map[string]int{again: 200, password: 401} {
		resp, err := client.PostForm(base+"/access/ticket", url.Values{"username": {AdminUser}, "password": {pw}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("admin login with the %s password = %d; want %d", map[bool]string{true: "new", false: "old"}[pw == again], resp.StatusCode, want)
		}
	}
	d.interrupt(t)
}

// TestDemoBusyPort: proxyd cannot listen; the demo says so with proxyd's log, stops apid and
// fails.
func TestDemoBusyPort(t *testing.T) {
	bin := build(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	cmd := exec.Command(filepath.Join(bin, "gatehouse-demo"), "--dir", filepath.Join(t.TempDir(), "demo"), "--bin", bin)
	cmd.Env = append(os.Environ(), "DEMO_PORT="+strings.TrimPrefix(ln.Addr().String(), "127.0.0.1:"))
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatal("demo still running a minute after a busy port")
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("demo on a busy port: %v; want exit status 1", err)
	}
	for _, want := range []string{"is busy", "DEMO_PORT", "last lines of", "address already in use"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if pids := running(t, bin); len(pids) != 0 {
		t.Errorf("after the failure, still running from %s: %v (port %d)", bin, pids, port)
	}
}
