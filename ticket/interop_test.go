package ticket

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// openssl runs openssl with args, skipping the test when it is missing unless
// GATEHOUSE_REQUIRE_TOOLS is set (`make test` installs it), and returns its standard output.
func openssl(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("GATEHOUSE_REQUIRE_TOOLS") != "" {
			t.Fatal("openssl not installed (make test installs it)")
		}
		t.Skip("openssl not installed; run make test")
	}
	cmd := exec.Command("openssl", args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %s: %v: %s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// sigOf returns the decoded signature of a ticket.
func sigOf(t *testing.T, tk string) []byte {
	t.Helper()
	sig, err := base64.RawStdEncoding.DecodeString(tk[strings.LastIndex(tk, "::")+2:])
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// TestOpenSSLEd25519 checks, both ways, that openssl and this package agree on Ed25519 ticket
// signatures, with a key made by openssl genpkey (the same PKCS#8 PEM PBS writes).
func TestOpenSSLEd25519(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "authkey.key")
	openssl(t, nil, "genpkey", "-algorithm", "ed25519", "-out", key)
	if err := os.Chmod(key, 0o600); err != nil {
		t.Fatal(err)
	}
	pub := writeFile(t, dir, "authkey.pub", openssl(t, nil, "pkey", "-in", key, "-pubout"), 0o640)
	s, err := LoadSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	v, err := LoadVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}

	// openssl signs, we verify: a full and a TFA ticket.
	for _, tc := range []struct{ text, aad string }{
		{"PBS:root@pam:5F5E1000", ""},
		{`PBS:!tfa!{"totp"%3Atrue}:5F5E1000`, "root@pam"},
	} {
		msg := writeFile(t, dir, "msg", signedMessage(tc.text, tc.aad), 0o600)
		sig := openssl(t, nil, "pkeyutl", "-sign", "-rawin", "-inkey", key, "-in", msg)
		tk := tc.text + "::" + base64.RawStdEncoding.EncodeToString(sig)
		var err error
		if tc.aad == "" {
			_, _, err = v.VerifyUser(tk, "PBS", t0)
		} else {
			_, _, err = v.VerifyTFA(tk, "PBS", tc.aad, t0)
		}
		if err != nil {
			t.Errorf("verifying openssl's ticket %q: %v", tk, err)
		}
	}

	// We sign, openssl verifies.
	tk, err := s.SignTFA("PBS", "root@pam", `{"totp":true}`, t0)
	if err != nil {
		t.Fatal(err)
	}
	msg := writeFile(t, dir, "msg2", []byte(Info(tk)[:len(Info(tk))-2]+":root@pam"), 0o600)
	sigFile := writeFile(t, dir, "sig", sigOf(t, tk), 0o600)
	out := openssl(t, nil, "pkeyutl", "-verify", "-rawin", "-pubin", "-inkey", pub, "-in", msg, "-sigfile", sigFile)
	if !bytes.Contains(out, []byte("Signature Verified Successfully")) {
		t.Errorf("openssl pkeyutl -verify of our ticket %q: %s", tk, out)
	}
}

// TestOpenSSLDigestKeys checks RSA (PKCS#1 PEM, as older PBS wrote) and ECDSA keys made by
// openssl: openssl dgst -sha256 -sign tickets verify here, and our signatures verify with
// openssl dgst -sha256 -verify.
func TestOpenSSLDigestKeys(t *testing.T) {
	for _, kt := range []struct {
		name string
		gen  []string
	}{
		{"RSA", []string{"genrsa", "-traditional", "2048"}},
		{"EC", []string{"ecparam", "-name", "prime256v1", "-genkey"}},
	} {
		t.Run(kt.name, func(t *testing.T) {
			dir := t.TempDir()
			key := writeFile(t, dir, "authkey.key", openssl(t, nil, kt.gen...), 0o600)
			pub := writeFile(t, dir, "authkey.pub", openssl(t, nil, "pkey", "-in", key, "-pubout"), 0o640)
			s, err := LoadSigner(key)
			if err != nil {
				t.Fatal(err)
			}
			v, err := LoadVerifier(pub)
			if err != nil {
				t.Fatal(err)
			}
			text := "PBS:alice@pbs:5F5E1000"
			msg := writeFile(t, dir, "msg", []byte(text), 0o600)
			sig := openssl(t, nil, "dgst", "-sha256", "-sign", key, msg)
			if _, _, err := v.VerifyUser(text+"::"+base64.RawStdEncoding.EncodeToString(sig), "PBS", t0); err != nil {
				t.Errorf("verifying openssl's %s ticket: %v", kt.name, err)
			}
			tk, err := s.SignUser("PBS", "alice@pbs", t0)
			if err != nil {
				t.Fatal(err)
			}
			sigFile := writeFile(t, dir, "sig", sigOf(t, tk), 0o600)
			out := openssl(t, nil, "dgst", "-sha256", "-verify", pub, "-signature", sigFile, msg)
			if !bytes.Contains(out, []byte("Verified OK")) {
				t.Errorf("openssl dgst -verify of our %s ticket: %s", kt.name, out)
			}
		})
	}
}

// TestOpenSSLGeneratedKeys checks that GenerateKeys writes what openssl reads, and that the
// public key file is exactly what openssl derives from the private one.
func TestOpenSSLGeneratedKeys(t *testing.T) {
	dir := t.TempDir()
	key, pub := filepath.Join(dir, "authkey.key"), filepath.Join(dir, "authkey.pub")
	if err := GenerateKeys(key, pub, -1); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(pub)
	if err != nil {
		t.Fatal(err)
	}
	if got := openssl(t, nil, "pkey", "-in", key, "-pubout"); !bytes.Equal(got, want) {
		t.Errorf("openssl pkey -pubout of authkey.key:\n%s\nauthkey.pub:\n%s", got, want)
	}
	if text := openssl(t, nil, "pkey", "-in", key, "-noout", "-text"); !bytes.Contains(text, []byte("ED25519 Private-Key")) {
		t.Errorf("openssl pkey -text of authkey.key: %s", text)
	}
}

// TestOpenSSLCSRF recomputes both CSRF digests with openssl.
func TestOpenSSLCSRF(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "csrf.key")
	if err := GenerateCSRFKey(p, -1); err != nil {
		t.Fatal(err)
	}
	k, err := LoadCSRFKey(p)
	if err != nil {
		t.Fatal(err)
	}
	tok := k.Token("alice@pbs", t0)
	data := []byte(tok[:8] + ":alice@pbs:")
	mac := openssl(t, data, "dgst", "-sha3-256", "-mac", "HMAC", "-macopt", "hexkey:"+hex.EncodeToString(k.key), "-binary")
	if want := tok[:9] + base64.RawStdEncoding.EncodeToString(mac); tok != want {
		t.Errorf("Token = %q; openssl HMAC-SHA3-256 gives %q", tok, want)
	}
	legacy := openssl(t, append(data, k.key...), "dgst", "-sha256", "-binary")
	if err := k.Check(tok[:9]+base64.RawStdEncoding.EncodeToString(legacy), "alice@pbs", t0); err != nil {
		t.Errorf("Check(legacy token made with openssl) = %v; want nil", err)
	}
}
