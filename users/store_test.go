package users

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/lockfile"
	"gatehouse/shmem"
)

// newStores makes n Stores on one user.cfg and one generation file in a temp dir, as n
// processes would have.
func newStores(t testing.TB, n int) []*Store {
	t.Helper()
	dir := t.TempDir()
	stores := make([]*Store, n)
	page, err := shmem.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { page.Close() })
	for i := range stores {
		gen, err := page.View() // each "process" maps the page itself
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { gen.Close() })
		s, err := Open(Options{Path: filepath.Join(dir, "user.cfg"), Generations: gen})
		if err != nil {
			t.Fatal(err)
		}
		stores[i] = s
	}
	return stores
}

func newStore(t testing.TB) *Store { return newStores(t, 1)[0] }

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// replaceFile puts content at path the way an editor that saves by rename does.
func replaceFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".edit"
	writeFile(t, tmp, content, 0o640)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestOpenOptions(t *testing.T) {
	if _, err := Open(Options{}); err == nil {
		t.Errorf("Open(no path) = nil error")
	}
	if _, err := Open(Options{Path: "/x/user.cfg"}); err == nil || !strings.Contains(err.Error(), "/x/user.cfg") {
		t.Errorf("Open(no generations) = %v; want an error naming the path", err)
	}
	s := newStore(t)
	if s.LockPath() != filepath.Join(filepath.Dir(s.Path()), ".user.lck") || s.Mode() != 0o640 {
		t.Errorf("defaults: lock %s, mode %04o; want .user.lck beside user.cfg, 0640", s.LockPath(), s.Mode())
	}
}

func TestMissingFileAndBootstrap(t *testing.T) {
	s := newStore(t)
	c, err := s.Config()
	if err != nil {
		t.Fatal(err)
	}
	if us := c.Users(); len(us) != 1 || us[0].ID != Root {
		t.Errorf("Config() of a missing file: users %+v; want root@pam alone", us)
	}
	g := s.Generations().Load(shmem.User)
	if err := s.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	const want = "user: root@pam\n\tcomment Superuser\n\tenable true\n\texpire 0\n"
	if got := readFile(t, s.Path()); got != want {
		t.Errorf("after Bootstrap, user.cfg = %q; want %q", got, want)
	}
	if fi, _ := os.Stat(s.Path()); fi.Mode().Perm() != 0o640 {
		t.Errorf("user.cfg mode = %04o; want 0640", fi.Mode().Perm())
	}
	if got := s.Generations().Load(shmem.User); got != g+1 {
		t.Errorf("Bootstrap: generation %d -> %d; want one bump", g, got)
	}
	c, err = s.Config()
	if err != nil {
		t.Fatal(err)
	}
	if root, _ := c.User(Root); root != (User{ID: Root, Enable: true, Comment: RootComment}) {
		t.Errorf("after Bootstrap, User(root@pam) = %+v", root)
	}

	// A second Bootstrap, or one over any existing file, changes nothing.
	for _, content := range []string{want, "user: alice@pbs\n", "not a section config\n"} {
		writeFile(t, s.Path(), content, 0o640)
		g := s.Generations().Load(shmem.User)
		if err := s.Bootstrap(); err != nil {
			t.Errorf("Bootstrap over %q = %v; want nil", content, err)
		}
		if got := readFile(t, s.Path()); got != content {
			t.Errorf("Bootstrap over %q rewrote it: %q", content, got)
		}
		if s.Generations().Load(shmem.User) != g {
			t.Errorf("Bootstrap over an existing file bumped the generation")
		}
	}
}

// TestUpdateVisibleEverywhere: a change through one Store is seen by another (another
// process) as soon as Update has returned.
func TestUpdateVisibleEverywhere(t *testing.T) {
	st := newStores(t, 2)
	a, b := st[0], st[1]
	if err := a.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	cb, err := b.Config()
	if err != nil {
		t.Fatal(err)
	}
	if err := cb.Active("alice@pbs", time.Unix(1, 0)); !errors.Is(err, ErrNoUser) {
		t.Fatalf("Active(alice) before she exists = %v", err)
	}
	err = a.Update(func(c *Config) error {
		if err := c.SetUser(User{ID: "alice@pbs", Enable: true, Comment: "new"}); err != nil {
			return err
		}
		return c.SetToken(Token{ID: "alice@pbs!ci", Enable: true})
	})
	if err != nil {
		t.Fatal(err)
	}
	cb, err = b.Config()
	if err != nil {
		t.Fatal(err)
	}
	if err := cb.Active("alice@pbs!ci", time.Unix(1, 0)); err != nil {
		t.Errorf("other Store right after Update: Active(alice@pbs!ci) = %v; want nil", err)
	}
	err = b.Update(func(c *Config) error {
		u, _ := c.User("alice@pbs")
		u.Enable = false
		return c.SetUser(u)
	})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := a.Config()
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Active("alice@pbs!ci", time.Unix(1, 0)); !errors.Is(err, ErrDisabled) {
		t.Errorf("first Store after the other's Update: Active = %v; want ErrDisabled", err)
	}
	want := "user: root@pam\n\tcomment Superuser\n\tenable true\n\texpire 0\n\n" +
		"user: alice@pbs\n\tcomment new\n\tenable false\n\n" +
		"token: alice@pbs!ci\n"
	if got := readFile(t, a.Path()); got != want {
		t.Errorf("user.cfg = %q; want %q", got, want)
	}
}

