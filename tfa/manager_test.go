package tfa

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/lockfile"
)

func TestOpen(t *testing.T) {
	t.Parallel()
	m := newManager(t, nil)
	fi, err := os.Stat(m.o.StateDir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("state directory: %v, %v; want a 0700 directory", fi, err)
	}
	if m.o.LockPath != filepath.Join(filepath.Dir(m.Path()), ".tfa.lck") {
		t.Errorf("default lock path = %s", m.o.LockPath)
	}
	if m.o.TOTPFailureLimit != 8 || m.o.TFAFailureLimit != 100 || m.o.LockTime != 12*time.Hour || m.o.ChallengeTimeout != 2*time.Minute {
		t.Errorf("defaults = %d, %d, %s, %s; want PBS's 8, 100, 12h, 2m",
			m.o.TOTPFailureLimit, m.o.TFAFailureLimit, m.o.LockTime, m.o.ChallengeTimeout)
	}
	for _, o := range []Options{{}, {Path: "x", StateDir: "y"}, {Path: "x", Generations: m.o.Generations}} {
		if _, err := Open(o); err == nil {
			t.Errorf("Open(%+v) = nil error; want one", o)
		}
	}
	if c := config(t, m); len(c.Users) != 0 {
		t.Errorf("Config() without tfa.json = %+v; want empty", c)
	}
}

// TestTOTPLockout: TOTPFailureLimit wrong codes lock TOTP, even against the right code, until a
// recovery code is used.
func TestTOTPLockout(t *testing.T) {
	t.Parallel()
	m := newManager(t, nil)
	raw := enrolTOTP(t, m, alice, t0)
	codes, err := m.AddRecovery(alice, t0)
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Hour)
	for i, c := range wrongCodes(t, raw, now, TOTPFailureLimit) {
		err := verify(t, m, alice, "totp:"+c, now)
		if !errors.Is(err, ErrFailed) || errors.Is(err, ErrLocked) {
			t.Fatalf("wrong code %d: Verify = %v; want ErrFailed", i+1, err)
		}
		if locked := config(t, m).Users[alice].TOTPLocked; locked != (i+1 == TOTPFailureLimit) {
			t.Fatalf("after %d wrong codes TOTPLocked = %v", i+1, locked)
		}
	}
	if err := verify(t, m, alice, "totp:"+code(t, raw, now), now); !errors.Is(err, ErrLocked) {
		t.Fatalf("right code after %d failures: Verify = %v; want ErrLocked", TOTPFailureLimit, err)
	}
	if s := config(t, m).Summary(alice, now); !s.TOTPLocked {
		t.Errorf("Summary: TOTPLocked = false; want true")
	}
	// The lock is no TFA block: a recovery code works, and unlocks TOTP.
	if err := verify(t, m, alice, "recovery:"+codes[0], now); err != nil {
		t.Fatalf("recovery code while TOTP is locked: Verify = %v", err)
	}
	if config(t, m).Users[alice].TOTPLocked {
		t.Errorf("after a recovery code TOTPLocked = true; want false")
	}
	if err := verify(t, m, alice, "totp:"+code(t, raw, now), now); err != nil {
		t.Errorf("right code after the recovery code: Verify = %v", err)
	}
	// The count starts again from zero: 7 more failures do not lock.
	now = now.Add(time.Minute)
	for _, c := range wrongCodes(t, raw, now, TOTPFailureLimit-1) {
		if err := verify(t, m, alice, "totp:"+c, now); errors.Is(err, ErrLocked) {
			t.Fatalf("Verify = %v after fewer than %d failures since the recovery code", err, TOTPFailureLimit)
		}
	}
	if config(t, m).Users[alice].TOTPLocked {
		t.Errorf("TOTPLocked after %d failures; want false", TOTPFailureLimit-1)
	}
}

