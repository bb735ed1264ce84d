package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"gatehouse/gateway"
	"gatehouse/tlscert"
)

// notifier is systemd's end of sd_notify: a unixgram socket named by NOTIFY_SOCKET (set for
// every daemon the test starts afterwards) that learns each sender's pid from SCM_CREDENTIALS,
// as systemd does. It also keeps a unit's file descriptor store as systemd does: FDSTORE=1
// with FDNAME and a descriptor (SCM_RIGHTS) stores it under its name, FDSTOREREMOVE=1 drops
// the name; those datagrams are handled as they are read and never returned by next.
type notifier struct {
	conn    *net.UnixConn
	pending map[int][]string    // datagrams read while waiting for another pid
	store   map[string]*os.File // the descriptor store, by FDNAME
}

func listenNotify(t *testing.T) *notifier {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := os.Chmod(path, 0o666); err != nil { // proxyd runs as uid 65534
		t.Fatal(err)
	}
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })
	if serr != nil {
		t.Fatalf("setting SO_PASSCRED: %v", serr)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	n := &notifier{conn: c, pending: map[int][]string{}, store: map[string]*os.File{}}
	t.Cleanup(func() {
		for _, f := range n.store {
			f.Close()
		}
	})
	return n
}

// next returns the next datagram from pid, failing the test after 20 s.
func (n *notifier) next(t *testing.T, pid int) string {
	t.Helper()
	if q := n.pending[pid]; len(q) > 0 {
		n.pending[pid] = q[1:]
		return q[0]
	}
	for {
		from, msg := n.read(t)
		if from == pid {
			return msg
		}
		n.pending[from] = append(n.pending[from], msg)
	}
}

// stored returns the descriptor stored under name, reading datagrams until one is (20 s).
func (n *notifier) stored(t *testing.T, name string) *os.File {
	t.Helper()
	for n.store[name] == nil {
		from, msg := n.read(t)
		n.pending[from] = append(n.pending[from], msg)
	}
	return n.store[name]
}

// read returns the next datagram that is not about the descriptor store, and its sender.
func (n *notifier) read(t *testing.T) (pid int, msg string) {
	t.Helper()
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(unix.SizeofUcred)+unix.CmsgSpace(4*4))
	n.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		k, oobn, _, _, err := n.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			t.Fatalf("waiting for an sd_notify datagram: %v", err)
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			t.Fatal(err)
		}
		var cred *unix.Ucred
		var fds []int
		for i := range msgs {
			if c, err := unix.ParseUnixCredentials(&msgs[i]); err == nil {
				cred = c
			} else if r, err := unix.ParseUnixRights(&msgs[i]); err == nil {
				fds = append(fds, r...)
			}
		}
		if cred == nil {
			t.Fatalf("datagram %q without credentials", buf[:k])
		}
		text := string(buf[:k])
		fields := map[string]string{}
		for _, l := range strings.Split(text, "\n") {
			if key, v, ok := strings.Cut(l, "="); ok {
				fields[key] = v
			}
		}
		switch {
		case fields["FDSTORE"] == "1":
			for _, fd := range fds {
				if old := n.store[fields["FDNAME"]]; old != nil {
					old.Close()
				}
				n.store[fields["FDNAME"]] = os.NewFile(uintptr(fd), fields["FDNAME"])
			}
			continue
		case fields["FDSTOREREMOVE"] == "1":
			if f := n.store[fields["FDNAME"]]; f != nil {
				f.Close()
				delete(n.store, fields["FDNAME"])
			}
			continue
		}
		for _, fd := range fds {
			unix.Close(fd)
		}
		return int(cred.Pid), text
	}
}

// expect reads pid's next datagram and checks that, for every w in want, it has a line
// starting with w.
func (n *notifier) expect(t *testing.T, pid int, want ...string) string {
	t.Helper()
	msg := n.next(t, pid)
	for _, w := range want {
		found := false
		for _, l := range strings.Split(msg, "\n") {
			found = found || strings.HasPrefix(l, w)
		}
		if !found {
			t.Fatalf("sd_notify datagram from pid %d = %q; want a line starting with %q", pid, msg, w)
		}
	}
	return msg
}

// TestSdNotify: both daemons report READY=1 once listening, RELOADING=1 then READY=1 around a
// SIGHUP, and STOPPING=1 on SIGTERM, after which they exit 0.
func TestSdNotify(t *testing.T) {
	n := listenNotify(t)
	st := start(t, options{})
	for _, role := range []string{"apid", "proxyd"} {
		n.expect(t, st.procs[role].cmd.Process.Pid, "READY=1", "STATUS=serving on ")
	}
	for _, role := range []string{"apid", "proxyd"} {
		pid := st.procs[role].cmd.Process.Pid
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		n.expect(t, pid, "RELOADING=1", "MONOTONIC_USEC=")
		n.expect(t, pid, "READY=1", "STATUS=reloaded at ")
	}
	if a := st.do(t, call{method: "GET", path: "/ping"}); a.status != http.StatusOK {
		t.Fatalf("GET /ping after reloads = %d; want 200", a.status)
	}
	st.addUser(t, "alice@pbs", "alice-pass-1") // apid's socket
	st.login(t, "alice@pbs", "alice-pass-1")   // proxyd, forwarding to apid
	for _, role := range []string{"proxyd", "apid"} {
		pid := st.procs[role].cmd.Process.Pid
		if err := st.stop(role); err != nil {
			t.Fatalf("%s after SIGTERM: %v; want exit status 0", role, err)
		}
		n.expect(t, pid, "STOPPING=1")
	}
}

