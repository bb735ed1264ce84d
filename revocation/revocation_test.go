package revocation

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"gatehouse/shmem"
)

// open returns a Store on revocations.json in dir with its own view of page (nil: a page of
// its own), as a process has.
func open(t *testing.T, dir string, page *shmem.Cache) *Store {
	t.Helper()
	if page == nil {
		p, err := shmem.New()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		page = p
	}
	gen, err := page.View()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gen.Close() })
	s, err := Open(Options{Path: filepath.Join(dir, "revocations.json"), Generations: gen})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRevoke(t *testing.T) {
	dir := t.TempDir()
	page, err := shmem.New()
	if err != nil {
		t.Fatal(err)
	}
	defer page.Close()
	a, b := open(t, dir, page), open(t, dir, page) // two views, as two processes have
	now := time.Unix(1_800_000_000, 0)
	if r, err := b.Revoked("alice@pbs", now); r || err != nil {
		t.Fatalf("Revoked before any revocation = %v, %v; want false, nil", r, err)
	}
	if err := a.Revoke("alice@pbs", now); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		user   string
		issued time.Time
		want   bool
	}{
		{"alice@pbs", now.Add(-time.Hour), true},
		{"alice@pbs", now, true},
		{"alice@pbs", now.Add(999 * time.Millisecond), true}, // same second
		{"alice@pbs", now.Add(time.Second), false},
		{"bob@pbs", now.Add(-time.Hour), false},
	}
	for _, tt := range tests {
		if got, err := b.Revoked(tt.user, tt.issued); got != tt.want || err != nil {
			t.Errorf("Revoked(%s, %v) = %v, %v; want %v", tt.user, tt.issued, got, err, tt.want)
		}
	}
	if nb, _ := b.NotBefore("alice@pbs", now); !nb.Equal(now.Add(time.Second)) {
		t.Errorf("NotBefore(alice, now) = %v; want now+1s", nb)
	}
	if nb, _ := b.NotBefore("alice@pbs", now.Add(time.Minute)); !nb.Equal(now.Add(time.Minute)) {
		t.Errorf("NotBefore(alice, later) = %v; want later", nb)
	}
	// A ticket stamped by NotBefore is ended by the next revocation, even in the same second
	// or with a clock that went backwards.
	nb, _ := b.NotBefore("alice@pbs", now)
	if err := a.Revoke("alice@pbs", now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if r, _ := b.Revoked("alice@pbs", nb); !r {
		t.Errorf("ticket stamped %v survived a second revocation", nb)
	}
	if r, _ := b.Revoked("alice@pbs", now); !r {
		t.Error("an older Revoke moved the time backwards")
	}
	fi, err := os.Stat(a.o.Path)
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("file mode = %v, %v; want 0640", fi, err)
	}
}

func TestBadFile(t *testing.T) {
	for name, content := range map[string]string{
		"empty":    "",
		"array":    "[]",
		"null":     "null",
		"string":   `{"alice@pbs": "1"}`,
		"bad user": `{"alice": 1}`,
		"negative": `{"alice@pbs": -1}`,
		"trailing": `{"alice@pbs": 1} {}`,
	} {
		t.Run(name, func(t *testing.T) {
			s := open(t, t.TempDir(), nil)
			if err := os.WriteFile(s.o.Path, []byte(content), 0o640); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Revoked("alice@pbs", time.Now()); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Revoked on %q = %v; want ErrCorrupt", content, err)
			}
			if err := s.Revoke("alice@pbs", time.Now()); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Revoke on %q = %v; want ErrCorrupt", content, err)
			}
			if data, _ := os.ReadFile(s.o.Path); string(data) != content {
				t.Errorf("file now %q; want it untouched", data)
			}
		})
	}
	s := open(t, t.TempDir(), nil)
	if err := os.WriteFile(s.o.Path, []byte(`{}`), 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(s.o.Path, 0o666)
	if _, err := s.Revoked("alice@pbs", time.Now()); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Revoked on a world-writable file = %v; want ErrCorrupt", err)
	}
}

// TestUnsafeFile: what lockfile.ReadFile refuses is ErrCorrupt here, for readers and writers.
func TestUnsafeFile(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, path string)
	}{
		{"symlink", func(t *testing.T, path string) {
			target := path + ".real"
			if err := os.WriteFile(target, []byte(`{}`), 0o640); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		}},
		{"directory", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o750); err != nil {
				t.Fatal(err)
			}
		}},
		{"fifo", func(t *testing.T, path string) {
			if err := syscall.Mkfifo(path, 0o640); err != nil {
				t.Fatal(err)
			}
		}},
		{"group writable", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte(`{}`), 0o640); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, 0o660); err != nil {
				t.Fatal(err)
			}
		}},
		{"too large", func(t *testing.T, path string) {
			if err := os.WriteFile(path, nil, 0o640); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, MaxFileSize+1); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t, t.TempDir(), nil)
			tt.setup(t, s.o.Path)
			if _, err := s.Revoked("alice@pbs", time.Now()); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Revoked on a %s = %v; want ErrCorrupt", tt.name, err)
			}
			if err := s.Revoke("alice@pbs", time.Now()); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Revoke on a %s = %v; want ErrCorrupt", tt.name, err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{`{}`, `{"root@pam": 1800000000}`, `{"a@b": 0}`, `[`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parse(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("parse(%q) = %v; want an error wrapping ErrCorrupt", data, err)
			}
			return
		}
		for _, v := range m {
			if v <= 0 {
				t.Fatalf("parse(%q) accepted time %d", data, v)
			}
		}
	})
}