// TestUnlock: an administrator's Unlock clears the TOTP lock and the TFA block, and says
// whether there was one.
func TestUnlock(t *testing.T) {
	t.Parallel()
	m := newManager(t, func(o *Options) { o.TFAFailureLimit = 10 })
	raw := enrolTOTP(t, m, alice, t0)
	now := t0.Add(time.Hour)
	if was, err := m.Unlock(alice, now); err != nil || was {
		t.Errorf("Unlock of a user not locked = %v, %v; want false, nil", was, err)
	}
	for _, c := range wrongCodes(t, raw, now, TOTPFailureLimit) {
		verify(t, m, alice, "totp:"+c, now)
	}
	if !config(t, m).Users[alice].TOTPLocked {
		t.Fatal("TOTP not locked")
	}
	if was, err := m.Unlock(alice, now); err != nil || !was {
		t.Errorf("Unlock of a locked user = %v, %v; want true, nil", was, err)
	}
	if config(t, m).Users[alice].TOTPLocked {
		t.Errorf("after Unlock TOTPLocked = true")
	}
	if err := verify(t, m, alice, "totp:"+code(t, raw, now), now); err != nil {
		t.Errorf("right code after Unlock: Verify = %v", err)
	}
	// Unlock resets the counts too: the TFA limit (10) is not reached by 8 + 8 failures
	// separated by an Unlock.
	now = now.Add(time.Minute)
	for range 2 {
		for _, c := range wrongCodes(t, raw, now, TOTPFailureLimit) {
			verify(t, m, alice, "totp:"+c, now)
		}
		if was, err := m.Unlock(alice, now); err != nil || !was {
			t.Fatalf("Unlock = %v, %v; want true, nil", was, err)
		}
	}
	if u := config(t, m).Users[alice]; u.TFALockedUntil != 0 {
		t.Errorf("TFALockedUntil = %d after failures separated by Unlock; want 0", u.TFALockedUntil)
	}
	// And it lifts a TFA block.
	codes, err := m.AddRecovery(alice, now)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		verify(t, m, alice, fmt.Sprintf("recovery:0000-0000-0000-%04d", i), now)
	}
	if u := config(t, m).Users[alice]; u.TFALockedUntil != now.Add(LockTime).Unix() {
		t.Fatalf("TFALockedUntil = %d; want %d", u.TFALockedUntil, now.Add(LockTime).Unix())
	}
	if was, err := m.Unlock(alice, now); err != nil || !was {
		t.Errorf("Unlock of a blocked user = %v, %v; want true, nil", was, err)
	}
	if err := verify(t, m, alice, "recovery:"+codes[0], now); err != nil {
		t.Errorf("recovery code after Unlock: Verify = %v", err)
	}
	if was, err := m.Unlock(bob, now); err != nil || was {
		t.Errorf("Unlock of a user without TFA = %v, %v; want false, nil", was, err)
	}
}

// TestTFALockout: TFAFailureLimit failures of any kind block every factor for LockTime.
func TestTFALockout(t *testing.T) {
	t.Parallel()
	for _, limit := range []int{5, 0} { // 0: the default, 100
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			t.Parallel()
			m := newManager(t, func(o *Options) { o.TFAFailureLimit = limit })
			if limit == 0 {
				limit = TFAFailureLimit
			}
			raw := enrolTOTP(t, m, alice, t0)
			codes, err := m.AddRecovery(alice, t0)
			if err != nil {
				t.Fatal(err)
			}
			now := t0.Add(time.Hour)
			// Mixed kinds: 3 TOTP failures (fewer than TOTP's own limit), then recovery and
			// malformed webauthn answers.
			wrong := wrongCodes(t, raw, now, 3)
			for i := range limit {
				var resp string
				switch {
				case i < len(wrong):
					resp = "totp:" + wrong[i]
				case i%2 == 0:
					resp = fmt.Sprintf("recovery:0000-0000-0000-%04d", i)
				default:
					resp = "webauthn:{}"
				}
				err := verify(t, m, alice, resp, now)
				if !errors.Is(err, ErrFailed) || errors.Is(err, ErrLocked) {
					t.Fatalf("failure %d (%s): Verify = %v; want ErrFailed", i+1, resp, err)
				}
				if until := config(t, m).Users[alice].TFALockedUntil; (until != 0) != (i+1 == limit) {
					t.Fatalf("after %d failures TFALockedUntil = %d", i+1, until)
				}
			}
			until := now.Add(12 * time.Hour)
			if got := config(t, m).Users[alice].TFALockedUntil; got != until.Unix() {
				t.Errorf("TFALockedUntil = %d; want now+12h = %d", got, until.Unix())
			}
			if s := config(t, m).Summary(alice, now); s.TFALockedUntil != until.Unix() {
				t.Errorf("Summary: TFALockedUntil = %d; want %d", s.TFALockedUntil, until.Unix())
			}
			for _, at := range []time.Time{now, now.Add(time.Minute), until.Add(-time.Second)} {
				for _, resp := range []string{"totp:" + code(t, raw, at), "recovery:" + codes[0]} {
					if err := verify(t, m, alice, resp, at); !errors.Is(err, ErrLocked) {
						t.Errorf("%s at lock+%s: Verify = %v; want ErrLocked", resp[:5], at.Sub(now), err)
					}
				}
			}
			after := until.Add(time.Second)
			// The count starts again when the block runs out: one failure does not block again.
			if err := verify(t, m, alice, "totp:"+wrongCodes(t, raw, after, 1)[0], after); !errors.Is(err, ErrFailed) || errors.Is(err, ErrLocked) {
				t.Fatalf("first failure after the block: Verify = %v; want ErrFailed", err)
			}
			if got := config(t, m).Users[alice].TFALockedUntil; got != 0 {
				t.Fatalf("one failure after the block blocked again until %d", got)
			}
			if err := verify(t, m, alice, "totp:"+code(t, raw, after), after); err != nil {
				t.Errorf("right code after the lock ran out: Verify = %v; want nil", err)
			}
			if err := verify(t, m, alice, "recovery:"+codes[0], after); err != nil {
				t.Errorf("recovery code after the lock ran out: Verify = %v; want nil", err)
			}
			if s := config(t, m).Summary(alice, after); s.TFALockedUntil != 0 || s.TOTPLocked {
				t.Errorf("Summary after the lock: %+v; want unlocked", s)
			}
		})
	}
}

