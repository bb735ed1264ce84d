package e2e

// Faults (issue 7, part 3): apid killed with SIGKILL in the middle of config writes, a lock
// held by a hung process, and a full file system under a write. Each runs the real daemons.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"gatehouse/acl"
	"gatehouse/layout"
	"gatehouse/lockfile"
	"gatehouse/realm"
	"gatehouse/revocation"
	"gatehouse/shmem"
	"gatehouse/tfa"
	"gatehouse/ticket"
	"gatehouse/tokenshadow"
	"gatehouse/users"
)

// holdLocks is the "hold-locks" role: a hung process. It takes the exclusive lock on each
// lock file in paths, says "locked" on stdout and then never returns (the test kills it).
func holdLocks(paths []string) error {
	for _, p := range paths {
		if _, err := lockfile.Exclusive(p, lockfile.DefaultTimeout); err != nil {
			return err
		}
	}
	fmt.Println("locked")
	for {
		time.Sleep(time.Hour)
	}
}

// tempFiles lists the temp files lockfile.Replace leaves behind (".<name>.tmp-*") under dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".") && strings.Contains(d.Name(), ".tmp-") {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// configFiles reads every regular file under dir: path -> contents.
func configFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// parseAll reads every config file apid writes with the real parsers and fails the test unless
// each is whole. It returns the parsed user.cfg, acl.cfg and tfa.json.
func parseAll(t *testing.T, d layout.Dirs) (*users.Config, *acl.Config, *tfa.Config) {
	t.Helper()
	read := func(path string) []byte {
		b, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		return b
	}
	uc, err := users.Parse(read(d.UserCfg()))
	if err != nil {
		t.Fatalf("user.cfg is not whole: %v", err)
	}
	ac, err := acl.Parse(read(d.AclCfg()))
	if err != nil {
		t.Fatalf("acl.cfg is not whole: %v", err)
	}
	tc, err := tfa.Parse(read(d.TFA()))
	if err != nil {
		t.Fatalf("tfa.json is not whole: %v", err)
	}
	gen, err := shmem.New() // the stores' own counters: only the files are read here
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	ts, err := tokenshadow.Open(tokenshadow.Options{Path: d.TokenShadow(), LockPath: d.Lock("token.shadow"), Generations: gen})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.IDs(); err != nil {
		t.Fatalf("token.shadow is not whole: %v", err)
	}
	pw, err := realm.OpenPasswords(realm.PasswordOptions{Path: d.Shadow(), LockPath: d.Lock("shadow.json")})
	if err != nil {
		t.Fatal(err)
	}
	if err := pw.Check("nobody-at-all@pbs", "x"); !errors.Is(err, realm.ErrBadPassword) {
		t.Fatalf("shadow.json is not whole: %v", err)
	}
	rev, err := revocation.Open(revocation.Options{Path: d.Revocations(), LockPath: d.Lock("revocations"), Generations: gen})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rev.NotBefore("root@pam", time.Now()); err != nil {
		t.Fatalf("revocations are not whole: %v", err)
	}
	now := time.Now()
	if _, err := ticket.LoadSignerRing(d.AuthKey(), d.AuthRetired(), now); err != nil {
		t.Fatalf("signing key is not whole: %v", err)
	}
	if _, err := ticket.LoadKeyRing(d.AuthPub(), d.AuthRetired(), now); err != nil {
		t.Fatalf("public keys are not whole: %v", err)
	}
	if _, err := ticket.LoadCSRFKey(d.CSRFKey()); err != nil {
		t.Fatalf("CSRF key is not whole: %v", err)
	}
	return uc, ac, tc
}

// faultState is what one writer's entities hold, as far as apid acknowledged it.
type faultState struct {
	comment  string // its user's comment (user.cfg)
	secret   string // its token's secret: "" none, unknownSecret: one the client never saw
	half     bool   // with secret "": user.cfg lists the token (create or delete interrupted)
	acl      bool   // its Audit entry on its own path (acl.cfg)
	password string // its user's password (shadow.json)
	recovery bool   // its user's recovery keys (tfa.json)
}

const unknownSecret = "?"

// faultWriter is one writer goroutine: its own user, token and ACL path, and what the last
// acknowledged write left (acked) or the write in flight when apid died would leave (pending).
type faultWriter struct {
	n             int
	user, tokenid string
	acked         faultState
	pending       []faultState
	resume        chan struct{} // the killer checked its state and apid is back
}

