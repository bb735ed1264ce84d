package ticket

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type keyFiles struct{ key, pub, retired string }

func newKeyFiles(t *testing.T) keyFiles {
	t.Helper()
	dir := t.TempDir()
	k := keyFiles{filepath.Join(dir, "authkey.key"), filepath.Join(dir, "authkey.pub"), filepath.Join(dir, "authkey.retired")}
	if err := GenerateKeys(k.key, k.pub, -1); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRotateKeys(t *testing.T) {
	k := newKeyFiles(t)
	t0 := time.Unix(1_800_000_000, 0)
	old, err := LoadSigner(k.key)
	if err != nil {
		t.Fatal(err)
	}
	before, err := old.SignUser("PBS", "alice@pbs", t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	tfaBefore, err := old.SignTFA("PBS", "alice@pbs", `{"totp":true}`, t0.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// A ticket the old key signs after the rotation (a stolen key) must not verify.
	after, err := old.SignUser("PBS", "mallory@pbs", t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	s, err := RotateKeys(k.key, k.pub, k.retired, -1, t0, false)
	if err != nil {
		t.Fatal(err)
	}
	if s.Public().Fingerprint() == old.Public().Fingerprint() {
		t.Fatal("rotation kept the same key")
	}
	fresh, err := s.SignUser("PBS", "bob@pbs", t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := LoadKeyRing(k.pub, k.retired, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if ring.Fingerprint() != s.Public().Fingerprint() {
		t.Errorf("authkey.pub holds %s, want the new key %s", ring.Fingerprint(), s.Public().Fingerprint())
	}
	now := t0.Add(time.Minute)
	for _, v := range []*Verifier{ring, s.Public()} {
		if u, _, err := v.VerifyUser(before, "PBS", now); err != nil || u != "alice@pbs" {
			t.Errorf("ticket of the old key, issued before the rotation: %q %v; want alice@pbs", u, err)
		}
		if _, _, err := v.VerifyTFA(tfaBefore, "PBS", "alice@pbs", now); err != nil {
			t.Errorf("TFA ticket of the old key: %v", err)
		}
		if u, _, err := v.VerifyUser(fresh, "PBS", now); err != nil || u != "bob@pbs" {
			t.Errorf("ticket of the new key: %q %v", u, err)
		}
		if _, _, err := v.VerifyUser(after, "PBS", now); !errors.Is(err, ErrSignature) {
			t.Errorf("old key's ticket issued after the rotation: %v; want ErrSignature", err)
		}
	}
	// The old ticket ends with its own lifetime; the retired key is dropped after that.
	end := t0.Add(-time.Hour).Add(FullLifetime)
	if _, _, err := ring.VerifyUser(before, "PBS", end); err != nil {
		t.Errorf("at the end of its lifetime: %v", err)
	}
	if _, _, err := ring.VerifyUser(before, "PBS", end.Add(time.Second)); !errors.Is(err, ErrExpired) {
		t.Errorf("after its lifetime: %v; want ErrExpired", err)
	}
	if late, err := LoadKeyRing(k.pub, k.retired, t0.Add(FullLifetime+time.Second)); err != nil || len(late.Retired()) != 0 {
		t.Errorf("key ring 2 h after the rotation keeps %d retired keys (%v); want 0", len(late.Retired()), err)
	}
	fi, err := os.Stat(k.retired)
	if err != nil || fi.Mode().Perm() != PubFileMode {
		t.Errorf("authkey.retired: %v %v; want mode %#o", fi.Mode(), err, PubFileMode)
	}
	if fi, err := os.Stat(k.key); err != nil || fi.Mode().Perm() != KeyFileMode {
		t.Errorf("authkey.key after rotation: %v; want mode %#o", err, KeyFileMode)
	}
}

func TestRotateKeysLimits(t *testing.T) {
	k := newKeyFiles(t)
	t0 := time.Unix(1_800_000_000, 0)
	var fps []string
	for i := range MaxRetiredKeys + 3 {
		v, err := LoadVerifier(k.pub)
		if err != nil {
			t.Fatal(err)
		}
		fps = append(fps, v.Fingerprint())
		if _, err := RotateKeys(k.key, k.pub, k.retired, -1, t0.Add(time.Duration(i)*time.Minute), false); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := LoadRetired(k.retired)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != MaxRetiredKeys {
		t.Fatalf("%d retired keys; want %d", len(keys), MaxRetiredKeys)
	}
	if got, want := keys[len(keys)-1].Verifier.Fingerprint(), fps[len(fps)-1]; got != want {
		t.Errorf("newest retired key %s; want %s", got, want)
	}
	// Rotating long after: every earlier retired key is dead and dropped.
	if _, err := RotateKeys(k.key, k.pub, k.retired, -1, t0.Add(10*time.Hour), false); err != nil {
		t.Fatal(err)
	}
	if keys, err := LoadRetired(k.retired); err != nil || len(keys) != 1 {
		t.Errorf("after a late rotation: %d retired keys, %v; want 1", len(keys), err)
	}
}

func TestEnsurePublic(t *testing.T) {
	k := newKeyFiles(t)
	if wrote, err := EnsurePublic(k.key, k.pub, -1); err != nil || wrote {
		t.Fatalf("matching pair: wrote=%v %v; want no write", wrote, err)
	}
	other := newKeyFiles(t)
	data, err := os.ReadFile(other.pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.pub, data, PubFileMode); err != nil {
		t.Fatal(err)
	}
	if wrote, err := EnsurePublic(k.key, k.pub, -1); err != nil || !wrote {
		t.Fatalf("mismatched pair: wrote=%v %v; want a repair", wrote, err)
	}
	s, _ := LoadSigner(k.key)
	if v, err := LoadVerifier(k.pub); err != nil || v.Fingerprint() != s.Public().Fingerprint() {
		t.Errorf("after the repair authkey.pub is %v, %v", v, err)
	}
}

func TestParseRetiredRefuses(t *testing.T) {
	k := newKeyFiles(t)
	if _, err := RotateKeys(k.key, k.pub, k.retired, -1, time.Unix(1_800_000_000, 0), false); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(k.retired)
	if err != nil {
		t.Fatal(err)
	}
	if keys, err := ParseRetired(good); err != nil || len(keys) != 1 || keys[0].Retired.Unix() != 1_800_000_000 {
		t.Fatalf("ParseRetired(%q) = %v, %v", good, keys, err)
	}
	pub, _ := os.ReadFile(k.pub)
	for name, data := range map[string]string{
		"no header":       string(pub),
		"bad time":        strings.Replace(string(good), "1800000000", "18e8", 1),
		"negative time":   strings.Replace(string(good), "1800000000", "-1", 1),
		"leading zero":    strings.Replace(string(good), "1800000000", "01800000000", 1),
		"extra header":    strings.Replace(string(good), "Retired:", "Proc-Type: 4,ENCRYPTED\nRetired:", 1),
		"wrong type":      strings.ReplaceAll(string(good), "PUBLIC KEY", "PRIVATE KEY"),
		"trailing junk":   string(good) + "junk\n",
		"truncated":       string(good[:len(good)/2]),
		"not a key":       "-----BEGIN PUBLIC KEY-----\nRetired: 1\n\nAAAA\n-----END PUBLIC KEY-----\n",
		"too many blocks": strings.Repeat(string(good), MaxRetiredKeys+1),
	} {
		if _, err := ParseRetired([]byte(data)); !errors.Is(err, ErrBadKey) {
			t.Errorf("%s: %v; want ErrBadKey", name, err)
		}
	}
	if keys, err := ParseRetired([]byte(" \n")); err != nil || len(keys) != 0 {
		t.Errorf("empty file: %v %v", keys, err)
	}
}

func FuzzParseRetired(f *testing.F) {
	dir := f.TempDir()
	k := keyFiles{filepath.Join(dir, "k"), filepath.Join(dir, "p"), filepath.Join(dir, "r")}
	if err := GenerateKeys(k.key, k.pub, -1); err != nil {
		f.Fatal(err)
	}
	if _, err := RotateKeys(k.key, k.pub, k.retired, -1, time.Unix(1_800_000_000, 0), false); err != nil {
		f.Fatal(err)
	}
	good, _ := os.ReadFile(k.retired)
	f.Add(good)
	f.Add([]byte(""))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nRetired: 1\n\nAAAA\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseRetired(data)
		if err != nil {
			return
		}
		out, err := formatRetired(keys)
		if err != nil {
			t.Fatalf("parsed keys do not format: %v", err)
		}
		again, err := ParseRetired(out)
		if err != nil || len(again) != len(keys) {
			t.Fatalf("round trip: %d keys, %v; want %d", len(again), err, len(keys))
		}
		for i := range keys {
			if again[i].Verifier.Fingerprint() != keys[i].Verifier.Fingerprint() || !again[i].Retired.Equal(keys[i].Retired) {
				t.Fatalf("round trip changed key %d", i)
			}
		}
	})
}

// TestRotateKeysRevokeSessions: a rotation with revokeSessions keeps no retired key, so no
// ticket signed before it verifies, however it is stamped (a stolen old key backdates them).
func TestRotateKeysRevokeSessions(t *testing.T) {
	k := newKeyFiles(t)
	t0 := time.Unix(1_800_000_000, 0)
	old, err := LoadSigner(k.key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RotateKeys(k.key, k.pub, k.retired, -1, t0.Add(-time.Minute), false); err != nil {
		t.Fatal(err)
	}
	older, err := LoadSigner(k.key)
	if err != nil {
		t.Fatal(err)
	}
	s, err := RotateKeys(k.key, k.pub, k.retired, -1, t0, true)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := LoadKeyRing(k.pub, k.retired, t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []*Verifier{ring, s.Public()} {
		if n := len(v.Retired()); n != 0 {
			t.Errorf("after a rotation revoking sessions %d retired keys are kept; want 0", n)
		}
		for name, signer := range map[string]*Signer{"the key just replaced": older, "a key retired before": old} {
			tk, err := signer.SignUser("PBS", "root@pam", t0.Add(-2*time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := v.VerifyUser(tk, "PBS", t0); !errors.Is(err, ErrSignature) {
				t.Errorf("backdated ticket of %s: %v; want ErrSignature", name, err)
			}
		}
	}
	if tk, err := s.SignUser("PBS", "bob@pbs", t0); err != nil {
		t.Fatal(err)
	} else if _, _, err := ring.VerifyUser(tk, "PBS", t0); err != nil {
		t.Errorf("ticket of the new key: %v", err)
	}
}

// TestCurrent: Current accepts the current key's tickets only, never a retired key's, whatever
// its stamp: what renewal and the second TFA step use.
func TestCurrent(t *testing.T) {
	k := newKeyFiles(t)
	t0 := time.Unix(1_800_000_000, 0)
	old, err := LoadSigner(k.key)
	if err != nil {
		t.Fatal(err)
	}
	s, err := RotateKeys(k.key, k.pub, k.retired, -1, t0, false)
	if err != nil {
		t.Fatal(err)
	}
	backdated, err := old.SignUser("PBS", "root@pam", t0.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	tfa, err := old.SignTFA("PBS", "root@pam", `{"totp":true}`, t0.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Public().VerifyUser(backdated, "PBS", t0); err != nil {
		t.Fatalf("the key ring refuses the retired key's ticket: %v", err)
	}
	cur := s.Public().Current()
	if _, _, err := cur.VerifyUser(backdated, "PBS", t0); !errors.Is(err, ErrSignature) {
		t.Errorf("Current().VerifyUser(retired key's ticket) = %v; want ErrSignature", err)
	}
	if _, _, err := cur.VerifyTFA(tfa, "PBS", "root@pam", t0); !errors.Is(err, ErrSignature) {
		t.Errorf("Current().VerifyTFA(retired key's TFA ticket) = %v; want ErrSignature", err)
	}
	fresh, err := s.SignUser("PBS", "root@pam", t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cur.VerifyUser(fresh, "PBS", t0); err != nil {
		t.Errorf("Current().VerifyUser(current key's ticket) = %v", err)
	}
	if len(s.Public().Retired()) != 1 {
		t.Errorf("Current changed the ring it came from: %d retired keys; want 1", len(s.Public().Retired()))
	}
}
