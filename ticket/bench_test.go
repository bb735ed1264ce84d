package ticket

import (
	"crypto/x509"
	"testing"
	"time"
)

func BenchmarkSign(b *testing.B) {
	s := goldenSigner(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.SignUser("PBS", "root@pam", t0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyUser is the uncached path: parse plus one Ed25519 verification.
func BenchmarkVerifyUser(b *testing.B) {
	v := goldenSigner(b).Public()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := v.VerifyUser(goldenUser, "PBS", t0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyUserRSA is the uncached path with a 2048-bit RSA key (older PBS installs).
func BenchmarkVerifyUserRSA(b *testing.B) {
	s, err := ParseSigner(pemBytes(b, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey())))
	if err != nil {
		b.Fatal(err)
	}
	tk, err := s.SignUser("PBS", "root@pam", t0)
	if err != nil {
		b.Fatal(err)
	}
	v := s.Public()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := v.VerifyUser(tk, "PBS", t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCacheHit(b *testing.B) {
	c := NewCache(goldenSigner(b).Public(), 0)
	now := t0.Add(time.Minute)
	if _, _, err := c.VerifyUser(goldenUser, "PBS", 1, now); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := c.VerifyUser(goldenUser, "PBS", 1, now); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkCSRFCheck(b *testing.B) {
	k := goldenCSRFKey(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := k.Check(goldenCSRF, "root@pam", t0); err != nil {
			b.Fatal(err)
		}
	}
}