// TestBumpAfterDurable: whoever sees the new generation reads the new file.
func TestBumpAfterDurable(t *testing.T) {
	st := newStores(t, 2)
	w, r := st[0], st[1]
	if err := w.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		g := r.Generations().Load(shmem.User)
		comment := "round " + string(rune('a'+i))
		var seen string
		var wg sync.WaitGroup
		done := make(chan struct{})
		wg.Go(func() {
			// Wait for the bump (or for Update to return, after which it has happened).
		wait:
			for r.Generations().Load(shmem.User) == g {
				select {
				case <-done:
					break wait
				default:
					runtime.Gosched()
				}
			}
			c, err := r.Config()
			if err != nil {
				seen = err.Error()
				return
			}
			u, _ := c.User(Root)
			seen = u.Comment
		})
		err := w.Update(func(c *Config) error {
			if r.Generations().Load(shmem.User) != g {
				t.Errorf("generation moved before the write")
			}
			u, _ := c.User(Root)
			u.Comment = comment
			return c.SetUser(u)
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Generations().Load(shmem.User); got != g+1 {
			t.Errorf("Update: generation %d -> %d; want one bump", g, got)
		}
		close(done)
		wg.Wait()
		if seen != comment {
			t.Fatalf("a reader that saw the bump read comment %q; want %q", seen, comment)
		}
	}
}

func TestUpdateRefusesAndKeeps(t *testing.T) {
	s := newStore(t)
	if err := s.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	before := readFile(t, s.Path())
	g := s.Generations().Load(shmem.User)

	// fn's error: nothing written.
	boom := errors.New("boom")
	err := s.Update(func(c *Config) error {
		if err := c.SetUser(User{ID: "alice@pbs", Enable: true}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("Update(fn fails) = %v; want fn's error", err)
	}
	// Nothing changed: nothing written, no bump.
	if err := s.Update(func(c *Config) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, s.Path()); got != before || s.Generations().Load(shmem.User) != g {
		t.Errorf("failed or empty Updates changed the file or the generation: %q", got)
	}

	// An unparsable file is neither overwritten nor cached as valid.
	for _, bad := range []string{
		"user: root@pam\n\tcomment x\n\tpassword hunter2\n",
		"user: root@pam\n\n\ttoken: orphan\n",
		"group: admins\n",
		"user: root@pam\n\tenable maybe\n",
	} {
		replaceFile(t, s.Path(), bad)
		s.Forget()
		if _, err := s.Config(); !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), s.Path()) || !strings.Contains(err.Error(), "line ") {
			t.Errorf("Config() of %q = %v; want ErrSyntax naming the path and line", bad, err)
		}
		err := s.Update(func(c *Config) error {
			return c.SetUser(User{ID: "alice@pbs", Enable: true})
		})
		if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), "refusing to overwrite") {
			t.Errorf("Update over %q = %v; want a refusal wrapping ErrSyntax", bad, err)
		}
		if got := readFile(t, s.Path()); got != bad {
			t.Errorf("Update over an unparsable file changed it: %q; want %q", got, bad)
		}
		if s.Generations().Load(shmem.User) != g {
			t.Errorf("refused Update bumped the generation")
		}
	}
}

