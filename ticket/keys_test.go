package ticket

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"gatehouse/lockfile"
)

// rsaKey is one 2048-bit RSA key for the whole test binary (generating one takes a while).
var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func writeFile(t testing.TB, dir, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // WriteFile is subject to the umask
		t.Fatal(err)
	}
	return p
}

func marshalPKIX(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pemBytes(t, "PUBLIC KEY", der)
}

func marshalPKCS8(t testing.TB, priv any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return pemBytes(t, "PRIVATE KEY", der)
}

// TestKeyTypesRoundTrip writes each key type in the PEM forms PBS and openssl use, loads them
// from files and checks Sign/Verify both ways, and that keys do not verify each other's
// tickets.
func TestKeyTypesRoundTrip(t *testing.T) {
	_, edPriv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	rk := rsaKey()
	tests := []struct {
		name, alg string
		priv, pub []byte
	}{
		{"Ed25519 PKCS#8 (PBS)", "Ed25519", marshalPKCS8(t, edPriv), marshalPKIX(t, edPriv.Public())},
		{"RSA PKCS#1 (older PBS)", "RSA-2048", pemBytes(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)), marshalPKIX(t, &rk.PublicKey)},
		{"RSA PKCS#8, PKCS#1 public", "RSA-2048", marshalPKCS8(t, rk), pemBytes(t, "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rk.PublicKey))},
		{"EC P-256 SEC 1", "ECDSA-P256", append([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"), pemBytes(t, "EC PRIVATE KEY", ecDER)...), marshalPKIX(t, &ecKey.PublicKey)},
		{"EC P-384 PKCS#8", "ECDSA-P384", marshalPKCS8(t, ec384), marshalPKIX(t, &ec384.PublicKey)},
	}
	var tickets []string
	var verifiers []*Verifier
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := LoadSigner(writeFile(t, dir, "authkey.key", tt.priv, 0o600))
			if err != nil {
				t.Fatal(err)
			}
			v, err := LoadVerifier(writeFile(t, dir, "authkey.pub", tt.pub, 0o640))
			if err != nil {
				t.Fatal(err)
			}
			if v.Algorithm() != tt.alg || s.Public().Algorithm() != tt.alg {
				t.Errorf("Algorithm() = %q, %q; want %q", v.Algorithm(), s.Public().Algorithm(), tt.alg)
			}
			full, err := s.SignUser("PBS", "alice@pbs", t0)
			if err != nil {
				t.Fatal(err)
			}
			for _, ver := range []*Verifier{v, s.Public()} {
				if u, issued, err := ver.VerifyUser(full, "PBS", t0); err != nil || u != "alice@pbs" || !issued.Equal(t0) {
					t.Errorf("VerifyUser(%q) = %q, %v, %v; want alice@pbs, %v, nil", full, u, issued, err, t0)
				}
			}
			tfa, err := s.SignTFA("PBS", "alice@pbs", `{"totp":true}`, t0)
			if err != nil {
				t.Fatal(err)
			}
			if c, _, err := v.VerifyTFA(tfa, "PBS", "alice@pbs", t0); err != nil || c != `{"totp":true}` {
				t.Errorf("VerifyTFA = %q, %v; want challenge, nil", c, err)
			}
			if _, _, err := v.VerifyTFA(tfa, "PBS", "bob@pbs", t0); !errors.Is(err, ErrSignature) {
				t.Errorf("VerifyTFA(wrong aad) = %v; want ErrSignature", err)
			}
			tickets = append(tickets, full)
			verifiers = append(verifiers, v)
		})
	}
	for i, v := range verifiers {
		for j, tk := range tickets {
			if i == j || (strings.HasPrefix(tests[i].alg, "RSA") && strings.HasPrefix(tests[j].alg, "RSA")) {
				continue // the two RSA cases share a key
			}
			if _, _, err := v.VerifyUser(tk, "PBS", t0); !errors.Is(err, ErrSignature) {
				t.Errorf("%s verifying a ticket of %s = %v; want ErrSignature", tests[i].name, tests[j].name, err)
			}
		}
	}
}

func TestParseKeysRefuses(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edPriv, _ := ed25519.GenerateKey(nil)
	good := marshalPKCS8(t, edPriv)
	goodPub := marshalPKIX(t, edPriv.Public())
	signers := []struct{ name, data string }{
		{"empty", ""},
		{"not PEM", "hello"},
		{"RSA 1024", string(pemBytes(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small)))},
		{"P-224", string(marshalPKCS8(t, p224))},
		{"public key as private", string(goodPub)},
		{"certificate type", strings.Replace(string(good), "PRIVATE KEY", "CERTIFICATE", 2)},
		{"two keys", string(good) + string(good)},
		{"trailing junk", string(good) + "junk"},
		{"encrypted", strings.Replace(string(good), "-----\n", "-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00000000000000000000000000000000\n\n", 1)},
		{"Ed448 OID", strings.Replace(string(good), "MC4CAQAwBQYDK2VwBC", "MC4CAQAwBQYDK2VxBC", 1)},
	}
	for _, tt := range signers {
		if _, err := ParseSigner([]byte(tt.data)); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParseSigner(%s) = %v; want ErrBadKey", tt.name, err)
		}
	}
	verifiers := []struct{ name, data string }{
		{"empty", ""},
		{"RSA 1024", string(marshalPKIX(t, &small.PublicKey))},
		{"P-224", string(marshalPKIX(t, &p224.PublicKey))},
		{"private key as public", string(good)},
		{"two keys", string(goodPub) + string(goodPub)},
	}
	for _, tt := range verifiers {
		if _, err := ParseVerifier([]byte(tt.data)); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParseVerifier(%s) = %v; want ErrBadKey", tt.name, err)
		}
	}
}

