package e2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"gatehouse/shmem"
)

// prober keeps a set of credentials in use through proxyd from several goroutines, as clients
// do, and accounts for every answer: a stale accept is a 200 to a request that started after
// the change ending its credential returned; a failure is a refusal of a request that ended
// before the change ending its credential began (a credential valid all along). Each request
// comes from an address of its own (X-Forwarded-For; 127.0.0.1 is a trusted proxy), so the
// refusals of ended credentials never add up to a 429.
type prober struct {
	st *stack

	mu    sync.Mutex
	live  map[string]http.Header // credentials in use, by name
	began map[string]time.Time   // when the change ending a credential began
	ended map[string]time.Time   // when it returned

	requests, stale, failed atomic.Int64
	addr                    atomic.Uint32
	stop                    chan struct{}
	done                    sync.WaitGroup
}

func (st *stack) probe(t *testing.T, workers int) *prober {
	p := &prober{st: st, live: map[string]http.Header{}, began: map[string]time.Time{}, ended: map[string]time.Time{}, stop: make(chan struct{})}
	for range workers {
		p.done.Go(p.work)
	}
	t.Cleanup(p.halt)
	return p
}

func (p *prober) halt() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
		p.done.Wait()
	}
}

func (p *prober) set(name string, h http.Header) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.live[name] = h
}

// ending brackets a change that ends the named credentials: it records when the change began,
// runs it, records when it returned and stops using them.
func (p *prober) ending(change func(), names ...string) {
	p.mu.Lock()
	now := time.Now()
	for _, n := range names {
		p.began[n] = now
	}
	p.mu.Unlock()
	change()
	p.mu.Lock()
	now = time.Now()
	for _, n := range names {
		p.ended[n] = now
	}
	p.mu.Unlock()
	// A few requests with the ended credentials after the change, then they go.
	for range 3 {
		p.once(names)
	}
	p.mu.Lock()
	for _, n := range names {
		delete(p.live, n)
	}
	p.mu.Unlock()
}

func (p *prober) work() {
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		p.once(nil)
	}
}

// once sends one request with each credential named (all live ones for nil).
func (p *prober) once(names []string) {
	p.mu.Lock()
	creds := map[string]http.Header{}
	for n, h := range p.live {
		if names == nil || containsName(names, n) {
			creds[n] = h
		}
	}
	p.mu.Unlock()
	for n, h := range creds {
		h = h.Clone()
		a := p.addr.Add(1)
		h.Set("X-Forwarded-For", fmt.Sprintf("10.%d.%d.%d", byte(a>>16), byte(a>>8), byte(a)))
		start := time.Now()
		ans, err := tryOn(p.st.http, p.st.url, call{method: "GET", path: "/version", header: h})
		end := time.Now()
		p.requests.Add(1)
		p.mu.Lock()
		began, ended := p.began[n], p.ended[n]
		p.mu.Unlock()
		switch {
		case err != nil:
			p.failed.Add(1)
		case ans.status == 200 && !ended.IsZero() && start.After(ended):
			p.stale.Add(1)
		case ans.status != 200 && (began.IsZero() || end.Before(began)):
			p.failed.Add(1)
		}
	}
}

func containsName(names []string, n string) bool {
	for _, m := range names {
		if m == n {
			return true
		}
	}
	return false
}

// alive fails the test if a daemon of st exited.
func (st *stack) alive(t *testing.T, what string) {
	t.Helper()
	for role, p := range st.procs {
		select {
		case <-p.done:
			t.Fatalf("%s: %s exited: %v\n%s", what, role, p.wait(), st.logs[role].String())
		default:
		}
	}
}

// writeBack writes counter k of apid's page back by one, as a process holding a read-write
// descriptor of the page can (root): it receives the descriptor on apid's socket and maps the
// page itself.
func writeBack(t *testing.T, socket string, k shmem.Counter) {
	t.Helper()
	conn, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf, oob := make([]byte, 16), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := conn.(*net.UnixConn).ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("apid's page: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Fatalf("apid's page: %v", err)
	}
	defer unix.Close(fds[0])
	mem, err := unix.Mmap(fds[0], 0, shmem.Size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("mapping apid's page read-write (the test runs as root or apid's user): %v", err)
	}
	defer unix.Munmap(mem)
	off := 64 * (1 + int(k))
	v := binary.NativeEndian.Uint64(mem[off:])
	binary.NativeEndian.PutUint64(mem[off:], v-1)
}