func TestUnsafeFiles(t *testing.T) {
	const good = "user: root@pam\n"
	tests := []struct {
		name string
		mode os.FileMode
		ok   bool
	}{
		{"0640", 0o640, true},
		{"0600", 0o600, true},
		{"0644", 0o644, true},
		{"group writable", 0o660, false},
		{"world writable", 0o646, false},
		{"0666", 0o666, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			writeFile(t, s.Path(), good, tt.mode)
			_, err := s.Config()
			uerr := s.Update(func(c *Config) error { return c.SetUser(User{ID: "a@pbs", Enable: true}) })
			if tt.ok {
				if err != nil || uerr != nil {
					t.Errorf("mode %04o: Config() = %v, Update = %v; want nil", tt.mode, err, uerr)
				}
				return
			}
			if !errors.Is(err, ErrPermissions) || !strings.Contains(err.Error(), "group- or world-writable") {
				t.Errorf("mode %04o: Config() = %v; want ErrPermissions", tt.mode, err)
			}
			if !errors.Is(uerr, ErrPermissions) {
				t.Errorf("mode %04o: Update = %v; want ErrPermissions", tt.mode, uerr)
			}
			if got := readFile(t, s.Path()); got != good {
				t.Errorf("refused Update changed the file: %q", got)
			}
		})
	}
	t.Run("symlink", func(t *testing.T) {
		s := newStore(t)
		target := filepath.Join(filepath.Dir(s.Path()), "elsewhere.cfg")
		writeFile(t, target, good, 0o640)
		if err := os.Symlink(target, s.Path()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Config(); !errors.Is(err, ErrPermissions) || !strings.Contains(err.Error(), "symbolic link") {
			t.Errorf("Config() of a symlink = %v; want ErrPermissions", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		s := newStore(t)
		if err := os.Mkdir(s.Path(), 0o750); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Config(); !errors.Is(err, ErrPermissions) || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("Config() of a directory = %v; want ErrPermissions", err)
		}
	})
}

// TestManualEdit: an edit that bumps nothing is picked up by CheckFile, and the cache is kept
// while the file is unchanged.
func TestManualEdit(t *testing.T) {
	s := newStore(t)
	if err := s.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	c1, err := s.Config()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckFile(); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Config(); c != c1 {
		t.Errorf("CheckFile on an unchanged file dropped the cache")
	}
	replaceFile(t, s.Path(), "user: root@pam\n\tenable false\n")
	if c, _ := s.Config(); c != c1 {
		t.Fatalf("Config() changed without a bump or CheckFile; the fast path should not stat")
	}
	if err := s.CheckFile(); err != nil {
		t.Fatal(err)
	}
	c2, err := s.Config()
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Active(Root, time.Unix(1, 0)); !errors.Is(err, ErrDisabled) {
		t.Errorf("after a manual edit and CheckFile, Active(root) = %v; want ErrDisabled", err)
	}

	// An edit to an invalid file: the error is cached until the next change, then cleared.
	replaceFile(t, s.Path(), "user: root@pam\n\tenable perhaps\n")
	if err := s.CheckFile(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := s.Config(); !errors.Is(err, ErrSyntax) {
			t.Errorf("Config() of an invalid edit = %v; want ErrSyntax", err)
		}
	}
	replaceFile(t, s.Path(), "user: root@pam\n")
	if err := s.CheckFile(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Config(); err != nil {
		t.Errorf("Config() after the file was fixed = %v", err)
	}

	// Removing the file: back to root@pam alone.
	if err := os.Remove(s.Path()); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckFile(); err != nil {
		t.Fatal(err)
	}
	if c, err := s.Config(); err != nil || len(c.Users()) != 1 {
		t.Errorf("Config() after removal = %v; want root@pam alone", err)
	}
}

func TestWatch(t *testing.T) {
	s := newStore(t)
	if err := s.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	c1, err := s.Config()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tick := make(chan time.Time)
	var reported []error
	done := make(chan struct{})
	go func() {
		lockfile.PollTicks(ctx, tick, s.CheckFile, func(err error) { reported = append(reported, err) })
		close(done)
	}()
	replaceFile(t, s.Path(), "user: root@pam\n\tcomment edited\n")
	// The second send on the unbuffered channel completes only after the first CheckFile.
	tick <- time.Time{}
	tick <- time.Time{}
	c2, err := s.Config()
	if err != nil {
		t.Fatal(err)
	}
	if c2 == c1 {
		t.Errorf("Watch did not drop the cache after an edit")
	}
	if u, _ := c2.User(Root); u.Comment != "edited" {
		t.Errorf("after Watch, root comment = %q; want %q", u.Comment, "edited")
	}
	cancel()
	<-done
	if len(reported) != 0 {
		t.Errorf("Watch reported %v", reported)
	}
}

func TestConfigFastPathAllocs(t *testing.T) {
	s := newStore(t)
	if err := s.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	err := s.Update(func(c *Config) error {
		if err := c.SetUser(User{ID: "alice@pbs", Enable: true}); err != nil {
			return err
		}
		return c.SetToken(Token{ID: "alice@pbs!ci", Enable: true})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Config(); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1700000000, 0)
	n := testing.AllocsPerRun(1000, func() {
		c, err := s.Config()
		if err != nil {
			panic(err)
		}
		if err := c.Active("alice@pbs!ci", now); err != nil {
			panic(err)
		}
	})
	if n != 0 {
		t.Errorf("Config()+Active() on the fast path allocates %v times; want 0", n)
	}
}

// TestConcurrentConfig: many goroutines reading while another Store writes (run with -race).
func TestConcurrentConfig(t *testing.T) {
	st := newStores(t, 2)
	w, r := st[0], st[1]
	if err := w.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := r.Config()
				if err != nil {
					t.Error(err)
					return
				}
				_ = c.Active(Root, time.Unix(1, 0))
				_ = r.CheckFile()
			}
		})
	}
	for i := range 20 {
		err := w.Update(func(c *Config) error {
			return c.SetUser(User{ID: "u" + string(rune('a'+i)) + "@pbs", Enable: true})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	c, err := r.Config()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(c.Users()); n != 21 {
		t.Errorf("after 20 Updates, reader sees %d users; want 21", n)
	}
}

func BenchmarkConfigActive(b *testing.B) {
	s := newStore(b)
	if err := s.Bootstrap(); err != nil {
		b.Fatal(err)
	}
	now := time.Unix(1700000000, 0)
	b.ReportAllocs()
	for b.Loop() {
		c, err := s.Config()
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Active(Root, now); err != nil {
			b.Fatal(err)
		}
	}
}
