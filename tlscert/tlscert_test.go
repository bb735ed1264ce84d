package tlscert

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEnsure(t *testing.T) {
	dir := t.TempDir()
	key, cert := filepath.Join(dir, "proxy.key"), filepath.Join(dir, "proxy.pem")
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	wrote, err := Ensure(key, cert, -1, now)
	if err != nil || !wrote {
		t.Fatalf("Ensure on an empty dir = %v, %v; want true, nil", wrote, err)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatalf("loading the pair: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.VerifyHostname("localhost"); err != nil {
		t.Errorf("certificate does not cover localhost: %v", err)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("certificate does not cover 127.0.0.1: %v", err)
	}
	if got := leaf.NotAfter.Sub(now); got < Validity-time.Minute {
		t.Errorf("validity %v; want about %v", got, Validity)
	}
	for path, want := range map[string]os.FileMode{key: 0o640, cert: 0o644} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("mode of %s = %v, %v; want %v", path, fi.Mode(), err, want)
		}
	}
	before, _ := os.ReadFile(cert)
	if wrote, err := Ensure(key, cert, -1, now); wrote || err != nil {
		t.Errorf("second Ensure = %v, %v; want false, nil (files kept)", wrote, err)
	}
	if after, _ := os.ReadFile(cert); string(after) != string(before) {
		t.Error("second Ensure changed the certificate")
	}
	if err := os.Remove(cert); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(key, cert, -1, now); err == nil || !strings.Contains(err.Error(), "only one of") {
		t.Errorf("Ensure with the certificate missing = %v; want an 'only one of' error", err)
	}
}
