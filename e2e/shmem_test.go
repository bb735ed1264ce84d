package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The generation file (shmem) removed, overwritten or re-made by a restarted apid while the
// daemons run: both say so in their logs, apid makes a new file, proxyd follows it, and a
// token rotation and a logout made afterwards take effect in proxyd within the bound below,
// never later. Token rotations are also caught by proxyd's polling of token.shadow; a logout's
// revocation is caught only through the generation file, which makes that check the one that
// fails when proxyd does not follow.
func TestShmemBroken(t *testing.T) {
	t.Run("removed", func(t *testing.T) {
		st := start(t, options{})
		p := st.prepareShmem(t)
		if err := os.Remove(st.dirs.Generations()); err != nil {
			t.Fatal(err)
		}
		st.logs["apid"].waitFor(t, `msg="config version cache broken"`, "no such file or directory", `msg="config version cache recovered`, "made=true")
		st.logs["proxyd"].waitFor(t, `msg="config version cache broken"`, `msg="config version cache recovered`)
		p.changesTakeEffect(t, st)
	})
	t.Run("header overwritten", func(t *testing.T) {
		st := start(t, options{})
		p := st.prepareShmem(t)
		garbage := []byte("garbage!garbage!")
		f, err := os.OpenFile(st.dirs.Generations(), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(garbage, 0); err != nil {
			t.Fatal(err)
		}
		f.Close()
		log := st.logs["apid"].waitFor(t, `msg="config version cache broken"`, `magic \"garbage!\", want \"GATECVC\\n\": wrong magic`,
			`msg="config version cache recovered`, "moved_invalid_file_to=")
		st.logs["proxyd"].waitFor(t, `msg="config version cache broken"`, `msg="config version cache recovered`)
		_, moved, _ := strings.Cut(log, "moved_invalid_file_to=")
		moved, _, _ = strings.Cut(moved, "\n")
		if b, err := os.ReadFile(moved); err != nil || !bytes.HasPrefix(b, garbage) || !strings.HasPrefix(moved, st.dirs.Generations()+".corrupt-") {
			t.Errorf("moved-aside file %q: %v; want the garbage kept next to the path", moved, err)
		}
		p.changesTakeEffect(t, st)
	})
	t.Run("apid restarted after removal", func(t *testing.T) {
		st := start(t, options{})
		p := st.prepareShmem(t)
		if err := st.stop("apid"); err != nil {
			t.Fatalf("stopping apid: %v", err)
		}
		if err := os.Remove(st.dirs.Generations()); err != nil {
			t.Fatal(err)
		}
		// proxyd notices the removal alone and runs on its private page meanwhile.
		st.logs["proxyd"].waitFor(t, `msg="config version cache broken"`, "no such file or directory", "caches are re-read from disk")
		proxyUser := fmt.Sprint(os.Getuid())
		if st.split {
			proxyUser = fmt.Sprint(nobody)
		}
		st.run(t, "apid", false, "--config-dir", st.dirs.Config, "--run-dir", st.dirs.Run, "--proxy-user", proxyUser)
		st.logs["proxyd"].waitFor(t, `msg="config version cache recovered`)
		p.changesTakeEffect(t, st)
	})
}

// shmemCase is what prepareShmem made: a token and a session proxyd has cached.
type shmemCase struct {
	tokenid, secret string
	session         session
}

// prepareShmem makes user bob with a token and a session, and uses both through proxyd so
// that its caches hold them.
func (st *stack) prepareShmem(t *testing.T) shmemCase {
	t.Helper()
	st.addUser(t, "bob@pbs", "bob-pass-1")
	a := st.admin(t, call{method: "POST", path: "/access/users/bob@pbs/token/ci"})
	if a.status != 200 {
		t.Fatalf("creating a token = %d %s", a.status, a.message)
	}
	var tok struct{ Tokenid, Value string }
	a.decode(t, &tok)
	p := shmemCase{tokenid: tok.Tokenid, secret: tok.Value, session: st.login(t, "bob@pbs", "bob-pass-1")}
	for range 2 {
		if s := st.tokenStatus(t, p.tokenid, p.secret); s != 200 {
			t.Fatalf("the token = %d; want 200", s)
		}
		if s := st.versionWith(t, p.session.header(false)); s != 200 {
			t.Fatalf("the session = %d; want 200", s)
		}
	}
	return p
}

// refusalBound is how long after a change proxyd may still accept what it revoked: a few
// health checks (250 ms each) with room for a loaded machine; "never" is what it rules out.
const refusalBound = 5 * time.Second

// changesTakeEffect rotates the token and logs the session out (through apid), then polls
// proxyd until both are refused, within refusalBound. The new secret and a new session work,
// and the generation file is there and valid.
func (p shmemCase) changesTakeEffect(t *testing.T, st *stack) {
	t.Helper()
	a := st.admin(t, call{method: "PUT", path: "/access/users/bob@pbs/token/ci", form: url.Values{"regenerate": {"1"}}})
	if a.status != 200 {
		t.Fatalf("rotating the token = %d %s", a.status, a.message)
	}
	var rot struct{ Secret string }
	a.decode(t, &rot)
	if a := st.do(t, call{method: "DELETE", path: "/access/ticket", header: p.session.header(true)}); a.status != 200 {
		t.Fatalf("logout = %d %s", a.status, a.message)
	}
	// Each is polled until it is refused, and no longer: refusals count against the client's
	// failure budget (429).
	changed := time.Now()
	tokenStatus, sessionStatus := 0, 0
	for tokenStatus != 401 || sessionStatus != 401 {
		if time.Since(changed) > refusalBound {
			t.Fatalf("%v after the rotation and logout: old secret %d, logged-out session %d; want 401 for both",
				refusalBound, tokenStatus, sessionStatus)
		}
		if tokenStatus != 401 {
			tokenStatus = st.tokenStatus(t, p.tokenid, p.secret)
		}
		if sessionStatus != 401 {
			sessionStatus = st.versionWith(t, p.session.header(false))
		}
	}
	t.Logf("old secret and logged-out session refused %v after the change", time.Since(changed).Round(time.Millisecond))
	if s := st.tokenStatus(t, p.tokenid, rot.Secret); s != 200 {
		t.Errorf("the new secret = %d; want 200", s)
	}
	fresh := st.login(t, "bob@pbs", "bob-pass-1")
	if s := st.versionWith(t, fresh.header(false)); s != 200 {
		t.Errorf("a new session = %d; want 200", s)
	}
	if a := st.do(t, call{method: "PUT", path: "/access/users/bob@pbs", form: url.Values{"comment": {"after"}}, header: fresh.header(true)}); a.status != http.StatusOK {
		t.Errorf("a write with the new session and its CSRF token = %d %s; want 200", a.status, a.message)
	}
	b, err := os.ReadFile(st.dirs.Generations())
	if err != nil || len(b) != 4096 || !bytes.HasPrefix(b, []byte("GATECVC\n")) {
		t.Errorf("generation file after the recovery: %d bytes, %v; want a valid file", len(b), err)
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(st.dirs.Generations()), ".*.tmp-*")); len(m) != 0 {
		t.Errorf("temp files left: %q", m)
	}
}