// TestSuccessResetsCounts: the failure counts are of consecutive failures.
func TestSuccessResetsCounts(t *testing.T) {
	t.Parallel()
	m := newManager(t, func(o *Options) { o.TFAFailureLimit = 10 })
	raw := enrolTOTP(t, m, alice, t0)
	now := t0.Add(time.Hour)
	fail := func(n int) {
		t.Helper()
		for _, c := range wrongCodes(t, raw, now, n) {
			if err := verify(t, m, alice, "totp:"+c, now); !errors.Is(err, ErrFailed) {
				t.Fatalf("wrong code: Verify = %v; want ErrFailed", err)
			}
		}
	}
	fail(TOTPFailureLimit - 1)
	if err := verify(t, m, alice, "totp:"+code(t, raw, now), now); err != nil {
		t.Fatalf("right code: Verify = %v", err)
	}
	fail(TOTPFailureLimit - 1)
	if u := config(t, m).Users[alice]; u.TOTPLocked || u.TFALockedUntil != 0 {
		t.Fatalf("7 failures, a success, 7 failures: locked (%v, %d); want not", u.TOTPLocked, u.TFALockedUntil)
	}
	// The count did go on: one more failure makes the 8th in a row.
	fail(1)
	if u := config(t, m).Users[alice]; !u.TOTPLocked {
		t.Errorf("8 consecutive failures: TOTPLocked = false; want true")
	}
}