// writeMirrorBack writes counter k of the mirror file back by one.
func writeMirrorBack(t *testing.T, path string, k shmem.Counter) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || len(b) != shmem.Size {
		return // removed or truncated by an earlier round: nothing to write back
	}
	off := 64 * (1 + int(k))
	binary.NativeEndian.PutUint64(b[off:], binary.NativeEndian.Uint64(b[off:])-1)
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// TestShmemFaults: issue 18's faults, under load. A generation file truncated in place killed
// proxyd (SIGBUS, 15 of 15 tries) and apid (8 of 9); a counter written back by one, a garbage
// header or a truncation to 100 bytes let old secrets through for up to 198 ms after a rotation
// returned. Now the daemons map apid's sealed page, which nobody can shrink, and the file is a
// mirror nobody maps: each tamper below is repeated while clients use a token and a session,
// and after each a token rotation and a logout take effect at once: no daemon dies, no stale
// accept, no refusal of a credential valid all along. A counter of the page itself written back
// by one (by a root process) is noticed by apid's next bump, which lifts every counter.
func TestShmemFaults(t *testing.T) {
	st := start(t, options{})
	mirror := st.dirs.Generations()
	st.addUser(t, "bob@pbs", "bob-pass-1")
	p := st.probe(t, 4)
	session := st.login(t, "bob@pbs", "bob-pass-1")
	token := st.newToken(t, session, "ci")
	p.set("token-0", token)
	p.set("session-0", session.header(false))
	rounds := []struct {
		name   string
		n      int
		tamper func()
	}{
		{"mirror truncated to 100 bytes", 20, func() { os.Truncate(mirror, 100) }},
		{"mirror counter written back by one", 20, func() { writeMirrorBack(t, mirror, shmem.TokenShadow) }},
		{"mirror header garbage", 20, func() { writeAtFile(t, mirror, 0, []byte("garbage!")) }},
		{"mirror truncated to 0", 5, func() { os.Truncate(mirror, 0) }},
		{"mirror truncated to 4095", 5, func() { os.Truncate(mirror, 4095) }},
		{"mirror removed", 5, func() { os.Remove(mirror) }},
		{"page counter written back by one", 20, func() { writeBack(t, st.dirs.ShmemSocket(), shmem.TokenShadow) }},
	}
	n := 0
	for _, r := range rounds {
		for range r.n {
			n++
			r.tamper()
			st.alive(t, r.name)
			// The token rotated: its old secret ends.
			old := fmt.Sprintf("token-%d", n-1)
			p.ending(func() {
				a := st.admin(t, call{method: "PUT", path: "/access/users/bob@pbs/token/ci", form: url.Values{"regenerate": {"1"}}})
				var rot struct{ Secret string }
				a.decode(t, &rot)
				if a.status != 200 || rot.Secret == "" {
					t.Fatalf("%s: rotating = %d %s", r.name, a.status, a.message)
				}
				p.set(fmt.Sprintf("token-%d", n), http.Header{"Authorization": {"PBSAPIToken=bob@pbs!ci:" + rot.Secret}})
			}, old)
			// The session logged out: every ticket of bob ends.
			p.ending(func() {
				if a := st.do(t, call{method: "DELETE", path: "/access/ticket", header: session.header(true)}); a.status != 200 {
					t.Fatalf("%s: logout = %d %s", r.name, a.status, a.message)
				}
			}, fmt.Sprintf("session-%d", n-1))
			session = st.login(t, "bob@pbs", "bob-pass-1")
			p.set(fmt.Sprintf("session-%d", n), session.header(false))
		}
		t.Logf("%s × %d: %d requests so far, %d stale accepts, %d failed", r.name, r.n, p.requests.Load(), p.stale.Load(), p.failed.Load())
	}
	p.halt()
	st.alive(t, "after every round")
	if s, f := p.stale.Load(), p.failed.Load(); s != 0 || f != 0 {
		t.Errorf("%d changes under load (%d requests): %d stale accepts, %d refusals of valid credentials; want 0 and 0", 2*n, p.requests.Load(), s, f)
	}
	if p.requests.Load() < int64(10*n) {
		t.Errorf("only %d requests in %d rounds: the load did not run", p.requests.Load(), n)
	}
	// apid said so and put things right; the page was never touched by the file.
	log := st.logs["apid"].waitFor(t, `msg="config version cache broken" what=mirror`, `msg="config version cache recovered" what=mirror`,
		`what=bump`, "every counter lifted by 2^32")
	if strings.Count(log, "what=bump") == 0 {
		t.Error("apid did not report the page counter written back")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		vals, err := shmem.ReadMirror(mirror)
		page, perr := shmem.Dial(st.dirs.ShmemSocket())
		if perr != nil {
			t.Fatal(perr)
		}
		want := page.Load(shmem.TokenShadow)
		page.Close()
		if err == nil && vals[shmem.TokenShadow] == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mirror after the rounds: %v %v; want valid, token_shadow %d", vals, err, want)
		}
		time.Sleep(50 * time.Millisecond) // apid's 250 ms health check writes it; bounded poll
	}
	if moved, _ := filepath.Glob(mirror + ".corrupt-*"); len(moved) == 0 {
		t.Error("no invalid mirror moved aside")
	}
	if strings.Contains(st.logs["proxyd"].String(), "config version cache broken") {
		t.Errorf("proxyd saw a broken page:\n%s", st.logs["proxyd"].String())
	}
}