func TestGenerateKeys(t *testing.T) {
	dir := t.TempDir()
	key, pub := filepath.Join(dir, "authkey.key"), filepath.Join(dir, "authkey.pub")
	gid := os.Getgid()
	if err := GenerateKeys(key, pub, gid); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
		head string
	}{{key, 0o600, "-----BEGIN PRIVATE KEY-----\n"}, {pub, 0o640, "-----BEGIN PUBLIC KEY-----\n"}} {
		fi, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != f.mode {
			t.Errorf("mode of %s = %v; want %v", f.path, fi.Mode(), f.mode)
		}
		if st := fi.Sys().(*syscall.Stat_t); gid > 0 && int(st.Gid) != gid {
			t.Errorf("group of %s = %d; want %d", f.path, st.Gid, gid)
		}
		data, _ := os.ReadFile(f.path)
		if !strings.HasPrefix(string(data), f.head) {
			t.Errorf("%s starts %.30q; want %q", f.path, data, f.head)
		}
	}
	s, err := LoadSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	v, err := LoadVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	tk, err := s.SignUser("PBS", "root@pam", t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.VerifyUser(tk, "PBS", t0); err != nil || s.Public().Algorithm() != "Ed25519" {
		t.Errorf("VerifyUser with generated keys = %v (%s); want nil (Ed25519)", err, s.Public().Algorithm())
	}

	before, _ := os.ReadFile(key)
	if err := GenerateKeys(key, pub, gid); !errors.Is(err, fs.ErrExist) {
		t.Errorf("GenerateKeys over existing keys = %v; want fs.ErrExist", err)
	}
	if after, _ := os.ReadFile(key); string(after) != string(before) {
		t.Errorf("GenerateKeys over existing keys changed %s", key)
	}
	// Either file alone is enough to refuse, and nothing is written.
	dir2 := t.TempDir()
	onlyPub := filepath.Join(dir2, "authkey.pub")
	writeFile(t, dir2, "authkey.pub", []byte("x"), 0o640)
	if err := GenerateKeys(filepath.Join(dir2, "authkey.key"), onlyPub, -1); !errors.Is(err, fs.ErrExist) {
		t.Errorf("GenerateKeys with existing pub = %v; want fs.ErrExist", err)
	}
	if _, err := os.Stat(filepath.Join(dir2, "authkey.key")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("GenerateKeys with existing pub wrote the key: %v", err)
	}
	if err := os.Symlink("/nonexistent", filepath.Join(dir2, "dangling")); err != nil {
		t.Fatal(err)
	}
	if err := GenerateKeys(filepath.Join(dir2, "dangling"), filepath.Join(dir2, "p"), -1); !errors.Is(err, fs.ErrExist) {
		t.Errorf("GenerateKeys over a dangling symlink = %v; want fs.ErrExist", err)
	}
	if err := GenerateKeys(filepath.Join(dir2, "same"), filepath.Join(dir2, "same"), -1); err == nil {
		t.Error("GenerateKeys(same, same) = nil; want an error")
	}
	// A failing public key write removes the new private key.
	k3 := filepath.Join(dir2, "k3")
	if err := GenerateKeys(k3, filepath.Join(dir2, "missing-dir", "pub"), -1); err == nil {
		t.Error("GenerateKeys into a missing directory = nil; want an error")
	}
	if _, err := os.Stat(k3); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("failed GenerateKeys left %s behind: %v", k3, err)
	}
}