func TestChallengeJSON(t *testing.T) {
	t.Parallel()
	m := newManager(t, nil)
	if err := os.WriteFile(m.Path(), []byte(pbsFixture), 0o600); err != nil {
		t.Fatal(err)
	}
	if ch := challenge(t, m, "nobody@pam", t0); ch != "" {
		t.Errorf("user without TFA: Challenge = %q; want \"\"", ch)
	}
	if ch, err := m.Challenge("carol@pve", t0); !errors.Is(err, ErrUnsupported) || ch != "" {
		t.Errorf("user with only yubico and u2f: Challenge = %q, %v; want ErrUnsupported", ch, err)
	}
	if err := m.Verify("carol@pve", `{}`, "yubico:cccccckdvbjlxxxxxxxxxxxxxxxxxxxxxxxx", t0); !errors.Is(err, ErrFailed) {
		t.Errorf("yubico answer: Verify = %v; want ErrFailed", err)
	}
	if ch := challenge(t, m, "alice@pbs", t0); ch != `{"totp":true,"recovery":[0,1]}` {
		t.Errorf("PBS user with totp and recovery: Challenge = %s", ch)
	}

	m2 := newManager(t, nil)
	raw := enrolTOTP(t, m2, alice, t0)
	if ch := challenge(t, m2, alice, t0); ch != `{"totp":true}` {
		t.Errorf("totp only: Challenge = %s", ch)
	}
	if _, err := m2.AddRecovery(alice, t0); err != nil {
		t.Fatal(err)
	}
	if ch := challenge(t, m2, alice, t0); ch != `{"totp":true,"recovery":[0,1,2,3,4,5,6,7,8,9]}` {
		t.Errorf("totp and recovery: Challenge = %s", ch)
	}
	id := config(t, m2).Users[alice].TOTP[0].ID
	off := false
	if err := m2.Update(alice, id, nil, &off); err != nil {
		t.Fatal(err)
	}
	if ch := challenge(t, m2, alice, t0); ch != `{"recovery":[0,1,2,3,4,5,6,7,8,9]}` {
		t.Errorf("disabled totp and recovery: Challenge = %s", ch)
	}
	if err := m2.Delete(alice, "recovery"); err != nil {
		t.Fatal(err)
	}
	if ch := challenge(t, m2, alice, t0); ch != "" {
		t.Errorf("only a disabled totp entry: Challenge = %q; want \"\"", ch)
	}
	if err := verify(t, m2, alice, "totp:"+code(t, raw, t0.Add(time.Minute)), t0.Add(time.Minute)); !errors.Is(err, ErrFailed) {
		t.Errorf("disabled entry: Verify = %v; want ErrFailed", err)
	}

	// A PBS webauthn-rs entry alone cannot be answered: refuse the login.
	m3 := newManager(t, nil)
	c, err := Parse([]byte(pbsFixture))
	if err != nil {
		t.Fatal(err)
	}
	root := c.Users["root@pam"]
	c.Users = map[string]*UserData{alice: {Webauthn: root.Webauthn}}
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m3.Path(), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if ch, err := m3.Challenge(alice, t0); !errors.Is(err, ErrUnsupported) {
		t.Errorf("user with only a webauthn-rs entry: Challenge = %q, %v; want ErrUnsupported", ch, err)
	}
	off = false
	if err := m3.Update(alice, root.Webauthn[0].ID, nil, &off); err != nil {
		t.Fatal(err)
	}
	if ch := challenge(t, m3, alice, t0); ch != "" {
		t.Errorf("only a disabled webauthn-rs entry: Challenge = %q; want \"\"", ch)
	}
}

func TestParseResponse(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, kind, value string }{
		{"totp:123456", "totp", "123456"},
		{"recovery:0a1b-2c3d-4e5f-6a7b", "recovery", "0a1b-2c3d-4e5f-6a7b"},
		{`webauthn:{"a":"b:c"}`, "webauthn", `{"a":"b:c"}`},
		{"u2f:{}", "u2f", "{}"},
		{"yubico:cccccc", "yubico", "cccccc"},
	}
	for _, tt := range tests {
		if kind, value, err := ParseResponse(tt.in); err != nil || kind != tt.kind || value != tt.value {
			t.Errorf("ParseResponse(%q) = %q, %q, %v; want %q, %q, nil", tt.in, kind, value, err, tt.kind, tt.value)
		}
	}
	for _, in := range []string{"", "totp", "totp:", "123456", "sms:123456", "TOTP:123456", ":x"} {
		if kind, value, err := ParseResponse(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseResponse(%q) = %q, %q, %v; want ErrInvalid", in, kind, value, err)
		}
	}
	m := newManager(t, nil)
	enrolTOTP(t, m, alice, t0)
	for _, resp := range []string{"123456", "sms:1", "totp:"} {
		if err := m.Verify(alice, `{"totp":true}`, resp, t0); !errors.Is(err, ErrFailed) {
			t.Errorf("Verify(%q) = %v; want ErrFailed", resp, err)
		}
	}
	if err := m.Verify(alice, `{"totp":`, "totp:123456", t0); !errors.Is(err, ErrFailed) {
		t.Errorf("Verify with a broken challenge = %v; want ErrFailed", err)
	}
}

