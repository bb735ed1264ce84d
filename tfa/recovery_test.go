package tfa

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

var recoveryCodeRE = regexp.MustCompile(`^[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}$`)

// recoveryChallenge returns the "recovery" member of userid's challenge.
func recoveryChallenge(t *testing.T, m *Manager, userid string, now time.Time) []int {
	t.Helper()
	var ch struct {
		Recovery *[]int `json:"recovery"`
	}
	s := challenge(t, m, userid, now)
	if err := json.Unmarshal([]byte(s), &ch); err != nil {
		t.Fatalf("challenge %q: %v", s, err)
	}
	if ch.Recovery == nil {
		t.Fatalf("challenge %s has no recovery member", s)
	}
	return *ch.Recovery
}

func TestRecovery(t *testing.T) {
	t.Parallel()
	m := newManager(t, nil)
	codes, err := m.AddRecovery(alice, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != RecoveryCodes || RecoveryCodes != 10 {
		t.Fatalf("AddRecovery gave %d codes; want 10", len(codes))
	}
	seen := map[string]bool{}
	for _, c := range codes {
		if !recoveryCodeRE.MatchString(c) || seen[c] {
			t.Errorf("recovery code %q is malformed or repeated", c)
		}
		seen[c] = true
	}

	// Stored: no code in clear, in any spelling, and PBS's hashes (HMAC-SHA256 keyed
	// with the secret's text, in hex), computed here independently.
	raw, err := os.ReadFile(m.Path())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range codes {
		for _, s := range []string{c, strings.ReplaceAll(c, "-", ""), strings.ToUpper(c)} {
			if bytes.Contains(raw, []byte(s)) {
				t.Errorf("tfa.json contains recovery code %s in clear", s)
			}
		}
	}
	r := config(t, m).Users[alice].Recovery
	if r == nil || r.Created != t0.Unix() || len(r.Entries) != 10 {
		t.Fatalf("stored recovery = %+v; want 10 entries created at t0", r)
	}
	if len(r.Secret) != 16 {
		t.Errorf("recovery secret %q; want 16 hex digits", r.Secret)
	}
	for i, c := range codes {
		mac := hmac.New(sha256.New, []byte(r.Secret))
		mac.Write([]byte(c))
		if want := hex.EncodeToString(mac.Sum(nil)); r.Entries[i] == nil || *r.Entries[i] != want {
			t.Errorf("entry %d = %v; want HMAC-SHA256(secret, code) %s", i, r.Entries[i], want)
		}
	}

	if got, want := recoveryChallenge(t, m, alice, t0), []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}; !reflect.DeepEqual(got, want) {
		t.Errorf("challenge recovery = %v; want %v", got, want)
	}
	for _, bad := range []string{"0000-0000-0000-0000", strings.ToUpper(codes[0]), strings.ReplaceAll(codes[0], "-", ""), codes[0] + " ", codes[0][:18]} {
		if err := verify(t, m, alice, "recovery:"+bad, t0); !errors.Is(err, ErrFailed) {
			t.Errorf("wrong code %q: Verify = %v; want ErrFailed", bad, err)
		}
	}
	for _, i := range []int{3, 7} {
		if err := verify(t, m, alice, "recovery:"+codes[i], t0); err != nil {
			t.Errorf("code %d: Verify = %v; want nil", i, err)
		}
		if err := verify(t, m, alice, "recovery:"+codes[i], t0); !errors.Is(err, ErrFailed) {
			t.Errorf("code %d again: Verify = %v; want ErrFailed", i, err)
		}
	}
	if got, want := recoveryChallenge(t, m, alice, t0), []int{0, 1, 2, 4, 5, 6, 8, 9}; !reflect.DeepEqual(got, want) {
		t.Errorf("challenge recovery after using 3 and 7 = %v; want %v", got, want)
	}
	if got := config(t, m).Users[alice].Recovery.Entries; got[3] != nil || got[7] != nil || got[0] == nil {
		t.Errorf("stored entries after using 3 and 7: %v; want nulls at 3 and 7 only", got)
	}

	if _, err := m.AddRecovery(alice, t0); !errors.Is(err, ErrExists) {
		t.Errorf("second AddRecovery = %v; want ErrExists", err)
	}
	if err := m.Delete(alice, "recovery"); err != nil {
		t.Fatalf(`Delete("recovery") = %v`, err)
	}
	if err := m.Delete(alice, "recovery"); !errors.Is(err, ErrNotFound) {
		t.Errorf(`Delete("recovery") again = %v; want ErrNotFound`, err)
	}
	if c := config(t, m); c.Users[alice] != nil {
		t.Errorf("user with no factor left is still in tfa.json: %+v", c.Users[alice])
	}
	codes2, err := m.AddRecovery(alice, t0.Add(time.Hour))
	if err != nil {
		t.Fatalf("AddRecovery after Delete = %v", err)
	}
	if err := verify(t, m, alice, "recovery:"+codes[0], t0); !errors.Is(err, ErrFailed) {
		t.Errorf("code of the deleted set: Verify = %v; want ErrFailed", err)
	}
	if err := verify(t, m, alice, "recovery:"+codes2[0], t0); err != nil {
		t.Errorf("code of the new set: Verify = %v; want nil", err)
	}
}

// TestRecoveryAllUsed checks that a set whose codes are all used stays, with an empty list in
// the challenge (proxmox-tfa 4: the login then fails rather than needing no second factor).
func TestRecoveryAllUsed(t *testing.T) {
	t.Parallel()
	m := newManager(t, nil)
	codes, err := m.AddRecovery(alice, t0)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range codes {
		if err := verify(t, m, alice, "recovery:"+c, t0); err != nil {
			t.Fatalf("code %d: Verify = %v", i, err)
		}
	}
	if got := challenge(t, m, alice, t0); got != `{"recovery":[]}` {
		t.Errorf("challenge with every code used = %s; want {\"recovery\":[]}", got)
	}
}

func TestRecoveryHash(t *testing.T) {
	t.Parallel()
	r := &Recovery{Secret: "0123456789abcdef"}
	for i, c := range pbsRecoveryCodes {
		h := r.hash(c)
		r.Entries = append(r.Entries, &h)
		if i == 0 && h != "4c2ad962eef20c3b3f65e7812db1b27167a8bba0fb3ef15299fee551a8085057" {
			t.Errorf("hash(%s) = %s; want openssl's", c, h)
		}
	}
	if !r.use(pbsRecoveryCodes[1]) || r.use(pbsRecoveryCodes[1]) {
		t.Errorf("use of a code: want true once, then false")
	}
	if got, want := r.Available(), []int{0, 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("Available() = %v; want %v", got, want)
	}
}