// TestReloadCertificate: SIGHUP makes proxyd serve a replaced certificate to new connections
// while a keep-alive connection opened before keeps working; a certificate that does not match
// its key is refused and the previous pair keeps serving.
func TestReloadCertificate(t *testing.T) {
	n := listenNotify(t)
	st := start(t, options{})
	pid := st.procs["proxyd"].cmd.Process.Pid
	n.expect(t, pid, "READY=1")
	gid := os.Getgid()
	if st.split {
		gid = nobody
	}
	oldDER := certDER(t, st.dirs.ProxyCert())
	next, bad := newPair(t, gid), newPair(t, gid)
	pool := x509.NewCertPool()
	for _, dir := range []string{st.dirs.Config, next, bad} {
		data, err := os.ReadFile(filepath.Join(dir, "proxy.pem"))
		if err != nil {
			t.Fatal(err)
		}
		pool.AppendCertsFromPEM(data)
	}
	transport := func() *http.Transport {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		t.Cleanup(tr.CloseIdleConnections)
		return tr
	}
	url := st.url + "/ping"
	held := transport()
	if der, reused := ping(t, held, url); !bytes.Equal(der, oldDER) || reused {
		t.Fatalf("first connection: old certificate %v, reused %v; want true, false", bytes.Equal(der, oldDER), reused)
	}

	for _, name := range []string{"proxy.key", "proxy.pem"} {
		if err := os.Rename(filepath.Join(next, name), filepath.Join(st.dirs.Config, name)); err != nil {
			t.Fatal(err)
		}
	}
	hup(t, n, pid, "STATUS=reloaded at ")
	if der, reused := ping(t, held, url); !bytes.Equal(der, oldDER) || !reused {
		t.Fatalf("held connection after reload: old certificate %v, reused %v; want true, true", bytes.Equal(der, oldDER), reused)
	}
	newDER := certDER(t, st.dirs.ProxyCert())
	if der, _ := ping(t, transport(), url); !bytes.Equal(der, newDER) {
		t.Fatal("a new connection after the reload got another certificate than the new proxy.pem")
	}

	// A certificate whose key is not proxy.key: the reload fails, the previous pair serves.
	if err := os.Rename(filepath.Join(bad, "proxy.pem"), st.dirs.ProxyCert()); err != nil {
		t.Fatal(err)
	}
	hup(t, n, pid, "STATUS=reload failed: ")
	if der, _ := ping(t, transport(), url); !bytes.Equal(der, newDER) {
		t.Fatal("after a refused reload a new connection got another certificate than the last good one")
	}
	if _, reused := ping(t, held, url); !reused {
		t.Fatal("the held connection was dropped by a failed reload")
	}
}

// hup sends SIGHUP to pid and waits for the end of its reload, whose READY=1 datagram must
// carry status.
func hup(t *testing.T, n *notifier, pid int, status string) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	n.expect(t, pid, "RELOADING=1")
	n.expect(t, pid, "READY=1", status)
}

// newPair makes a fresh self-signed proxy.pem and proxy.key in a new directory.
func newPair(t *testing.T, gid int) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := tlscert.Ensure(filepath.Join(dir, "proxy.key"), filepath.Join(dir, "proxy.pem"), gid, time.Now()); err != nil {
		t.Fatal(err)
	}
	return dir
}

func certDER(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	return b.Bytes
}

// ping makes GET url on tr and returns the server's certificate and whether the request went
// over a connection opened before.
func ping(t *testing.T, tr *http.Transport, url string) (der []byte, reused bool) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
	}))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d; want 200", url, resp.StatusCode)
	}
	return resp.TLS.PeerCertificates[0].Raw, reused
}

// requireTool returns the path of a command, skipping the test when it is missing unless
// GATEHOUSE_REQUIRE_TOOLS is set (CI), where it fails.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("GATEHOUSE_REQUIRE_TOOLS") != "" {
			t.Fatalf("%s not installed (package %s), required by GATEHOUSE_REQUIRE_TOOLS", name, pkg)
		}
		t.Skipf("%s not installed (package %s)", name, pkg)
	}
	return p
}

