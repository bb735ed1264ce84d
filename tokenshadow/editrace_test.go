package tokenshadow

import (
	"errors"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/go-crypt/crypt/algorithm/shacrypt"
)

// TestEditDuringSlowPath: a slow path that read token.shadow before a manual edit (no generation
// bump) must not put the old secret back into the cache once the edit has been noticed, by the
// watcher's CheckFile or by another slow path that read the new file. (It did, until the next
// CheckFile: the old secret was accepted again, and the new one refused, for up to one
// WatchInterval after the edit had taken effect.)
func TestEditDuringSlowPath(t *testing.T) {
	for _, tt := range []struct {
		name    string
		checked bool // noticed by CheckFile; otherwise by a Verify of the new secret
	}{
		{"noticed by CheckFile", true},
		{"noticed by another slow path", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, id := newStore(t), "alice@pbs!ci"
			// The old secret's hash takes 500 000 rounds (about 100 ms; 5000 is the default), so
			// its slow path is still checking it while the test edits the file.
			writeShadow(t, s, id, slowHash(t, "old-secret", 500_000))
			done := startSlowVerify(t, s, id, "old-secret")
			h, err := s.hasher.Hash("new-secret")
			if err != nil {
				t.Fatal(err)
			}
			writeShadow(t, s, id, h)
			if tt.checked {
				if err := s.CheckFile(); err != nil {
					t.Fatal(err)
				}
			} else if err := s.Verify(id, "new-secret"); err != nil {
				t.Fatalf("Verify(new) after the edit = %v; want nil", err)
			}
			// It began before the edit and read the old file: accepting is right.
			if err := <-done; err != nil {
				t.Fatalf("the Verify(old) that began before the edit = %v; want nil", err)
			}
			if err := s.Verify(id, "old-secret"); !errors.Is(err, ErrWrongSecret) {
				t.Errorf("after the edit was noticed, Verify(old) = %v; want ErrWrongSecret", err)
			}
			if err := s.Verify(id, "new-secret"); err != nil {
				t.Errorf("after the edit was noticed, Verify(new) = %v; want nil", err)
			}
			// And the new secret is cached again: the fix must not leave the cache dead.
			if err := s.Verify(id, "new-secret"); err != nil || !cached(s, id) {
				t.Errorf("Verify(new) again = %v, cached %v; want nil, true", err, cached(s, id))
			}
		})
	}
}

// slowHash is a $5$ hash of secret with the given rounds.
func slowHash(t *testing.T, secret string, rounds int) string {
	t.Helper()
	h, err := shacrypt.New(shacrypt.WithVariant(shacrypt.VariantSHA256), shacrypt.WithIterations(rounds))
	if err != nil {
		t.Fatal(err)
	}
	d, err := h.Hash(secret)
	if err != nil {
		t.Fatal(err)
	}
	return d.Encode()
}

// writeShadow replaces token.shadow as an editor does: a new file renamed over it, no bump.
func writeShadow(t *testing.T, s *Store, id, hash string) {
	t.Helper()
	tmp := s.Path() + ".swp"
	if err := os.WriteFile(tmp, []byte(`{"`+id+`": "`+hash+`"}`), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, s.Path()); err != nil {
		t.Fatal(err)
	}
}

// startSlowVerify drops the cache, starts Verify(id, secret) and returns once its slow path has
// read the file (the parsed table is in place), with a channel for its result.
func startSlowVerify(t *testing.T, s *Store, id, secret string) <-chan error {
	t.Helper()
	s.Forget()
	done := make(chan error, 1)
	go func() { done <- s.Verify(id, secret) }()
	for deadline := time.Now().Add(10 * time.Second); s.table.Load() == nil; runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatal("the slow path did not read the file within 10s")
		}
	}
	return done
}
