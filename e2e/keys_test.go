package e2e

import (
	"bytes"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"gatehouse/ticket"
)

type keyInfo struct {
	Algorithm   string `json:"algorithm"`
	Fingerprint string `json:"fingerprint"`
	Previous    []struct {
		Fingerprint string `json:"fingerprint"`
		ValidUntil  int64  `json:"valid-until"`
	} `json:"previous"`
}

type apidStatus struct {
	Version     string            `json:"version"`
	PID         int               `json:"pid"`
	Started     int64             `json:"started"`
	Uptime      int64             `json:"uptime"`
	Generations map[string]uint64 `json:"generations"`
	Key         keyInfo           `json:"key"`
}

// TestKeyRotation rotates the signing key through apid's API: tickets signed before keep
// working in proxyd until they expire but are never renewed, new tickets use the new key, and
// the old private key can no longer mint tickets that proxyd accepts as new. What a stolen old
// key still can do (sign tickets dated before its retirement, which work until they expire)
// becomes nothing once renewal refuses them and a rotation with revoke-sessions ends them.
func TestKeyRotation(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "rita@pbs", "rita-pass-1")
	before := st.login(t, "rita@pbs", "rita-pass-1")
	// A two-step login under way: its "!tfa!" ticket stands for a checked password.
	st.addUser(t, "tim@pbs", "tim-pass-1")
	timKey := newOTPKey(t)
	st.enrolTOTP(t, st.login(t, "tim@pbs", "tim-pass-1"), "tim-pass-1", timKey, timKey.code(t, totpStep()))
	timChallenge, _ := st.tfaStep1(t, "tim@pbs", "tim-pass-1", nil)
	oldSigner, err := ticket.LoadSigner(st.dirs.AuthKey())
	if err != nil {
		t.Fatal(err)
	}
	var s0 apidStatus
	a := st.admin(t, call{method: "GET", path: "/status"})
	if a.status != 200 {
		t.Fatalf("GET /status = %d %s", a.status, a.message)
	}
	a.decode(t, &s0)
	if s0.PID <= 0 || s0.Key.Algorithm != "Ed25519" || s0.Key.Fingerprint != oldSigner.Public().Fingerprint() || len(s0.Generations) != 4 {
		t.Fatalf("status before the rotation: %+v", s0)
	}

	a = st.admin(t, call{method: "POST", path: "/keys/rotate"})
	if a.status != 200 {
		t.Fatalf("POST /keys/rotate = %d %s", a.status, a.message)
	}
	var k keyInfo
	a.decode(t, &k)
	now := time.Now()
	if k.Fingerprint == s0.Key.Fingerprint || len(k.Previous) != 1 || k.Previous[0].Fingerprint != s0.Key.Fingerprint {
		t.Fatalf("rotation answered %+v; want a new key and the old one as previous", k)
	}
	if until := time.Unix(k.Previous[0].ValidUntil, 0); until.Before(now.Add(ticket.FullLifetime-time.Minute)) || until.After(now.Add(ticket.FullLifetime+time.Minute)) {
		t.Errorf("old key valid until %v; want about now + 2 h", until)
	}
	var s1 apidStatus
	st.admin(t, call{method: "GET", path: "/status"}).decode(t, &s1)
	if s1.Generations["keys"] != s0.Generations["keys"]+1 || s1.Key.Fingerprint != k.Fingerprint {
		t.Errorf("status after the rotation: keys generation %d (before %d), key %s; want +1 and %s",
			s1.Generations["keys"], s0.Generations["keys"], s1.Key.Fingerprint, k.Fingerprint)
	}
	if fi, err := os.Stat(st.dirs.AuthRetired()); err != nil || fi.Mode().Perm() != ticket.PubFileMode {
		t.Errorf("authkey.retired: %v; want mode %#o", err, ticket.PubFileMode)
	}

	get := func(tk string) int {
		t.Helper()
		return st.do(t, call{method: "GET", path: "/version", header: http.Header{"Cookie": {"PBSAuthCookie=" + tk}}}).status
	}
	if got := get(before.ticket); got != 200 {
		t.Errorf("ticket from before the rotation = %d; want 200 until it expires", got)
	}
	after := st.login(t, "rita@pbs", "rita-pass-1")
	if got := get(after.ticket); got != 200 {
		t.Errorf("ticket from after the rotation = %d; want 200", got)
	}
	newPub, err := ticket.LoadVerifier(st.dirs.AuthPub())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := newPub.VerifyUser(after.ticket, "PBS", time.Now()); err != nil {
		t.Errorf("a new login is not signed by the new key: %v", err)
	}
	renew := func(user, tk string) int {
		t.Helper()
		return st.do(t, call{method: "POST", path: "/access/ticket", form: url.Values{"username": {user}, "password": {tk}}}).status
	}
	if got := renew("rita@pbs", after.ticket); got != 200 {
		t.Errorf("renewing the new key's ticket = %d; want 200", got)
	}
	if got := renew("rita@pbs", before.ticket); got != 401 {
		t.Errorf("renewing the old key's ticket = %d; want 401: a retired key never mints a ticket of the new one", got)
	}
	// The old private key, stolen, cannot make new tickets...
	forged, err := oldSigner.SignUser("PBS", "rita@pbs", time.Now().Add(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got := get(forged); got != 401 {
		t.Errorf("ticket signed by the retired key after the rotation = %d; want 401", got)
	}
	// ...but it can backdate one, root@pam's too: that works as a session until it expires,
	// and is never renewed into a ticket of the new key.
	backdated, err := oldSigner.SignUser("PBS", "root@pam", time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got := get(backdated); got != 200 {
		t.Errorf("backdated ticket of the retired key = %d; want 200 until it expires (the bound the README states)", got)
	}
	if got := renew("root@pam", backdated); got != 401 {
		t.Errorf("renewing a backdated ticket of the retired key = %d; want 401", got)
	}
	if lines := st.failLines(t, "root@pam"); len(lines) != 1 || !strings.HasSuffix(lines[0], "msg=ticket of a retired signing key cannot be renewed") {
		t.Errorf("auth log for root@pam = %q; want the refused renewal", lines)
	}
	// The second step of a login begun before the rotation starts over: the retired key's
	// "!tfa!" ticket is refused, a new one works.
	if a := st.tfaStep2(t, "tim@pbs", timChallenge, "totp:"+timKey.code(t, totpStep()+1), nil); a.status != 401 {
		t.Errorf("second step with the retired key's challenge ticket = %d; want 401", a.status)
	}
	if lines := st.failLines(t, "tim@pbs"); len(lines) != 1 || !strings.HasSuffix(lines[0], "msg=tfa challenge ticket of a retired signing key") {
		t.Errorf("auth log for tim = %q; want the refused second step", lines)
	}
	timChallenge, _ = st.tfaStep1(t, "tim@pbs", "tim-pass-1", nil)
	st.fullSession(t, st.tfaStep2(t, "tim@pbs", timChallenge, "totp:"+timKey.code(t, totpStep()+1), nil), "tim@pbs")
	// A rotation that revokes the sessions ends all of them at once, in proxyd and for apid.
	a = st.admin(t, call{method: "POST", path: "/keys/rotate", form: url.Values{"revoke-sessions": {"1"}}})
	if a.status != 200 {
		t.Fatalf("POST /keys/rotate revoke-sessions=1 = %d %s", a.status, a.message)
	}
	a.decode(t, &k)
	if len(k.Previous) != 0 {
		t.Errorf("rotation revoking sessions keeps %d previous keys; want 0", len(k.Previous))
	}
	for name, tk := range map[string]string{"from before the first rotation": before.ticket, "from between": after.ticket, "backdated by the stolen key": backdated} {
		if got := get(tk); got != 401 {
			t.Errorf("ticket %s, after revoke-sessions = %d; want 401", name, got)
		}
		if got := st.do(t, call{method: "PUT", path: "/access/users/rita@pbs", form: url.Values{"comment": {"x"}}, header: http.Header{"Cookie": {"PBSAuthCookie=" + tk}, "CSRFPreventionToken": {after.csrf}}}).status; got != 401 {
			t.Errorf("ticket %s, a change after revoke-sessions = %d; want 401", name, got)
		}
	}
	if got := get(st.login(t, "rita@pbs", "rita-pass-1").ticket); got != 200 {
		t.Errorf("new login after revoke-sessions = %d; want 200", got)
	}
	if a := st.admin(t, call{method: "POST", path: "/keys/rotate", form: url.Values{"revoke-sessions": {"maybe"}}}); a.status != 400 {
		t.Errorf("revoke-sessions=maybe = %d; want 400", a.status)
	}
	// proxyd does not offer the call.
	if a := st.do(t, call{method: "POST", path: "/keys/rotate", header: after.header(true)}); a.status == 200 {
		t.Errorf("POST /keys/rotate through proxyd = %d; want a refusal", a.status)
	}
}

// TestApidReloadKeys: an administrator replaces authkey.key by hand and sends apid SIGHUP. apid
// rewrites authkey.pub to match, signs with the new key and bumps the keys generation, so
// proxyd accepts the new tickets without a restart of either daemon; a bad key file is refused
// and the old key keeps signing.
func TestApidReloadKeys(t *testing.T) {
	n := listenNotify(t)
	st := start(t, options{})
	pid := st.procs["apid"].cmd.Process.Pid
	n.expect(t, pid, "READY=1")
	st.addUser(t, "hal@pbs", "hal-pass-1")
	before := st.login(t, "hal@pbs", "hal-pass-1")

	// A key file group may read is refused: the reload fails and nothing changes.
	saved, err := os.ReadFile(st.dirs.AuthKey())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(st.dirs.AuthKey(), 0o640); err != nil {
		t.Fatal(err)
	}
	hup(t, n, pid, "STATUS=reload failed: ")
	if err := os.Chmod(st.dirs.AuthKey(), 0o600); err != nil {
		t.Fatal(err)
	}
	if a := st.login(t, "hal@pbs", "hal-pass-1"); a.ticket == "" {
		t.Fatal("no login after a failed reload")
	}

	dir := t.TempDir()
	key, pub := dir+"/authkey.key", dir+"/authkey.pub"
	if err := ticket.GenerateKeys(key, pub, -1); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(key, st.dirs.AuthKey()); err != nil {
		t.Fatal(err)
	}
	hup(t, n, pid, "STATUS=reloaded at ")
	want, err := ticket.LoadVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ticket.LoadVerifier(st.dirs.AuthPub()); err != nil || got.Fingerprint() != want.Fingerprint() {
		t.Fatalf("authkey.pub after the reload: %v; want the new key's public half", err)
	}
	after := st.login(t, "hal@pbs", "hal-pass-1")
	if _, _, err := want.VerifyUser(after.ticket, "PBS", time.Now()); err != nil {
		t.Errorf("login after the reload is not signed by the new key: %v", err)
	}
	get := func(tk string) int {
		t.Helper()
		return st.do(t, call{method: "GET", path: "/version", header: http.Header{"Cookie": {"PBSAuthCookie=" + tk}}}).status
	}
	if got := get(after.ticket); got != 200 {
		t.Errorf("proxyd with the new key's ticket = %d; want 200", got)
	}
	// A key replaced by hand is not a rotation: the old key's tickets end at once.
	if got := get(before.ticket); got != 401 {
		t.Errorf("proxyd with the replaced key's ticket = %d; want 401", got)
	}
	if bytes.Equal(saved, mustRead(t, st.dirs.AuthKey())) {
		t.Fatal("authkey.key was not replaced")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
