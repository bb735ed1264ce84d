package lockfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// short is the timeout for waits that are expected to run out.
const short = 50 * time.Millisecond

// takeFunc is the signature of Exclusive and Shared.
type takeFunc func(path string, timeout time.Duration) (*Lock, error)

func lockKinds() map[string]takeFunc {
	return map[string]takeFunc{"exclusive": Exclusive, "shared": Shared}
}

func mustLock(t *testing.T, kind, path string) *Lock {
	t.Helper()
	l, err := lockKinds()[kind](path, DefaultTimeout)
	if err != nil {
		t.Fatalf("%s(%q) error: %v", kind, path, err)
	}
	return l
}

// checkTimeout checks that err is a lock timeout naming kind, path and wait.
func checkTimeout(t *testing.T, call string, err error, kind, path string, wait time.Duration) {
	t.Helper()
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("%s = %v; want error wrapping ErrTimeout", call, err)
	}
	msg := err.Error()
	for _, want := range []string{"taking " + kind + " lock", path, "timeout after " + wait.String()} {
		if !strings.Contains(msg, want) {
			t.Errorf("%s = %q; want it to contain %q", call, msg, want)
		}
	}
}

func TestLockCompatibility(t *testing.T) {
	tests := []struct {
		name   string
		held   string
		want   string
		blocks bool
	}{
		{"exclusive blocks exclusive", "exclusive", "exclusive", true},
		{"exclusive blocks shared", "exclusive", "shared", true},
		{"shared blocks exclusive", "shared", "exclusive", true},
		{"shared and shared coexist", "shared", "shared", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), ".token.lck")
			held := mustLock(t, tt.held, path)
			defer held.Unlock()
			take := lockKinds()[tt.want]
			call := tt.want + "(" + path + ", " + short.String() + ") with " + tt.held + " held"

			second, err := take(path, short)
			if !tt.blocks {
				if err != nil {
					t.Fatalf("%s = %v; want lock", call, err)
				}
				if err := second.Unlock(); err != nil {
					t.Fatalf("Unlock() = %v; want nil", err)
				}
				return
			}
			if err == nil {
				second.Unlock()
				t.Fatalf("%s = lock; want ErrTimeout", call)
			}
			checkTimeout(t, call, err, tt.want, path, short)

			// A waiter gets the lock once the holder lets go.
			type result struct {
				l   *Lock
				err error
			}
			done := make(chan result, 1)
			go func() {
				l, err := take(path, DefaultTimeout)
				done <- result{l, err}
			}()
			select {
			case r := <-done:
				r.l.Unlock()
				t.Fatalf("%s(%s) returned %v while %s lock held; want it to wait", tt.want, path, r.err, tt.held)
			default:
			}
			if err := held.Unlock(); err != nil {
				t.Fatalf("Unlock() = %v; want nil", err)
			}
			r := <-done
			if r.err != nil {
				t.Fatalf("%s(%s, %v) after Unlock = %v; want lock", tt.want, path, DefaultTimeout, r.err)
			}
			if err := r.l.Unlock(); err != nil {
				t.Fatalf("Unlock() = %v; want nil", err)
			}
		})
	}
}

func TestManySharedThenExclusive(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".user.lck")
	a := mustLock(t, "shared", path)
	b := mustLock(t, "shared", path)
	a.Unlock()
	_, err := Exclusive(path, short)
	checkTimeout(t, "Exclusive with one shared left", err, "exclusive", path, short)
	b.Unlock()
	l, err := Exclusive(path, short)
	if err != nil {
		t.Fatalf("Exclusive(%s) after all shared unlocked = %v; want lock", path, err)
	}
	l.Unlock()
}

