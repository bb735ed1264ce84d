package cfgstore

import (
	"os"
	"path/filepath"
	"testing"

	"gatehouse/shmem"
)

// TestEditDuringReload: a reload that read the file before a manual edit (no generation bump)
// must not leave the old parse cached once CheckFile has run. It did, until the next CheckFile:
// CheckFile found nothing cached to drop while the reload was parsing, and the reload then
// cached the old content (a user disabled by hand was still active for up to one poll).
// Parse of the old content makes the edit and runs CheckFile, so the order is forced.
func TestEditDuringReload(t *testing.T) {
	dir := t.TempDir()
	gen, err := shmem.New()
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	path := filepath.Join(dir, "x.cfg")
	write := func(content string) { // as an editor saves: a new file renamed over the old one
		if err := os.WriteFile(path+".swp", []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".swp", path); err != nil {
			t.Fatal(err)
		}
	}
	write("old")
	var s *Store[string]
	f := Format[string]{Name: "test config", MaxSize: 1 << 10,
		// The edit and the watcher's check happen while the first reload parses "old".
		Parse: func(b []byte) (string, error) {
			if string(b) == "old" {
				write("new")
				if err := s.CheckFile(); err != nil {
					t.Error(err)
				}
			}
			return string(b), nil
		},
		Encode: func(s string) ([]byte, error) { return []byte(s), nil },
	}
	s, err = Open(Options{Path: path, LockPath: path + ".lck", Generations: gen, Counter: shmem.User}, f)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Config(); err != nil || got != "old" { // it began before the edit
		t.Fatalf("Config that began before the edit = %q, %v; want \"old\"", got, err)
	}
	if got, err := s.Config(); err != nil || got != "new" {
		t.Errorf("Config after the edit and CheckFile = %q, %v; want \"new\"", got, err)
	}
	if got, err := s.Config(); err != nil || got != "new" || s.snap.Load() == nil {
		t.Errorf("Config again = %q, %v, cached %v; want \"new\", cached", got, err, s.snap.Load() != nil)
	}
}