// next makes the writer's op number seq: the call, and the states it leaves when it succeeds
// (first) or when apid died during it and it may have applied in part (all).
func (w *faultWriter) next(seq int) (call, []faultState) {
	s := w.acked
	user := url.PathEscape(w.user)
	switch seq % 5 {
	case 0:
		s.comment = fmt.Sprintf("c%d", seq)
		return call{method: "PUT", path: "/access/users/" + user, form: url.Values{"comment": {s.comment}}}, []faultState{s}
	case 1:
		tok := "/access/users/" + user + "/token/tok"
		switch {
		case w.acked.secret == "" && !w.acked.half:
			half, made := s, s
			half.half, made.secret = true, unknownSecret
			return call{method: "POST", path: tok}, []faultState{made, half}
		case w.acked.secret != "" && seq%3 != 0:
			s.secret = unknownSecret
			return call{method: "PUT", path: tok, form: url.Values{"regenerate": {"1"}}}, []faultState{s}
		default:
			half, gone := s, s
			half.secret, half.half = "", true
			gone.secret, gone.half = "", false
			return call{method: "DELETE", path: tok}, []faultState{gone, half}
		}
	case 2:
		s.acl = !s.acl
		form := url.Values{"path": {fmt.Sprintf("/fault/%d", w.n)}, "role": {"Audit"}, "auth-id": {w.user}}
		if !s.acl {
			form.Set("delete", "1")
		}
		return call{method: "PUT", path: "/access/acl", form: form}, []faultState{s}
	case 3:
		s.password = fmt.Sprintf("pw-%d-%d", w.n, seq)
		return call{method: "PUT", path: "/access/password", form: url.Values{"userid": {w.user}, "password": {s.password}}}, []faultState{s}
	default:
		s.recovery = !s.recovery
		if s.recovery {
			return call{method: "POST", path: "/access/tfa/" + user, form: url.Values{"type": {"recovery"}}}, []faultState{s}
		}
		return call{method: "DELETE", path: "/access/tfa/" + user + "/recovery"}, []faultState{s}
	}
}

// observed is a writer's entities as the files hold them.
type observed struct {
	comment         string
	inCfg, inShadow bool
	verify          func(secret string) bool
	acl             bool
	passwordOK      func(pw string) bool
	recovery        bool
}

func (o observed) String() string {
	return fmt.Sprintf("comment %q, token in user.cfg %v, in token.shadow %v, acl %v, recovery %v", o.comment, o.inCfg, o.inShadow, o.acl, o.recovery)
}

func (o observed) holds(s faultState) bool {
	switch {
	case o.comment != s.comment || o.acl != s.acl || o.recovery != s.recovery || !o.passwordOK(s.password):
		return false
	case s.secret == "":
		return !o.inShadow && o.inCfg == s.half
	default:
		return o.inShadow && o.inCfg && (s.secret == unknownSecret || o.verify(s.secret))
	}
}

// observe reads w's entities from the files (parsed by parseAll).
func observe(t *testing.T, d layout.Dirs, gen *shmem.Cache, w *faultWriter, uc *users.Config, ac *acl.Config, tc *tfa.Config) observed {
	t.Helper()
	u, _ := uc.User(w.user)
	_, inCfg := uc.Token(w.tokenid)
	ts, err := tokenshadow.Open(tokenshadow.Options{Path: d.TokenShadow(), LockPath: d.Lock("token.shadow"), Generations: gen})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := ts.IDs()
	if err != nil {
		t.Fatal(err)
	}
	pw, err := realm.OpenPasswords(realm.PasswordOptions{Path: d.Shadow(), LockPath: d.Lock("shadow.json")})
	if err != nil {
		t.Fatal(err)
	}
	o := observed{
		comment: u.Comment, inCfg: inCfg, inShadow: slices.Contains(ids, w.tokenid),
		verify:     func(secret string) bool { return ts.Verify(w.tokenid, secret) == nil },
		passwordOK: func(p string) bool { return pw.Check(w.user, p) == nil },
	}
	for _, e := range ac.Entries() {
		o.acl = o.acl || (e.UGID == w.user && e.Path == fmt.Sprintf("/fault/%d", w.n))
	}
	if ud := tc.Users[w.user]; ud != nil {
		o.recovery = ud.Recovery != nil
	}
	return o
}

