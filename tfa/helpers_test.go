package tfa

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gatehouse/shmem"
)

// t0 is the injected "now" of most tests: 10 s into a 30 s TOTP step.
var t0 = time.Date(2024, 5, 1, 12, 0, 10, 0, time.UTC)

const alice, bob = "alice@pam", "bob@pbs"

// newManager opens a Manager on tfa.json, a state directory and a real generation file in a
// fresh temp dir; tweak (may be nil) adjusts the options first.
func newManager(t testing.TB, tweak func(*Options)) *Manager {
	t.Helper()
	dir := t.TempDir()
	gen, err := shmem.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gen.Close() })
	o := Options{Path: filepath.Join(dir, "tfa.json"), StateDir: filepath.Join(dir, "run", "tfa"), Generations: gen}
	if tweak != nil {
		tweak(&o)
	}
	m, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// gen is the TFA generation counter of m's generation file.
func gen(m *Manager) uint64 { return m.o.Generations.Load(shmem.TFA) }

// newSecret returns n random bytes.
func newSecret(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// b32 is a secret as an otpauth URI carries it: base32 without padding.
func b32(raw []byte) string {
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw)
}

// totpURI makes an otpauth://totp URI; alg "", digits 0 or period 0 leave the parameter out.
func totpURI(raw []byte, alg string, digits, period int) string {
	q := url.Values{}
	q.Set("secret", b32(raw))
	q.Set("issuer", "Gatehouse")
	if alg != "" {
		q.Set("algorithm", alg)
	}
	if digits != 0 {
		q.Set("digits", strconv.Itoa(digits))
	}
	if period != 0 {
		q.Set("period", strconv.Itoa(period))
	}
	return "otpauth://totp/Gatehouse:alice%40pam?" + q.Encode()
}

// oathtool runs the real oathtool binary. It fails the test when the binary is missing: the
// TOTP interoperability checks must not silently disappear.
func oathtool(t testing.TB, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("oathtool")
	if err != nil {
		t.Fatalf("oathtool is needed for the TOTP interoperability tests and was not found (%v); install the Debian package oathtool", err)
	}
	out, err := exec.Command(path, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("oathtool %s: %v: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		t.Fatalf("oathtool %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}

// oathTOTP is oathtool's TOTP code for the hex key raw at time at.
func oathTOTP(t testing.TB, raw []byte, alg string, digits, period int, at time.Time) string {
	t.Helper()
	return oathtool(t, "--totp="+alg, "-d", strconv.Itoa(digits), "-s", fmt.Sprintf("%ds", period),
		"--now", at.UTC().Format("2006-01-02 15:04:05 UTC"), hex.EncodeToString(raw))
}

// code is the default (SHA1, 6 digits, 30 s) TOTP code of raw at time at, from oathtool.
func code(t testing.TB, raw []byte, at time.Time) string {
	t.Helper()
	return oathTOTP(t, raw, "sha1", 6, 30, at)
}

// wrongCodes returns n distinct 6-digit codes that match none of the steps a code made at
// time at may match (at-60s..at+60s, wider than the skew, to be safe).
func wrongCodes(t testing.TB, raw []byte, at time.Time, n int) []string {
	t.Helper()
	valid := map[string]bool{}
	for d := -2; d <= 2; d++ {
		valid[code(t, raw, at.Add(time.Duration(d)*30*time.Second))] = true
	}
	var out []string
	for i := 0; len(out) < n; i++ {
		c := fmt.Sprintf("%06d", i*7919%1000000)
		if !valid[c] {
			out = append(out, c)
		}
	}
	return out
}

// enrolTOTP gives userid a default TOTP entry, enrolled at time at, and returns its secret.
func enrolTOTP(t testing.TB, m *Manager, userid string, at time.Time) []byte {
	t.Helper()
	raw := newSecret(t, 20)
	if _, err := m.AddTOTP(userid, "phone", totpURI(raw, "", 0, 0), code(t, raw, at), at); err != nil {
		t.Fatalf("AddTOTP(%s) = %v", userid, err)
	}
	return raw
}

// challenge returns userid's challenge at now, failing the test on an error.
func challenge(t testing.TB, m *Manager, userid string, now time.Time) string {
	t.Helper()
	ch, err := m.Challenge(userid, now)
	if err != nil {
		t.Fatalf("Challenge(%s) = %v", userid, err)
	}
	return ch
}

// verify runs one login second step: a fresh challenge, then the answer.
func verify(t testing.TB, m *Manager, userid, response string, now time.Time) error {
	t.Helper()
	return m.Verify(userid, challenge(t, m, userid, now), response, now)
}

// config returns the current tfa.json, failing the test on an error.
func config(t testing.TB, m *Manager) *Config {
	t.Helper()
	c, err := m.Config()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// jsonMember returns member name of the JSON object s.
func jsonMember(t testing.TB, s, name string) json.RawMessage {
	t.Helper()
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &obj); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return obj[name]
}