func TestUpdateDeleteRemove(t *testing.T) {
	t.Parallel()
	m := newManager(t, nil)
	enrolTOTP(t, m, alice, t0)
	enrolTOTP(t, m, bob, t0)
	if _, err := m.AddRecovery(alice, t0); err != nil {
		t.Fatal(err)
	}
	id := config(t, m).Users[alice].TOTP[0].ID
	desc, off := "old phone", false
	if err := m.Update(alice, id, &desc, &off); err != nil {
		t.Fatal(err)
	}
	e := config(t, m).Users[alice].TOTP[0]
	if e.Description != desc || e.Enabled() {
		t.Errorf("after Update: %q, enabled %v; want %q, false", e.Description, e.Enabled(), desc)
	}
	on := true
	if err := m.Update(alice, id, nil, &on); err != nil {
		t.Fatal(err)
	}
	if e := config(t, m).Users[alice].TOTP[0]; !e.Enabled() || e.Enable != nil || e.Description != desc {
		t.Errorf("after Update(enable): %+v; want enabled, description kept", e.Info)
	}
	bad := "two\nlines"
	for _, tc := range []struct {
		userid, id string
		desc       *string
		want       error
	}{
		{alice, "nope", &desc, ErrNotFound},
		{alice, "recovery", &desc, ErrNotFound},
		{"nobody@pam", id, &desc, ErrNotFound},
		{bob, id, &desc, ErrNotFound},
		{alice, id, &bad, ErrInvalid},
	} {
		if err := m.Update(tc.userid, tc.id, tc.desc, nil); !errors.Is(err, tc.want) {
			t.Errorf("Update(%s, %s) = %v; want %v", tc.userid, tc.id, err, tc.want)
		}
	}
	if err := m.Delete(alice, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete of an unknown entry = %v; want ErrNotFound", err)
	}
	if err := m.Delete("nobody@pam", id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete for a user without TFA = %v; want ErrNotFound", err)
	}
	if err := m.Delete(alice, id); err != nil {
		t.Fatal(err)
	}
	if u := config(t, m).Users[alice]; len(u.TOTP) != 0 || u.Recovery == nil {
		t.Errorf("after Delete of the totp entry: %+v; want the recovery set only", u)
	}

	// RemoveUser drops the user's data and state file, and nobody else's.
	raw := enrolTOTP(t, m, alice, t0)
	verify(t, m, alice, "totp:"+wrongCodes(t, raw, t0, 1)[0], t0)
	if _, err := os.Stat(m.statePath(alice)); err != nil {
		t.Fatalf("state file after a failure: %v", err)
	}
	if err := m.RemoveUser(alice); err != nil {
		t.Fatal(err)
	}
	c := config(t, m)
	if c.Users[alice] != nil || c.Users[bob] == nil {
		t.Errorf("after RemoveUser(alice): users %v; want bob only", c.Userids())
	}
	if _, err := os.Stat(m.statePath(alice)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file after RemoveUser: %v; want it gone", err)
	}
}

// TestInvalidUserid: a method given a user id that tfa.json could not hold must not write a
// file that can no longer be read (which would lock every user out of TFA changes).
func TestInvalidUserid(t *testing.T) {
	t.Parallel()
	m := newManager(t, nil)
	raw := enrolTOTP(t, m, alice, t0)
	for _, userid := range []string{"alice", "", "a b@pam", "x@"} {
		if _, err := m.AddRecovery(userid, t0); !errors.Is(err, ErrInvalid) {
			t.Errorf("AddRecovery(%q) = %v; want ErrInvalid", userid, err)
		}
		r := newSecret(t, 20)
		if _, err := m.AddTOTP(userid, "", totpURI(r, "", 0, 0), code(t, r, t0), t0); !errors.Is(err, ErrInvalid) {
			t.Errorf("AddTOTP(%q) = %v; want ErrInvalid", userid, err)
		}
	}
	if _, err := m.Config(); err != nil {
		t.Fatalf("tfa.json unreadable after calls with bad user ids: %v", err)
	}
	if err := verify(t, m, alice, "totp:"+code(t, raw, t0.Add(time.Minute)), t0.Add(time.Minute)); err != nil {
		t.Errorf("alice's login after calls with bad user ids: Verify = %v", err)
	}
}

