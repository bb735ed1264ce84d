package ticket

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/quick"
	"time"
)

// CSRF golden values for the key 0x00..0x1f, user root@pam, time 0x5F5E1000, made with
// openssl 3.0: dgst -sha3-256 -mac HMAC -macopt hexkey:000102...1f, and dgst -sha256 of
// "5F5E1000:root@pam:" followed by the key.
const (
	goldenCSRFFile   = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8" // csrf.key as PBS writes it
	goldenCSRF       = "5F5E1000:eYYhZojOWKd3RfiDsafjcXxJRwJU2sqK+m4gaacHn4w"
	goldenCSRFLegacy = "5F5E1000:nA/2JEa22wf27myiL8Vay/d+k0LScp5+RbTOfZEfeeE"
)

func goldenCSRFKey(t testing.TB) *CSRFKey {
	t.Helper()
	k, err := ParseCSRFKey([]byte(goldenCSRFFile))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCSRFGolden(t *testing.T) {
	k := goldenCSRFKey(t)
	if string(k.key) != string(goldenSeed()) {
		t.Fatalf("ParseCSRFKey(%q) = %x; want 000102..1f", goldenCSRFFile, k.key)
	}
	if got := k.Token("root@pam", t0); got != goldenCSRF {
		t.Errorf("Token(root@pam, %d) = %q; want %q", goldenTime, got, goldenCSRF)
	}
	for _, tok := range []string{goldenCSRF, goldenCSRFLegacy} {
		if err := k.Check(tok, "root@pam", t0); err != nil {
			t.Errorf("Check(%q) = %v; want nil", tok, err)
		}
	}
}

func TestCSRFCheck(t *testing.T) {
	k := goldenCSRFKey(t)
	sec := func(n int64) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	good, legacy := goldenCSRF, goldenCSRFLegacy
	mac := good[9:]
	tests := []struct {
		name, token, user string
		now               time.Time
		want              error // besides ErrCSRF; nil with ok
		ok                bool
	}{
		{"good", good, "root@pam", t0, nil, true},
		{"legacy", legacy, "root@pam", t0, nil, true},
		{"at max age", good, "root@pam", sec(7200), nil, true},
		{"1 s too old", good, "root@pam", sec(7201), ErrExpired, false},
		{"legacy 1 s too old", legacy, "root@pam", sec(7201), ErrExpired, false},
		{"300 s ahead", good, "root@pam", sec(-300), nil, true},
		{"301 s ahead", good, "root@pam", sec(-301), ErrFuture, false},
		{"wrong user", good, "root@pbs", t0, nil, false},
		{"legacy wrong user", legacy, "alice@pam", t0, nil, false},
		{"empty user", good, "", t0, nil, false},
		{"time changed", "5F5E1001:" + mac, "root@pam", t0, nil, false},
		{"time lower case", "5f5e1000:" + mac, "root@pam", t0, nil, false},
		{"time short", "5F5E100:" + mac, "root@pam", t0, nil, false},
		{"digest flipped", good[:20] + "A" + good[21:], "root@pam", t0, nil, false},
		{"digest padded", good + "=", "root@pam", t0, nil, false},
		{"digest short", good[:len(good)-1], "root@pam", t0, nil, false},
		{"digest long", good + "A", "root@pam", t0, nil, false},
		{"digest with newline", good[:30] + "\n" + good[30:], "root@pam", t0, nil, false},
		{"extra colon", good + ":", "root@pam", t0, nil, false},
		{"three parts", "5F5E1000:root@pam:" + mac, "root@pam", t0, nil, false},
		{"no colon", "5F5E1000" + mac, "root@pam", t0, nil, false},
		{"empty", "", "root@pam", t0, nil, false},
		{"colon only", ":", "root@pam", t0, nil, false},
		{"PBS placeholder", "invalid", "root@pam", t0, nil, false},
		{"huge", strings.Repeat("A", 1<<20), "root@pam", t0, nil, false},
	}
	for _, tt := range tests {
		err := k.Check(tt.token, tt.user, tt.now)
		switch {
		case tt.ok && err != nil:
			t.Errorf("%s: Check(%.60q, %q) = %v; want nil", tt.name, tt.token, tt.user, err)
		case !tt.ok && !errors.Is(err, ErrCSRF):
			t.Errorf("%s: Check(%.60q, %q) = %v; want ErrCSRF", tt.name, tt.token, tt.user, err)
		case tt.want != nil && !errors.Is(err, tt.want):
			t.Errorf("%s: Check(%.60q, %q) = %v; want %v too", tt.name, tt.token, tt.user, err, tt.want)
		case err != nil && strings.Contains(err.Error(), mac[:10]):
			t.Errorf("%s: error %q contains the digest", tt.name, err)
		}
	}
}

// TestCSRFAnyDigestChange checks with testing/quick that changing any bit of a digest, in
// either form, is refused; the comparisons themselves are crypto/hmac.Equal and
// crypto/subtle.ConstantTimeCompare.
func TestCSRFAnyDigestChange(t *testing.T) {
	k := goldenCSRFKey(t)
	for _, tok := range []string{goldenCSRF, goldenCSRFLegacy} {
		sum, err := b64.DecodeString(tok[9:])
		if err != nil {
			t.Fatal(err)
		}
		f := func(pos uint8, bit uint8) bool {
			mod := append([]byte(nil), sum...)
			mod[int(pos)%len(mod)] ^= 1 << (bit % 8)
			return errors.Is(k.Check(tok[:9]+b64.EncodeToString(mod), "root@pam", t0), ErrCSRF)
		}
		if err := quick.Check(f, &quick.Config{MaxCount: 2000}); err != nil {
			t.Errorf("Check of %q with a flipped digest bit: %v", tok, err)
		}
	}
}

func TestCSRFRoundTrip(t *testing.T) {
	k, err := ParseCSRFKey([]byte(b64.EncodeToString(make([]byte, 32))))
	if err != nil {
		t.Fatal(err)
	}
	other, err := ParseCSRFKey([]byte(strings.Repeat("k", 40))) // legacy form: raw bytes
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"root@pam", "jürgen@pbs", "a:b@c", ""} {
		tok := k.Token(u, t0)
		if len(tok) != 8+1+43 {
			t.Errorf("Token(%q) = %q: %d bytes; want 52", u, tok, len(tok))
		}
		if err := k.Check(tok, u, t0.Add(time.Hour)); err != nil {
			t.Errorf("Check(Token(%q)) = %v; want nil", u, err)
		}
		if err := other.Check(tok, u, t0); !errors.Is(err, ErrCSRF) {
			t.Errorf("Check(Token(%q)) with another key = %v; want ErrCSRF", u, err)
		}
	}
}

func TestCSRFKeyFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "csrf.key")
	if err := GenerateCSRFKey(p, os.Getgid()); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if dec, err := base64.RawStdEncoding.DecodeString(string(data)); err != nil || len(dec) != CSRFKeySize || len(data) != 43 {
		t.Errorf("csrf.key = %q; want 43 characters of unpadded base64 of %d bytes (%v)", data, CSRFKeySize, err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode() != CSRFKeyFileMode {
		t.Errorf("mode of csrf.key = %v, %v; want %v", fi.Mode(), err, os.FileMode(CSRFKeyFileMode))
	}
	if err := GenerateCSRFKey(p, -1); !errors.Is(err, fs.ErrExist) {
		t.Errorf("GenerateCSRFKey over an existing key = %v; want fs.ErrExist", err)
	}
	if again, _ := os.ReadFile(p); string(again) != string(data) {
		t.Error("GenerateCSRFKey over an existing key changed it")
	}
	k, err := LoadCSRFKey(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Check(k.Token("root@pam", t0), "root@pam", t0); err != nil {
		t.Errorf("Check(Token) with the loaded key = %v", err)
	}

	for _, mode := range []os.FileMode{0o644, 0o660, 0o604, 0o641} {
		q := writeFile(t, t.TempDir(), "csrf.key", data, mode)
		if _, err := LoadCSRFKey(q); !errors.Is(err, ErrFileMode) {
			t.Errorf("LoadCSRFKey(mode %v) = %v; want ErrFileMode", mode, err)
		}
	}
	for _, bad := range []string{"", "short", b64.EncodeToString(make([]byte, 8))} {
		q := writeFile(t, t.TempDir(), "csrf.key", []byte(bad), 0o640)
		if _, err := LoadCSRFKey(q); !errors.Is(err, ErrBadKey) {
			t.Errorf("LoadCSRFKey(%q) = %v; want ErrBadKey", bad, err)
		}
	}
}

// TestCSRFLegacyKeyFile uses a csrf.key of older PBS versions, a PEM RSA key, whose bytes are
// the key: the legacy digest is SHA-256(data || file contents), and new tokens are HMACs
// keyed with the file contents.
func TestCSRFLegacyKeyFile(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 1024) // only bytes here, never used to sign
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pemBytes(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk))
	k, err := LoadCSRFKey(writeFile(t, t.TempDir(), "csrf.key", pemKey, 0o640))
	if err != nil {
		t.Fatal(err)
	}
	if string(k.key) != string(pemKey) {
		t.Fatal("legacy csrf.key: key is not the file contents")
	}
	sum := sha256.Sum256(append([]byte("5F5E1000:root@pam:"), pemKey...))
	legacy := "5F5E1000:" + base64.RawStdEncoding.EncodeToString(sum[:])
	if err := k.Check(legacy, "root@pam", t0); err != nil {
		t.Errorf("Check(legacy token of a legacy key) = %v; want nil", err)
	}
	if err := k.Check(k.Token("root@pam", t0), "root@pam", t0); err != nil {
		t.Errorf("Check(Token) with a legacy key = %v; want nil", err)
	}
	// A trailing newline makes a base64 file a legacy one, as in PBS (its base64 decoder
	// refuses it); the key is then the whole file, newline included.
	nl, err := ParseCSRFKey([]byte(goldenCSRFFile + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if string(nl.key) != goldenCSRFFile+"\n" {
		t.Errorf("ParseCSRFKey(base64 + newline) key = %q; want the file bytes", nl.key)
	}
}