// TestMakeInstall runs `make install` into a DESTDIR with another PREFIX and checks the tree,
// then has systemd-analyze verify both units (pointed at the installed binaries, which verify
// wants to exist) and rate their hardening.
func TestMakeInstall(t *testing.T) {
	mk := requireTool(t, "make", "make")
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	const prefix = "/opt/gatehouse"
	out, err := exec.Command(mk, "--no-print-directory", "-C", root, "install", "DESTDIR="+dest, "PREFIX="+prefix).CombinedOutput()
	if err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	want := map[string]os.FileMode{
		prefix + "/sbin/apid":                          0o755,
		prefix + "/sbin/proxyd":                        0o755,
		"/etc/systemd/system/gatehouse-apid.service":   0o644,
		"/etc/systemd/system/gatehouse-proxyd.service": 0o644,
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "gatectl")); err == nil {
		want[prefix+"/bin/gatectl"] = 0o755
	}
	for path, mode := range want {
		fi, err := os.Stat(filepath.Join(dest, path))
		if err != nil {
			t.Errorf("after make install: %v", err)
			continue
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %v; want a regular file %v", path, fi.Mode(), mode)
		}
	}
	verifyDir := t.TempDir()
	var units []string
	for _, d := range []string{"apid", "proxyd"} {
		name := "gatehouse-" + d + ".service"
		data, err := os.ReadFile(filepath.Join(dest, "etc/systemd/system", name))
		if err != nil {
			t.Fatal(err)
		}
		line := "ExecStart=" + prefix + "/sbin/" + d + "\n"
		if !strings.Contains(string(data), line) {
			t.Fatalf("installed %s has no line %q", name, strings.TrimSpace(line))
		}
		data = bytes.Replace(data, []byte(line), []byte("ExecStart="+dest+prefix+"/sbin/"+d+"\n"), 1)
		u := filepath.Join(verifyDir, name)
		if err := os.WriteFile(u, data, 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, u)
	}
	analyze := requireTool(t, "systemd-analyze", "systemd")
	out, err = exec.Command(analyze, append([]string{"verify"}, units...)...).CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Exposure 0 (locked down) .. 10 (unprotected); both units score under 2.5 today.
	for _, u := range units {
		out, err := exec.Command(analyze, "security", "--offline=yes", "--threshold=25", u).CombinedOutput()
		if err != nil {
			t.Errorf("systemd-analyze security %s: exposure above 2.5 (%v):\n%s", filepath.Base(u), err, out)
		}
	}
}

// unitSettings returns the Key=value lines of a unit file (the last value of each key; every
// Environment= assignment under "Environment.<NAME>").
func unitSettings(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if k == "Environment" {
			name, val, _ := strings.Cut(v, "=")
			out["Environment."+name] = val
			continue
		}
		out[k] = v
	}
	return out
}

// unitBytes parses a systemd size (K, M, G: powers of 1024) or a Go GOMEMLIMIT (KiB, MiB, GiB).
func unitBytes(t *testing.T, s string) int64 {
	t.Helper()
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"K", 10}, {"M", 20}, {"G", 30}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			if err != nil {
				t.Fatalf("size %q: %v", s, err)
			}
			return v << u.shift
		}
	}
	t.Fatalf("size %q: no unit", s)
	return 0
}

// TestUnitLimits: the units' resource limits agree with proxyd's caps: proxyd's LimitNOFILE
// holds what its default caps may open (gateway.Limits.FilesNeeded), GOMEMLIMIT is below
// MemoryMax, TasksMax is set; apid's LimitNOFILE holds a connection per request proxyd may
// have in flight and more. (systemd-analyze verify runs on both in TestMakeInstall.)
func TestUnitLimits(t *testing.T) {
	px := unitSettings(t, "../cmd/proxyd/gatehouse-proxyd.service")
	def := gateway.DefaultLimits()
	nofile, err := strconv.Atoi(px["LimitNOFILE"])
	if err != nil || nofile < def.FilesNeeded() {
		t.Errorf("proxyd's LimitNOFILE=%s; want at least %d, what its default caps may open", px["LimitNOFILE"], def.FilesNeeded())
	}
	limit, maxMem := unitBytes(t, px["Environment.GOMEMLIMIT"]), unitBytes(t, px["MemoryMax"])
	if limit <= 0 || limit >= maxMem*3/4 {
		t.Errorf("proxyd's GOMEMLIMIT=%s, MemoryMax=%s; want GOMEMLIMIT at most 3/4 of MemoryMax, leaving room for what Go does not count", px["Environment.GOMEMLIMIT"], px["MemoryMax"])
	}
	if n, err := strconv.Atoi(px["TasksMax"]); err != nil || n < 64 {
		t.Errorf("proxyd's TasksMax=%s; want a number of at least 64", px["TasksMax"])
	}
	ap := unitSettings(t, "../cmd/apid/gatehouse-apid.service")
	if n, err := strconv.Atoi(ap["LimitNOFILE"]); err != nil || n < 2*def.MaxRequests+128 {
		t.Errorf("apid's LimitNOFILE=%s; want at least %d (proxyd's requests in flight, its idle connections, gatectl)", ap["LimitNOFILE"], 2*def.MaxRequests+128)
	}
	if n, err := strconv.Atoi(ap["TasksMax"]); err != nil || n < def.MaxRequests+64 {
		t.Errorf("apid's TasksMax=%s; want at least %d (a thread per PAM check proxyd may have in flight)", ap["TasksMax"], def.MaxRequests+64)
	}
}
