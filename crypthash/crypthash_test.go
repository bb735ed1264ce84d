package crypthash

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func newHasher(t testing.TB) *Hasher {
	t.Helper()
	h, err := New()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// tool runs a system tool, skipping the test when it is missing unless GATEHOUSE_REQUIRE_TOOLS
// is set (`make test` installs openssl and whois, which has mkpasswd).
func tool(t *testing.T, argv ...string) string {
	t.Helper()
	if _, err := exec.LookPath(argv[0]); err != nil {
		if os.Getenv("GATEHOUSE_REQUIRE_TOOLS") != "" {
			t.Fatalf("%s not installed (make test installs it)", argv[0])
		}
		t.Skipf("%s not installed; run make test", argv[0])
	}
	out, err := exec.Command(argv[0], argv[1:]...).Output()
	if err != nil {
		t.Fatalf("%v: %v", argv, err)
	}
	return strings.TrimSpace(string(out))
}

// TestForeignHashes checks hashes made at test time by openssl passwd -5/-6 and mkpasswd.
func TestForeignHashes(t *testing.T) {
	const secret = "6f1c1e1e-8a4b-4c57-9a7e-0c9a1e7d2b11"
	tools := []struct {
		name string
		argv []string
	}{
		{"openssl -5", []string{"openssl", "passwd", "-5", secret}},
		{"openssl -6", []string{"openssl", "passwd", "-6", secret}},
		{"openssl -5 rounds", []string{"openssl", "passwd", "-5", "-salt", "rounds=2000$abcdefgh", secret}},
		{"mkpasswd yescrypt", []string{"mkpasswd", "-m", "yescrypt", secret}},
		{"mkpasswd sha256crypt", []string{"mkpasswd", "-m", "sha256crypt", secret}},
		{"mkpasswd sha512crypt rounds", []string{"mkpasswd", "-m", "sha512crypt", "-R", "1000", secret}},
	}
	h := newHasher(t)
	for _, tt := range tools {
		t.Run(tt.name, func(t *testing.T) {
			hash := tool(t, tt.argv...)
			if ok, err := h.Check(hash, secret); !ok || err != nil {
				t.Errorf("Check(%s hash %q, secret) = %v, %v; want true, nil", tt.name, hash, ok, err)
			}
			if ok, err := h.Check(hash, secret+"x"); ok || err != nil {
				t.Errorf("Check(%s hash %q, wrong) = %v, %v; want false, nil", tt.name, hash, ok, err)
			}
		})
	}
}

// TestHashMatchesOpenSSL: openssl given our salt prints our hash, so the rounds (5000, the
// default, not written) and the encoding are crypt(3)'s.
func TestHashMatchesOpenSSL(t *testing.T) {
	const secret = "correct horse battery staple"
	h := newHasher(t)
	hash, err := h.Hash(secret)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(hash, "$")
	if len(parts) != 4 || parts[1] != "5" {
		t.Fatalf("Hash() = %q; want $5$salt$key", hash)
	}
	if got := tool(t, "openssl", "passwd", "-5", "-salt", parts[2], secret); got != hash {
		t.Errorf("openssl passwd -5 -salt %s = %q; want our %q", parts[2], got, hash)
	}
	if ok, err := h.Check(hash, secret); !ok || err != nil {
		t.Errorf("Check(Hash(s), s) = %v, %v; want true, nil", ok, err)
	}
}

func TestCheckScheme(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"$5$abc$key", true},
		{"$6$abc$key", true},
		{"$5$rounds=1000$abc$key", true},
		{"$5$rounds=999$abc$key", false},
		{"$6$rounds=0$abc$key", false},
		{"$6$rounds=-5$abc$key", false},
		{"$5$rounds=10000001$abc$key", false},
		{"$5$rounds=abc$abc$key", false},
		{"$5$rounds=5000", false},
		{"$y$j9T$salt$key", true},
		{"$2b$10$abc", false},
		{"$1$abc$xyz", false},
		{"", false},
		{"$", false},
	}
	for _, tt := range tests {
		err := CheckScheme(tt.in)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrBadHash)) {
			t.Errorf("CheckScheme(%q) = %v; want ok=%v", tt.in, err, tt.ok)
		}
	}
}

// TestErrorsHideValues: a plaintext secret stored where a hash belongs never reaches an error.
func TestErrorsHideValues(t *testing.T) {
	h := newHasher(t)
	for _, stored := range []string{"hunter2-plaintext", "$hunter2plaintext$x", "$5$rounds=hunter2plaintext$x$y"} {
		_, err := h.Check(stored, "whatever")
		if err == nil || !errors.Is(err, ErrBadHash) {
			t.Fatalf("Check(%q) = %v; want ErrBadHash", stored, err)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Check(%q) error %q repeats the stored value", stored, err)
		}
	}
}

func FuzzCheckScheme(f *testing.F) {
	for _, s := range []string{"$5$abc$key", "$5$rounds=1000$abc$key", "$y$j9T$a$b", "$6$rounds=", "$"} {
		f.Add(s, "secret")
	}
	h := newHasher(f)
	f.Fuzz(func(t *testing.T, hash, secret string) {
		if strings.HasPrefix(hash, "$y$") {
			return // yescrypt parameters can ask for gigabytes; not fuzzed here
		}
		if strings.Contains(hash, "rounds=") && CheckScheme(hash) == nil {
			return // valid but possibly slow; the scheme check is what is fuzzed
		}
		_, err := h.Check(hash, secret)
		if err != nil && !errors.Is(err, ErrBadHash) {
			t.Fatalf("Check(%q) error %v does not wrap ErrBadHash", hash, err)
		}
	})
}
