// Package tlscert makes proxyd's TLS certificate on first start: a self-signed ECDSA P-256
// certificate (proxy.pem, 0644) and its key (proxy.key, 0640 root:gatehouse), valid 10 years,
// for "localhost", the host name, 127.0.0.1 and ::1. apid writes them (it writes every file);
// proxyd only reads them. An administrator replaces both files with a real certificate and
// Gatehouse never touches them again: Ensure writes only when both are missing, and refuses to
// go on when exactly one of them exists.
package tlscert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"time"

	"gatehouse/lockfile"
)

// Validity of a generated certificate.
const Validity = 10 * 365 * 24 * time.Hour

// Ensure creates keyPath and certPath when neither exists. It reports whether it wrote them.
func Ensure(keyPath, certPath string, gid int, now time.Time) (bool, error) {
	keyThere, err := exists(keyPath)
	if err != nil {
		return false, err
	}
	certThere, err := exists(certPath)
	if err != nil {
		return false, err
	}
	switch {
	case keyThere && certThere:
		return false, nil
	case keyThere != certThere:
		return false, fmt.Errorf("making TLS certificate: only one of %s and %s exists; restore or remove it", keyPath, certPath)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return false, fmt.Errorf("making TLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return false, fmt.Errorf("making TLS certificate serial: %w", err)
	}
	host, _ := os.Hostname()
	names := []string{"localhost"}
	if host != "" && host != "localhost" {
		names = append(names, host)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[len(names)-1], Organization: []string{"Gatehouse self-signed"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(Validity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              names,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return false, fmt.Errorf("making TLS certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return false, fmt.Errorf("encoding TLS key: %w", err)
	}
	kopt := lockfile.DefaultOptions(0o640)
	if gid > 0 {
		kopt.GID = gid
	}
	if err := lockfile.Replace(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), kopt); err != nil {
		return false, fmt.Errorf("writing TLS key: %w", err)
	}
	if err := lockfile.Replace(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), lockfile.DefaultOptions(0o644)); err != nil {
		return false, fmt.Errorf("writing TLS certificate: %w", err)
	}
	return true, nil
}

func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("checking %s: %w", path, err)
	}
	return true, nil
}