// TestFiles checks the files' modes and that every change of tfa.json, and only a change,
// bumps the TFA generation.
func TestFiles(t *testing.T) {
	t.Parallel()
	m := newManager(t, nil)
	g := gen(m)
	step := func(what string, bumped bool) {
		t.Helper()
		n := gen(m)
		if (n != g) != bumped || (bumped && n != g+1) {
			t.Errorf("%s: generation %d -> %d; want bumped by one: %v", what, g, n, bumped)
		}
		g = n
	}
	raw := enrolTOTP(t, m, alice, t0)
	step("AddTOTP", true)
	fi, err := os.Stat(m.Path())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("tfa.json: %v, %v; want mode 0600", fi, err)
	}
	codes, err := m.AddRecovery(alice, t0)
	if err != nil {
		t.Fatal(err)
	}
	step("AddRecovery", true)
	challenge(t, m, alice, t0)
	step("Challenge", false)
	verify(t, m, alice, "totp:"+wrongCodes(t, raw, t0, 1)[0], t0)
	step("failed Verify (tfa.json unchanged)", false)
	fi, err = os.Stat(m.statePath(alice))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file: %v, %v; want mode 0600", fi, err)
	}
	now := t0.Add(time.Minute)
	if err := verify(t, m, alice, "totp:"+code(t, raw, now), now); err != nil {
		t.Fatal(err)
	}
	step("TOTP Verify (last-count)", true)
	if _, err := os.Stat(m.statePath(alice)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file after a success with nothing pending: %v; want removed", err)
	}
	if err := verify(t, m, alice, "recovery:"+codes[0], now); err != nil {
		t.Fatal(err)
	}
	step("recovery Verify", true)
	if err := m.SetWebauthn(WebauthnConfig{RP: "Gatehouse", ID: "localhost", Origin: "http://localhost:8007"}); err != nil {
		t.Fatal(err)
	}
	step("SetWebauthn", true)
	desc := "x"
	if err := m.Update(alice, config(t, m).Users[alice].TOTP[0].ID, &desc, nil); err != nil {
		t.Fatal(err)
	}
	step("Update", true)
	if err := m.Update(alice, config(t, m).Users[alice].TOTP[0].ID, &desc, nil); err != nil {
		t.Fatal(err)
	}
	step("Update to the same description", false)
	if _, err := m.Unlock(alice, now); err != nil {
		t.Fatal(err)
	}
	step("Unlock of an unlocked user", false)
	if err := m.Delete(alice, "recovery"); err != nil {
		t.Fatal(err)
	}
	step("Delete", true)
	if err := m.RemoveUser(alice); err != nil {
		t.Fatal(err)
	}
	step("RemoveUser", true)
	if fi, err := os.Stat(m.Path()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("tfa.json: %v, %v; want mode 0600", fi, err)
	}
	// No temp files are left behind.
	ents, err := os.ReadDir(filepath.Dir(m.Path()))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temp file %s left behind", e.Name())
		}
	}
}