func TestKeyFileModes(t *testing.T) {
	_, edPriv, _ := ed25519.GenerateKey(nil)
	priv, pub := marshalPKCS8(t, edPriv), marshalPKIX(t, edPriv.Public())
	tests := []struct {
		name  string
		load  func(string) error
		data  []byte
		mode  os.FileMode
		valid bool
	}{
		{"key 0600", loadSigner, priv, 0o600, true},
		{"key 0400", loadSigner, priv, 0o400, true},
		{"key 0640", loadSigner, priv, 0o640, false},
		{"key 0604", loadSigner, priv, 0o604, false},
		{"key 0620", loadSigner, priv, 0o620, false},
		{"key 0601", loadSigner, priv, 0o601, false},
		{"key 0666", loadSigner, priv, 0o666, false},
		{"pub 0640", loadVerifier, pub, 0o640, true},
		{"pub 0644", loadVerifier, pub, 0o644, true},
		{"pub 0660", loadVerifier, pub, 0o660, false},
		{"pub 0602", loadVerifier, pub, 0o602, false},
	}
	for _, tt := range tests {
		p := writeFile(t, t.TempDir(), "k", tt.data, tt.mode)
		err := tt.load(p)
		if tt.valid != (err == nil) || (!tt.valid && !errors.Is(err, ErrFileMode)) {
			t.Errorf("%s: load = %v; want valid=%v or ErrFileMode", tt.name, err, tt.valid)
		}
		if mode := fmt.Sprintf("%#o", uint32(tt.mode)); err != nil && (!strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), mode)) {
			t.Errorf("%s: error %q does not name the path and mode %s", tt.name, err, mode)
		}
	}
	dir := t.TempDir()
	target := writeFile(t, dir, "real", priv, 0o600)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigner(link); !errors.Is(err, lockfile.ErrNotRegular) {
		t.Errorf("LoadSigner(symlink) = %v; want ErrNotRegular", err)
	}
	if _, err := LoadVerifier(dir); !errors.Is(err, lockfile.ErrNotRegular) {
		t.Errorf("LoadVerifier(directory) = %v; want ErrNotRegular", err)
	}
	if _, err := LoadSigner(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadSigner(missing) = %v; want fs.ErrNotExist", err)
	}
	big := writeFile(t, dir, "big", make([]byte, MaxKeyFileSize+1), 0o600)
	if _, err := LoadSigner(big); !errors.Is(err, ErrBadKey) {
		t.Errorf("LoadSigner(%d bytes) = %v; want ErrBadKey", MaxKeyFileSize+1, err)
	}
}

func loadSigner(p string) error   { _, err := LoadSigner(p); return err }
func loadVerifier(p string) error { _, err := LoadVerifier(p); return err }