func writeAtFile(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return // removed by an earlier round
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestShmemApidRestart: apid restarted with the page the service manager kept (systemd's file
// descriptor store, emulated by the test's notify socket) is the same page: proxyd changes
// nothing, and a rotation and a logout right after the restart take effect at once, with no
// stale accept. Restarted without the store, apid makes a new page above the mirror and proxyd
// follows it within its health check.
func TestShmemApidRestart(t *testing.T) {
	for _, kept := range []bool{true, false} {
		t.Run(fmt.Sprintf("kept=%v", kept), func(t *testing.T) {
			n := listenNotify(t)
			st := start(t, options{})
			stored := n.stored(t, shmem.StoreName)
			st.addUser(t, "bob@pbs", "bob-pass-1")
			p := st.probe(t, 4)
			session := st.login(t, "bob@pbs", "bob-pass-1")
			p.set("token-0", st.newToken(t, session, "ci"))
			p.set("session-0", session.header(false))
			if err := st.procs["apid"].cmd.Process.Kill(); err != nil { // a crash
				t.Fatal(err)
			}
			<-st.procs["apid"].done
			proxyUser := fmt.Sprint(os.Getuid())
			if st.split {
				proxyUser = fmt.Sprint(nobody)
			}
			args := []string{"--config-dir", st.dirs.Config, "--run-dir", st.dirs.Run, "--proxy-user", proxyUser}
			if kept {
				st.runStored(t, "apid", false, stored, args...)
				st.logs["apid"].waitFor(t, "using the config version page the service manager kept")
			} else {
				st.run(t, "apid", false, args...)
				st.logs["proxyd"].waitFor(t, `msg="config version cache recovered" what=page`, "new_page=true")
			}
			p.ending(func() {
				a := st.admin(t, call{method: "PUT", path: "/access/users/bob@pbs/token/ci", form: url.Values{"regenerate": {"1"}}})
				if a.status != 200 {
					t.Fatalf("rotating = %d %s", a.status, a.message)
				}
			}, "token-0")
			p.ending(func() {
				if a := st.do(t, call{method: "DELETE", path: "/access/ticket", header: session.header(true)}); a.status != 200 {
					t.Fatalf("logout = %d %s", a.status, a.message)
				}
			}, "session-0")
			p.halt()
			if s, f := p.stale.Load(), p.failed.Load(); s != 0 || f != 0 {
				t.Errorf("after apid's restart (%d requests): %d stale accepts, %d refusals of valid credentials; want 0 and 0", p.requests.Load(), s, f)
			}
			if kept && strings.Contains(st.logs["proxyd"].String(), "new_page=true") {
				t.Errorf("proxyd changed pages although apid kept its own:\n%s", st.logs["proxyd"].String())
			}
			st.alive(t, "after the restart")
		})
	}
}