// TestUnsafeFile: a tfa.json that is group-readable, a symbolic link or not parseable is
// refused, by readers and writers alike, and never overwritten.
func TestUnsafeFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		spoil   func(t *testing.T, path string) // makes the file unsafe
		wantErr error
	}{
		{"group-readable", func(t *testing.T, path string) {
			if err := os.Chmod(path, 0o640); err != nil {
				t.Fatal(err)
			}
		}, lockfile.ErrPermissions},
		{"world-writable", func(t *testing.T, path string) {
			if err := os.Chmod(path, 0o602); err != nil {
				t.Fatal(err)
			}
		}, lockfile.ErrPermissions},
		{"symlink", func(t *testing.T, path string) {
			real := filepath.Join(filepath.Dir(path), "elsewhere.json")
			if err := os.Rename(path, real); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(real, path); err != nil {
				t.Fatal(err)
			}
		}, lockfile.ErrSymlink},
		{"not parseable", func(t *testing.T, path string) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, append(b, '}'), 0o600); err != nil {
				t.Fatal(err)
			}
		}, ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newManager(t, nil)
			raw := enrolTOTP(t, m, alice, t0)
			tt.spoil(t, m.Path())
			before, err := os.ReadFile(m.Path())
			if err != nil {
				t.Fatal(err)
			}
			lfi, err := os.Lstat(m.Path())
			if err != nil {
				t.Fatal(err)
			}
			g := gen(m)
			now := t0.Add(time.Minute)
			if _, err := m.Config(); !errors.Is(err, tt.wantErr) {
				t.Errorf("Config() = %v; want %v", err, tt.wantErr)
			}
			if _, err := m.Challenge(alice, now); !errors.Is(err, tt.wantErr) {
				t.Errorf("Challenge = %v; want %v", err, tt.wantErr)
			}
			if err := m.Verify(alice, `{"totp":true}`, "totp:"+code(t, raw, now), now); !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify = %v; want %v", err, tt.wantErr)
			}
			if _, err := m.AddRecovery(alice, now); !errors.Is(err, tt.wantErr) {
				t.Errorf("AddRecovery = %v; want %v", err, tt.wantErr)
			}
			r := newSecret(t, 20)
			if _, err := m.AddTOTP(bob, "", totpURI(r, "", 0, 0), code(t, r, now), now); !errors.Is(err, tt.wantErr) {
				t.Errorf("AddTOTP = %v; want %v", err, tt.wantErr)
			}
			if _, err := m.Unlock(alice, now); !errors.Is(err, tt.wantErr) {
				t.Errorf("Unlock = %v; want %v", err, tt.wantErr)
			}
			if err := m.RemoveUser(alice); !errors.Is(err, tt.wantErr) {
				t.Errorf("RemoveUser = %v; want %v", err, tt.wantErr)
			}
			after, err := os.ReadFile(m.Path())
			if err != nil {
				t.Fatal(err)
			}
			afi, err := os.Lstat(m.Path())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) || afi.Mode() != lfi.Mode() || !os.SameFile(lfi, afi) {
				t.Errorf("refused file was changed or replaced: mode %v -> %v", lfi.Mode(), afi.Mode())
			}
			if gen(m) != g {
				t.Errorf("generation bumped (%d -> %d) though nothing was written", g, gen(m))
			}
		})
	}
}

// TestUnsafeStateFile: a state file that others could have written is not trusted.
func TestUnsafeStateFile(t *testing.T) {
	t.Parallel()
	m := newManager(t, nil)
	raw := enrolTOTP(t, m, alice, t0)
	verify(t, m, alice, "totp:"+wrongCodes(t, raw, t0, 1)[0], t0)
	if err := os.Chmod(m.statePath(alice), 0o666); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Minute)
	if err := m.Verify(alice, `{"totp":true}`, "totp:"+code(t, raw, now), now); !errors.Is(err, lockfile.ErrPermissions) {
		t.Errorf("Verify with a world-writable state file = %v; want ErrPermissions", err)
	}
	// An unreadable (corrupt) state file is only short-lived data: it is dropped.
	if err := os.WriteFile(m.statePath(alice), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(m.statePath(alice), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.Verify(alice, `{"totp":true}`, "totp:"+code(t, raw, now), now); err != nil {
		t.Errorf("Verify with a corrupt state file = %v; want nil", err)
	}
}

// TestConcurrentVerify: one code, tried by many logins at once, is accepted exactly once.
func TestConcurrentVerify(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m1 := newManager(t, func(o *Options) { o.Path = filepath.Join(dir, "tfa.json"); o.StateDir = filepath.Join(dir, "state") })
	// A second Manager on the same files, as a second process would have.
	m2 := newManager(t, func(o *Options) { o.Path = filepath.Join(dir, "tfa.json"); o.StateDir = filepath.Join(dir, "state") })
	raw := enrolTOTP(t, m1, alice, t0)
	now := t0.Add(time.Hour)
	c := code(t, raw, now)
	const n = TOTPFailureLimit - 1 // the n-1 refusals must not lock TOTP
	errs := make(chan error, n)
	for i := range n {
		m := m1
		if i%2 == 1 {
			m = m2
		}
		go func() { errs <- m.Verify(alice, `{"totp":true}`, "totp:"+c, now) }()
	}
	ok := 0
	for range n {
		err := <-errs
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrFailed):
			t.Errorf("Verify = %v; want nil or ErrFailed", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d concurrent logins with one code succeeded; want 1", ok, n)
	}
}