func TestTimeoutError(t *testing.T) {
	tests := []struct {
		name    string
		kind    string
		timeout time.Duration
		wantMsg string
	}{
		{"exclusive 50ms", "exclusive", short, "timeout after 50ms waiting for lock: lock timeout"},
		{"shared 50ms", "shared", short, "timeout after 50ms waiting for lock: lock timeout"},
		{"exclusive no wait", "exclusive", 0, "timeout after 0s waiting for lock: lock timeout"},
		{"shared negative is no wait", "shared", -time.Second, "timeout after 0s waiting for lock: lock timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), ".token.lck")
			held := mustLock(t, "exclusive", path)
			defer held.Unlock()

			start := time.Now()
			l, err := lockKinds()[tt.kind](path, tt.timeout)
			elapsed := time.Since(start)
			if err == nil {
				l.Unlock()
				t.Fatalf("%s(%s, %v) = lock; want ErrTimeout", tt.kind, path, tt.timeout)
			}
			if !errors.Is(err, ErrTimeout) {
				t.Fatalf("%s(%s, %v) = %v; want ErrTimeout", tt.kind, path, tt.timeout, err)
			}
			want := "taking " + tt.kind + " lock " + path + ": " + tt.wantMsg
			if err.Error() != want {
				t.Errorf("%s(%s, %v) = %q; want %q", tt.kind, path, tt.timeout, err, want)
			}
			if elapsed < tt.timeout {
				t.Errorf("%s(%s, %v) gave up after %v; want >= %v", tt.kind, path, tt.timeout, elapsed, tt.timeout)
			}
		})
	}
}

func TestLockFileCreated(t *testing.T) {
	for kind, take := range lockKinds() {
		t.Run(kind, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), ".acl.lck")
			l, err := take(path, DefaultTimeout)
			if err != nil {
				t.Fatalf("%s(%s) = %v; want lock", kind, path, err)
			}
			defer l.Unlock()
			if got := l.Path(); got != path {
				t.Errorf("Path() = %q; want %q", got, path)
			}
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode(); got != 0o600 {
				t.Errorf("mode of %s = %v; want %v", path, got, fs.FileMode(0o600))
			}
		})
	}
}

func TestLockErrors(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	link := filepath.Join(dir, ".link.lck")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		path   string
		wantIs error
	}{
		{"missing parent dir", filepath.Join(dir, "nope", ".x.lck"), fs.ErrNotExist},
		{"symlink not followed", link, syscall.ELOOP},
		{"directory", dir, nil},
	}
	for _, tt := range tests {
		for kind, take := range lockKinds() {
			t.Run(tt.name+"/"+kind, func(t *testing.T) {
				l, err := take(tt.path, short)
				if err == nil {
					l.Unlock()
					t.Fatalf("%s(%s) = lock; want error", kind, tt.path)
				}
				if errors.Is(err, ErrTimeout) {
					t.Errorf("%s(%s) = %v; want a non-timeout error", kind, tt.path, err)
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("%s(%s) = %v; want error wrapping %v", kind, tt.path, err, tt.wantIs)
				}
				if want := "taking " + kind + " lock " + tt.path + ": "; !strings.HasPrefix(err.Error(), want) {
					t.Errorf("%s(%s) = %q; want prefix %q", kind, tt.path, err, want)
				}
			})
		}
	}
	if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Lstat(%s) after locking a symlink to it = %v; want not exist (link must not be followed)", target, err)
	}
}

func TestUnlockTwice(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".lck")
	for kind := range lockKinds() {
		l := mustLock(t, kind, path)
		if err := l.Unlock(); err != nil {
			t.Fatalf("first Unlock() of %s lock = %v; want nil", kind, err)
		}
		if err := l.Unlock(); err != nil {
			t.Errorf("second Unlock() of %s lock = %v; want nil", kind, err)
		}
	}
	// A released lock does not hold anything.
	l, err := Exclusive(path, 0)
	if err != nil {
		t.Fatalf("Exclusive(%s, 0) after unlocks = %v; want lock", path, err)
	}
	l.Unlock()
	var nilLock *Lock
	if err := nilLock.Unlock(); err != nil {
		t.Errorf("(*Lock)(nil).Unlock() = %v; want nil", err)
	}
}