// TestFaultKillApid SIGKILLs apid several times during 1 000 acknowledged config writes from
// four concurrent writers (user.cfg, token.shadow, acl.cfg, shadow.json, revocations, tfa.json
// and now and then the ticket keys), each kill after 100-250 acknowledged writes plus a random
// few more, while others are in flight. After each kill every file parses whole, every write
// acknowledged before the kill is there (an interrupted one may be there or not, in part for the
// two-file token create and delete), proxyd, never restarted, answers 503 naming apid at once
// for what needs apid and keeps serving tokens itself; apid is started again and a login and a token call
// through proxyd succeed.
func TestFaultKillApid(t *testing.T) {
	const writes, writers = 1000, 4
	st := start(t, options{})
	st.addUser(t, "watch@pbs", "watch-pw")
	st.addUser(t, "watchtok@pbs", "watchtok-pw")
	tokenHeader := http.Header{"Authorization": {"PBSAPIToken=watchtok@pbs!tok:" + st.addToken(t, "watchtok@pbs", "tok")}}
	ws := make([]*faultWriter, writers)
	for i := range ws {
		w := &faultWriter{n: i, user: fmt.Sprintf("fault%d@pbs", i), resume: make(chan struct{})}
		w.tokenid = w.user + "!tok"
		w.acked.password = "first-" + w.user
		st.addUser(t, w.user, w.acked.password)
		ws[i] = w
	}
	// acks counts acknowledged writes; parked takes a writer whose request found apid dead, so
	// that the killer may look at its state.
	acks, parked, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	failed := make(chan error, writers)
	var running sync.WaitGroup
	for _, w := range ws {
		running.Go(func() {
			for seq := 1; ; seq++ {
				c, states := w.next(seq)
				if w.n == 0 && seq%97 == 0 {
					c, states = call{method: "POST", path: "/keys/rotate"}, []faultState{w.acked}
				}
				a, err := tryOn(st.apid, "http://apid/api2/json", c)
				switch {
				case err != nil: // apid died: the write may have happened, in whole or in part
					w.pending = states
					select {
					case parked <- struct{}{}:
					case <-done:
						return
					}
					<-w.resume
					continue
				case a.status != http.StatusOK:
					failed <- fmt.Errorf("writer %d: %s %s = %d %s", w.n, c.method, c.path, a.status, a.message)
					return
				}
				w.acked = states[0]
				if c.method == "POST" && strings.HasSuffix(c.path, "/token/tok") {
					var d struct{ Value string }
					if err := json_(a, &d); err != nil {
						failed <- err
						return
					}
					w.acked.secret = d.Value
				} else if c.method == "PUT" && strings.HasSuffix(c.path, "/token/tok") {
					var d struct{ Secret string }
					if err := json_(a, &d); err != nil {
						failed <- err
						return
					}
					w.acked.secret = d.Secret
				}
				select {
				case acks <- struct{}{}:
				case <-done:
					return
				}
			}
		})
	}
	gen, err := shmem.New() // for observe's stores, which read the files while apid is down
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	acked, kills, strays, applied := 0, 0, 0, 0
	nextKill := 100 + rng.IntN(151)
	var comeBack []time.Duration
	// ack waits for the next acknowledged write; a writer's failure ends the test.
	ack := func() {
		select {
		case <-acks:
			acked++
		case err := <-failed:
			close(done)
			t.Fatal(err)
		}
	}
	for acked < writes {
		ack()
		if acked != nextKill || acked > writes-50 {
			continue
		}
		for range rng.IntN(4) { // a random few more, so the kill falls anywhere in a write
			ack()
		}
		st.kill("apid")
		kills++
		// Writes acknowledged meanwhile (answered before the kill) still count; every writer
		// ends up parked, as apid is gone.
		for n := 0; n < writers; {
			select {
			case <-acks:
				acked++
			case <-parked:
				n++
			case err := <-failed:
				close(done)
				t.Fatal(err)
			}
		}
		uc, ac, tc := parseAll(t, st.dirs)
		for _, w := range ws {
			o := observe(t, st.dirs, gen, w, uc, ac, tc)
			i := slices.IndexFunc(append([]faultState{w.acked}, w.pending...), o.holds)
			if i < 0 {
				close(done)
				t.Fatalf("kill %d after %d acknowledged writes: writer %d's files hold %v; acknowledged %+v, in flight %+v",
					kills, acked, w.n, o, w.acked, w.pending)
			}
			if i > 0 {
				w.acked = w.pending[i-1]
				applied++
			}
			w.pending = nil
		}
		strays += len(tempFiles(t, st.dirs.Config))
		st.checkApidDown(t, tokenHeader)
		began := time.Now()
		st.run(t, "apid", false, st.apidArg...)
		st.login(t, "watch@pbs", "watch-pw")
		if s := st.do(t, call{method: "GET", path: "/access/users/watchtok@pbs/token", header: tokenHeader}).status; s != 200 {
			t.Fatalf("a token call through proxyd after apid came back = %d; want 200", s)
		}
		comeBack = append(comeBack, time.Since(began))
		nextKill = acked + 100 + rng.IntN(151)
		for _, w := range ws {
			w.resume <- struct{}{}
		}
	}
	close(done)
	running.Wait()
	if kills < 3 {
		t.Fatalf("%d kills in %d writes; want at least 3", kills, writes)
	}
	parseAll(t, st.dirs)

	// A kill can leave a temp file of any config file: plant one of each, as a killed writer
	// leaves it, then restart apid and write each file once; none may be left.
	st.kill("apid")
	for _, f := range []string{st.dirs.UserCfg(), st.dirs.TokenShadow(), st.dirs.AclCfg(), st.dirs.Shadow(), st.dirs.TFA(),
		st.dirs.Revocations(), st.dirs.AuthKey(), st.dirs.AuthPub(), st.dirs.AuthRetired(), st.dirs.CSRFKey()} {
		stale := filepath.Join(filepath.Dir(f), "."+filepath.Base(f)+".tmp-4242")
		if err := os.WriteFile(stale, []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st.run(t, "apid", false, st.apidArg...)
	w := ws[0]
	for seq := range 5 {
		c, _ := w.next(seq)
		if a := st.admin(t, c); a.status != 200 {
			t.Fatalf("%s %s after the last restart = %d %q", c.method, c.path, a.status, a.message)
		}
	}
	if a := st.admin(t, call{method: "POST", path: "/keys/rotate"}); a.status != 200 {
		t.Fatalf("rotating keys after the last restart = %d %q", a.status, a.message)
	}
	if tmp := tempFiles(t, st.dirs.Config); len(tmp) != 0 {
		t.Errorf("after a restart and a write of each file, temp files of killed writers are left: %q", tmp)
	}
	parseAll(t, st.dirs)
	t.Logf("%d acknowledged writes, %d kills of apid; of the %d writes that got no answer %d took effect (in whole or in part); %d stray temp files found after kills; apid back (listening, then a login and a token call through proxyd) after %v",
		acked, kills, kills*writers, applied, strays, comeBack)
}

// kill sends SIGKILL to a daemon and returns once it is gone.
func (st *stack) kill(role string) {
	p := st.procs[role]
	p.cmd.Process.Kill()
	<-p.done
	p.wait()
}

// json_ decodes a's data into v.
func json_(a answer, v any) error {
	if err := json.Unmarshal(a.data, v); err != nil {
		return fmt.Errorf("decoding %s: %w", a.data, err)
	}
	return nil
}

// checkApidDown checks what proxyd answers while apid is dead: a login and a forwarded token
// call get 503 naming apid at once (within 10 s, not a hang), and the token, which proxyd
// verifies itself, still answers GET /version.
func (st *stack) checkApidDown(t *testing.T, tokenHeader http.Header) {
	t.Helper()
	hc := *st.http
	hc.Timeout = 10 * time.Second
	for _, c := range []call{
		{method: "POST", path: "/access/ticket", form: url.Values{"username": {"watch@pbs"}, "password": {"watch-pw"}}},
		{method: "GET", path: "/access/users/watchtok@pbs/token", header: tokenHeader},
	} {
		a, err := tryOn(&hc, st.url, c)
		if err != nil {
			t.Fatalf("proxyd while apid is down: %v", err)
		}
		if a.status != http.StatusServiceUnavailable || a.message != "authentication service (apid) unreachable" {
			t.Fatalf("proxyd while apid is down: %s %s = %d %q; want 503 authentication service (apid) unreachable", c.method, c.path, a.status, a.message)
		}
	}
	if s := st.versionWith(t, tokenHeader); s != 200 {
		t.Fatalf("GET /version with a token while apid is down = %d; want 200 (proxyd verifies tokens itself)", s)
	}
}

// TestFaultHungLock has a hung process (the re-executed test binary) hold the locks of
// token.shadow and user.cfg. Writes of those files, through proxyd and with gatectl, fail after
// apid's --lock-timeout (1 s here) with 503 naming the lock and the timeout; logins, reads,
// token calls and writes of other files keep working meanwhile; once the process is killed,
// the writes succeed.
func TestFaultHungLock(t *testing.T) {
	const timeout = time.Second
	st := start(t, options{apidArgs: []string{"--lock-timeout", timeout.String()}})
	gatectl := ctl{bin: buildGatectl(t), dirs: st.dirs}
	st.addUser(t, "boss@pbs", "boss-pw")
	st.admin(t, call{method: "PUT", path: "/access/acl", form: url.Values{"path": {"/"}, "role": {"Admin"}, "auth-id": {"boss@pbs"}}})
	st.addUser(t, "hung@pbs", "hung-pw")
	secret := st.addToken(t, "hung@pbs", "tok")
	tokenHeader := http.Header{"Authorization": {"PBSAPIToken=hung@pbs!tok:" + secret}}
	boss := st.login(t, "boss@pbs", "boss-pw")

	locks := []string{st.dirs.Lock("token.shadow"), st.dirs.Lock("user.cfg")}
	hung := st.holdLocks(t, locks...)

	writes := []struct {
		c    call
		lock string
	}{
		{call{method: "PUT", path: "/access/users/hung@pbs", form: url.Values{"comment": {"changed"}}}, locks[1]},
		{call{method: "PUT", path: "/access/users/hung@pbs/token/tok", form: url.Values{"regenerate": {"1"}}}, locks[0]},
	}
	for _, wr := range writes {
		wr.c.header = boss.header(true)
		// A login, reads, a token call and another file's write while the write waits.
		other := make(chan error, 1)
		go func() {
			other <- st.otherRequests(boss, tokenHeader)
		}()
		began := time.Now()
		a := st.do(t, wr.c)
		took := time.Since(began)
		if a.status != http.StatusServiceUnavailable || !strings.Contains(a.message, wr.lock) || !strings.Contains(a.message, "timeout after "+timeout.String()) {
			t.Errorf("%s %s with %s held = %d %q; want 503 naming the lock and the timeout", wr.c.method, wr.c.path, wr.lock, a.status, a.message)
		}
		if took < timeout || took > lockfile.DefaultTimeout {
			t.Errorf("%s %s failed after %v; want the lock timeout, %v", wr.c.method, wr.c.path, took, timeout)
		}
		if err := <-other; err != nil {
			t.Errorf("while %s waited for its lock: %v", wr.c.path, err)
		}
		t.Logf("%s %s: %d %q after %v", wr.c.method, wr.c.path, a.status, a.message, took.Round(time.Millisecond))
	}
	for _, args := range [][]string{{"user", "update", "hung@pbs", "--comment", "by gatectl"}, {"token", "rotate", "hung@pbs", "tok"}} {
		r := gatectl.run(t, "", args...)
		r.expect(t, 1, "timeout after "+timeout.String())
		t.Logf("gatectl %q: %v", args, r)
		if !strings.Contains(r.stderr, "lock") || r.stdout != "" {
			t.Errorf("gatectl %q with the lock held: %v; want the lock named and nothing on stdout", args, r)
		}
	}

	hung.Process.Kill()
	hung.Wait()
	if a := st.do(t, call{method: "PUT", path: "/access/users/hung@pbs", form: url.Values{"comment": {"after"}}, header: boss.header(true)}); a.status != 200 {
		t.Fatalf("writing user.cfg after the hung process died = %d %q", a.status, a.message)
	}
	if r := gatectl.run(t, "", "token", "rotate", "hung@pbs", "tok"); r.code != 0 {
		t.Errorf("gatectl token rotate after the hung process died: %v; want exit 0", r)
	}
	gatectl.ok(t, "", "user", "update", "hung@pbs", "--comment", "by gatectl")
	if s := st.tokenStatus(t, "hung@pbs!tok", secret); s != http.StatusUnauthorized {
		t.Errorf("the old secret after the rotation = %d; want 401", s)
	}
}

// addToken makes API token user!name as root@pam and returns its secret.
func (st *stack) addToken(t *testing.T, user, name string) string {
	t.Helper()
	a := st.admin(t, call{method: "POST", path: "/access/users/" + url.PathEscape(user) + "/token/" + name})
	var d struct{ Value string }
	if a.decode(t, &d); a.status != 200 || d.Value == "" {
		t.Fatalf("making token %s!%s = %d %q %s", user, name, a.status, a.message, a.data)
	}
	return d.Value
}

// holdLocks starts the hung process holding the given lock files and returns once it holds
// them; it is killed at cleanup at the latest.
func (st *stack) holdLocks(t *testing.T, paths ...string) *exec.Cmd {
	t.Helper()
	js, _ := json.Marshal(paths)
	cmd := exec.Command(st.bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=hold-locks", argsEnv+"="+string(js))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	if line, err := bufio.NewReader(out).ReadString('\n'); line != "locked\n" {
		t.Fatalf("the lock holder said %q, %v; want locked", line, err)
	}
	return cmd
}

// otherRequests is what must keep working while user.cfg and token.shadow are locked: a
// login, reading users, a token call and writes of acl.cfg and shadow.json.
func (st *stack) otherRequests(boss session, tokenHeader http.Header) error {
	for _, c := range []call{
		{method: "POST", path: "/access/ticket", form: url.Values{"username": {"hung@pbs"}, "password": {"hung-pw"}}},
		{method: "GET", path: "/access/users", header: boss.header(false)},
		{method: "GET", path: "/version", header: tokenHeader},
		{method: "GET", path: "/access/users/hung@pbs/token", header: tokenHeader},
		{method: "PUT", path: "/access/acl", form: url.Values{"path": {"/hung"}, "role": {"Audit"}, "auth-id": {"hung@pbs"}}, header: boss.header(true)},
		{method: "PUT", path: "/access/password", form: url.Values{"userid": {"hung@pbs"}, "password": {"hung-pw"}, "confirmation-password": {"boss-pw"}}, header: boss.header(true)},
	} {
		a, err := tryOn(st.http, st.url, c)
		if err != nil {
			return err
		}
		if a.status != 200 {
			return fmt.Errorf("%s %s = %d %q; want 200", c.method, c.path, a.status, a.message)
		}
	}
	return nil
}

// TestFaultDiskFull fills the file system under apid's config directory, then writes each
// kind of config file: each write fails with 507 naming the cause and the file, the old files
// are intact byte for byte and still served, no temp file is left and apid keeps running;
// once space is freed every write works. The file system is a 1 MiB tmpfs when mounting is
// permitted (as root); the file-size limit (RLIMIT_FSIZE, set on the running apid with
// prlimit) runs always, as the fallback where mounting is not permitted.
func TestFaultDiskFull(t *testing.T) {
	t.Run("tmpfs", func(t *testing.T) {
		var filler string
		mounted := false
		st := start(t, options{prepare: func(t *testing.T, d layout.Dirs) {
			if err := os.MkdirAll(d.Config, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Mount("tmpfs", d.Config, "tmpfs", 0, "size=1m,mode=0755"); err != nil {
				t.Logf("mounting a tmpfs is not permitted here (%v): the rlimit subtest simulates the full disk", err)
				return
			}
			mounted = true
			t.Cleanup(func() {
				if err := syscall.Unmount(d.Config, syscall.MNT_DETACH); err != nil {
					t.Errorf("unmounting %s: %v", d.Config, err)
				}
			})
		}})
		if !mounted {
			t.Skip("no tmpfs (see the log); the rlimit subtest covers the full disk")
		}
		t.Log("disk full: a 1 MiB tmpfs on the config directory, filled by a file")
		filler = filepath.Join(st.dirs.Config, "filler")
		diskFull(t, st, "no space left on device", func() {
			f, err := os.Create(filler)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			buf := make([]byte, 4096)
			for {
				if _, err := f.Write(buf); err != nil {
					if !errors.Is(err, syscall.ENOSPC) {
						t.Fatal(err)
					}
					return
				}
			}
		}, func() {
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
		})
	})
	t.Run("rlimit", func(t *testing.T) {
		st := start(t, options{})
		t.Log("disk full: RLIMIT_FSIZE of 1 byte on the running apid (prlimit)")
		pid := st.procs["apid"].cmd.Process.Pid
		limit := func(n uint64) {
			if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: n, Max: unix.RLIM_INFINITY}, nil); err != nil {
				t.Fatalf("prlimit RLIMIT_FSIZE of apid: %v", err)
			}
		}
		diskFull(t, st, "file too large", func() { limit(1) }, func() { limit(unix.RLIM_INFINITY) })
	})
}

// diskFull runs the disk-full checks on st: fill makes the file system full, free frees it;
// want is the errno's text the failed writes must name.
func diskFull(t *testing.T, st *stack, want string, fill, free func()) {
	st.addUser(t, "full@pbs", "full-pw")
	secret := st.addToken(t, "full@pbs", "tok")
	st.login(t, "full@pbs", "full-pw")
	writes := []struct {
		c    call
		file string
	}{
		{call{method: "PUT", path: "/access/users/full@pbs", form: url.Values{"comment": {"new"}}}, st.dirs.UserCfg()},
		{call{method: "PUT", path: "/access/users/full@pbs/token/tok", form: url.Values{"regenerate": {"1"}}}, st.dirs.TokenShadow()},
		{call{method: "PUT", path: "/access/acl", form: url.Values{"path": {"/full"}, "role": {"Audit"}, "auth-id": {"full@pbs"}}}, st.dirs.AclCfg()},
		{call{method: "PUT", path: "/access/password", form: url.Values{"userid": {"full@pbs"}, "password": {"new-pw"}}}, st.dirs.Shadow()},
		{call{method: "POST", path: "/access/tfa/full@pbs", form: url.Values{"type": {"recovery"}}}, st.dirs.TFA()},
		{call{method: "DELETE", path: "/access/ticket"}, st.dirs.Revocations()},
		{call{method: "POST", path: "/keys/rotate"}, st.dirs.AuthRetired()},
	}
	before := configFiles(t, st.dirs.Config)
	fill()
	for _, wr := range writes {
		a := st.admin(t, wr.c)
		if a.status != http.StatusInsufficientStorage || !strings.Contains(a.message, want) || !strings.Contains(a.message, filepath.Base(wr.file)) {
			t.Errorf("%s %s on a full disk = %d %q; want 507 naming %q and %s", wr.c.method, wr.c.path, a.status, a.message, want, wr.file)
		}
		t.Logf("%s %s: %d %q", wr.c.method, wr.c.path, a.status, a.message)
		after := configFiles(t, st.dirs.Config)
		delete(after, filepath.Join(st.dirs.Config, "filler"))
		for p, b := range before {
			if after[p] != b {
				t.Errorf("after %s %s on a full disk, %s changed", wr.c.method, wr.c.path, p)
			}
		}
		if tmp := tempFiles(t, st.dirs.Config); len(tmp) != 0 {
			t.Errorf("after %s %s on a full disk, temp files are left: %q", wr.c.method, wr.c.path, tmp)
		}
		select {
		case <-st.procs["apid"].done:
			t.Fatalf("apid exited after %s %s on a full disk", wr.c.method, wr.c.path)
		default:
		}
	}
	// Still served: the old password, the old token secret, the old comment.
	st.login(t, "full@pbs", "full-pw")
	if s := st.tokenStatus(t, "full@pbs!tok", secret); s != 200 {
		t.Errorf("the token on a full disk = %d; want 200", s)
	}
	var u struct{ Comment string }
	st.admin(t, call{method: "GET", path: "/access/users/full@pbs"}).decode(t, &u)
	if u.Comment != "" {
		t.Errorf("comment on a full disk = %q; want none, as before", u.Comment)
	}
	free()
	for _, wr := range writes {
		if a := st.admin(t, wr.c); a.status != 200 {
			t.Errorf("%s %s after space was freed = %d %q; want 200", wr.c.method, wr.c.path, a.status, a.message)
		}
	}
	st.login(t, "full@pbs", "new-pw")
	if tmp := tempFiles(t, st.dirs.Config); len(tmp) != 0 {
		t.Errorf("temp files are left: %q", tmp)
	}
}
