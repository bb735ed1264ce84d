package shmem

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// events collects what health checks report.
type events []Event

func (e *events) opts(repair bool) WatchOptions {
	return WatchOptions{Repair: repair, GID: -1, Report: func(ev Event) { *e = append(*e, ev) }}
}

// take returns the events so far and forgets them.
func (e *events) take() []Event {
	out := *e
	*e = nil
	return out
}

// values returns Load of every counter.
func loadAll(c *Cache) (v [numCounters]uint64) {
	for k := range v {
		v[k] = c.Load(Counter(k))
	}
	return v
}

// above fails unless every value of got is above the matching one of old, by the jump a switch
// makes (old values are at most a few bumps past the last check, which is at least 0).
func above(t *testing.T, what string, got, old [numCounters]uint64) {
	t.Helper()
	for k := range got {
		if got[k] <= old[k] || got[k] < jump {
			t.Errorf("%s: %v = %d; want > %d and >= 2^32", what, Counter(k), got[k], old[k])
		}
	}
}

// bumpAll bumps counter k k+1 times, so that the counters differ.
func bumpAll(c *Cache) {
	for k := range numCounters {
		for range k + 1 {
			c.Bump(Counter(k))
		}
	}
}

// overwrite writes b at off into the file at path, in place (same inode).
func overwrite(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// TestHealRemoved: the writer makes a new file at once, the reader follows it, neither returns
// a value it returned before, and the two share counters again.
func TestHealRemoved(t *testing.T) {
	path := cachePath(t)
	w, r := mustCreate(t, path), mustOpen(t, path)
	bumpAll(w)
	before := loadAll(r)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	var we, re events
	w.heal(we.opts(true))
	got := we.take()
	if len(got) != 2 || !errors.Is(got[0].Err, fs.ErrNotExist) || got[0].Private ||
		got[1].Err != nil || !got[1].Made || got[1].MovedTo != "" || got[1].Inode != inode(t, path) || got[1].Path != path {
		t.Fatalf("writer's events = %+v; want the removal, then a recovery with a made file", got)
	}
	above(t, "writer after the switch", loadAll(w), before)
	if err := w.Check(); err != nil {
		t.Errorf("writer's Check() after the switch = %v; want nil", err)
	}
	r.heal(re.opts(false))
	if got := re.take(); len(got) != 2 || !errors.Is(got[0].Err, ErrReplaced) || got[1].Err != nil || got[1].Made {
		t.Fatalf("reader's events = %+v; want the replacement, then a recovery", got)
	}
	above(t, "reader after the switch", loadAll(r), before)
	if got, want := loadAll(r), loadAll(w); got != want {
		t.Errorf("reader's values %v, writer's %v; want equal (one file)", got, want)
	}
	v := w.Bump(TokenShadow)
	if got := r.Load(TokenShadow); got != v {
		t.Errorf("reader's Load(token_shadow) = %d after the writer bumped it to %d; want equal", got, v)
	}
	r.heal(re.opts(false))
	w.heal(we.opts(true))
	if len(re) != 0 || len(we) != 0 {
		t.Errorf("healthy checks reported %+v, %+v; want nothing", re, we)
	}
}

// TestHealRestartedWriter is the split brain: the file is removed and a new writer (apid
// restarted) makes a new one, whose counters start at 0 and reach the reader's old values. The
// reader must not take them for its old ones: it lifts the new file's counters above them.
func TestHealRestartedWriter(t *testing.T) {
	path := cachePath(t)
	r := mustCreate(t, path)
	bumpAll(r)
	before := loadAll(r)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	w, movedTo, err := Recreate(path, -1)
	if err != nil || movedTo != "" {
		t.Fatalf("Recreate(%s) = %q, %v; want a new file", path, movedTo, err)
	}
	t.Cleanup(func() { w.Close() })
	for k := range numCounters {
		for w.Load(Counter(k)) < before[k] {
			w.Bump(Counter(k))
		}
	}
	if loadAll(w) != before {
		t.Fatalf("restarted writer's values %v; want %v (the test needs equal values)", loadAll(w), before)
	}
	var re events
	r.heal(re.opts(false))
	above(t, "reader after following the restarted writer", loadAll(r), before)
	if got, want := loadAll(w), loadAll(r); got != want {
		t.Errorf("writer sees %v, reader %v; want the lifted values in both", got, want)
	}
}

// TestHealCorruptHeader: the header is overwritten in place. The writer moves the file aside
// (its bytes kept) and makes a new one; the reader runs on its private page meanwhile, whose
// values move on every check, and reports the incident once.
func TestHealCorruptHeader(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config-versions")
	w, r := mustCreate(t, path), mustOpen(t, path)
	bumpAll(w)
	before := loadAll(r)
	old := inode(t, path)
	garbage := []byte("this is no header")
	overwrite(t, path, 0, garbage)

	var re events
	last := before
	for i := range 3 {
		r.heal(re.opts(false))
		now := loadAll(r)
		for k := range now {
			if now[k] <= last[k] {
				t.Errorf("reader's check %d: %v = %d, was %d; want it moved up", i, Counter(k), now[k], last[k])
			}
		}
		last = now
		if err := r.Check(); !errors.Is(err, ErrUnmapped) || !errors.Is(err, ErrBadMagic) {
			t.Errorf("reader's Check() on its private page = %v; want ErrUnmapped and ErrBadMagic", err)
		}
	}
	if got := re.take(); len(got) != 1 || !errors.Is(got[0].Err, ErrBadMagic) || !got[0].Private ||
		!strings.Contains(got[0].Err.Error(), `magic "this is "`) {
		t.Fatalf("reader's events after 3 checks = %+v; want one, the bad magic, on the private page", got)
	}

	var we events
	w.heal(we.opts(true))
	got := we.take()
	if len(got) != 2 || !errors.Is(got[0].Err, ErrBadMagic) || got[1].Err != nil || !got[1].Made ||
		!strings.HasPrefix(got[1].MovedTo, path+".corrupt-") {
		t.Fatalf("writer's events = %+v; want the bad magic, then a recovery that moved the file aside", got)
	}
	if inode(t, got[1].MovedTo) != old || inode(t, path) == old {
		t.Errorf("moved-aside file is inode %d, path inode %d; want the old inode %d moved and a new one", inode(t, got[1].MovedTo), inode(t, path), old)
	}
	b, err := os.ReadFile(got[1].MovedTo)
	if err != nil || !bytes.HasPrefix(b, garbage) {
		t.Errorf("moved-aside file starts %q (%v); want the garbage kept", b[:min(len(b), 20)], err)
	}
	above(t, "writer after the switch", loadAll(w), before)

	last = loadAll(r)
	r.heal(re.opts(false))
	if got := re.take(); len(got) != 1 || got[0].Err != nil || got[0].Inode != inode(t, path) {
		t.Fatalf("reader's events once the new file is there = %+v; want a recovery", got)
	}
	above(t, "reader after leaving its private page", loadAll(r), last)
	v := w.Bump(User)
	if r.Load(User) != v {
		t.Errorf("reader's Load(user) = %d after the writer bumped it to %d; want equal", r.Load(User), v)
	}
}

// TestHealTruncated: a file truncated to 0 bytes faults (SIGBUS) when touched. The check sees
// the size by lstat and switches away before anything reads the mapping again; without that
// switch, the Load below kills the test binary.
func TestHealTruncated(t *testing.T) {
	path := cachePath(t)
	r := mustCreate(t, path)
	bumpAll(r)
	before := loadAll(r)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	var re events
	r.heal(re.opts(false))
	if got := re.take(); len(got) != 1 || !errors.Is(got[0].Err, ErrBadSize) || !got[0].Private {
		t.Fatalf("events = %+v; want the bad size, on the private page", got)
	}
	above(t, "after the truncation", loadAll(r), before)
	r.Bump(Keys)
	w, movedTo, err := Recreate(path, -1)
	if err != nil || !strings.HasPrefix(movedTo, path+".corrupt-") {
		t.Fatalf("Recreate(truncated) = %q, %v; want the file moved aside", movedTo, err)
	}
	defer w.Close()
	r.heal(re.opts(false))
	if got := re.take(); len(got) != 1 || got[0].Err != nil {
		t.Fatalf("events = %+v; want a recovery", got)
	}
	if err := r.Check(); err != nil {
		t.Errorf("Check() after the recovery = %v; want nil", err)
	}
}

// TestHealCounterBackwards: a counter written back in place (the header intact) could make an
// old value current again; the check refuses it and lifts the counters for every process.
func TestHealCounterBackwards(t *testing.T) {
	path := cachePath(t)
	w, r := mustCreate(t, path), mustOpen(t, path)
	bumpAll(w)
	w.heal(WatchOptions{}) // the writer has seen the values
	before := loadAll(r)
	overwrite(t, path, int64(TFA.offset()), make([]byte, 8))
	var we events
	w.heal(we.opts(true))
	got := we.take()
	if len(got) != 2 || !errors.Is(got[0].Err, ErrBadCounter) || !strings.Contains(got[0].Err.Error(), "counter tfa went from 3 to 0") ||
		got[1].Err != nil || got[1].Made || got[1].MovedTo != "" {
		t.Fatalf("events = %+v; want the counter going back, then a recovery on the same file", got)
	}
	above(t, "reader sharing the file", loadAll(r), before)
	if err := r.Check(); err != nil {
		t.Errorf("reader's Check() = %v; want nil (counters only went up for it)", err)
	}
}

// TestHealRepairFails: when the writer cannot make a new file it says why, once, runs on its
// private page, and recovers once it can.
func TestHealRepairFails(t *testing.T) {
	sub := filepath.Join(t.TempDir(), "shmem")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(sub, "config-versions")
	w := mustCreate(t, path)
	if err := os.Rename(sub, sub+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sub, nil, 0o600); err != nil { // the directory is now a file
		t.Fatal(err)
	}
	var we events
	for range 3 {
		w.heal(we.opts(true))
	}
	got := we.take()
	if len(got) != 2 || !errors.Is(got[0].Err, syscall.ENOTDIR) || !got[0].Private ||
		!strings.Contains(got[1].Err.Error(), "opening config version cache") || !got[1].Private {
		t.Fatalf("events after 3 checks = %+v; want the failed check and the failed repair, once each", got)
	}
	if err := os.Remove(sub); err != nil {
		t.Fatal(err)
	}
	w.heal(we.opts(true))
	if got := we.take(); len(got) != 1 || got[0].Err != nil || !got[0].Made {
		t.Fatalf("events once the directory can be made = %+v; want a recovery with a made file", got)
	}
}

// TestRetiredUntilClose: the file switched away from stays mapped (a reader may be reading
// it) until Close.
func TestRetiredUntilClose(t *testing.T) {
	path := cachePath(t)
	c, err := Create(path, -1)
	if err != nil {
		t.Fatal(err)
	}
	old := c.current()
	c.Bump(User)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	c.heal(WatchOptions{Repair: true, GID: -1})
	if c.current() == old || len(c.retired) != 1 || c.retired[0] != old {
		t.Fatalf("after the switch: current %p, retired %v; want old %p retired", c.current(), c.retired, old)
	}
	if got := old.counters[User].Load(); got != 1 {
		t.Errorf("old mapping reads %d; want 1", got)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if c.retired != nil {
		t.Errorf("retired after Close = %v; want none", c.retired)
	}
	c.heal(WatchOptions{}) // a check after Close does nothing
}

func TestRecreate(t *testing.T) {
	t.Run("missing directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "shmem", "config-versions")
		c, movedTo, err := Recreate(path, -1)
		if err != nil || movedTo != "" {
			t.Fatalf("Recreate = %q, %v; want a new file", movedTo, err)
		}
		c.Close()
	})
	t.Run("directory at the path", func(t *testing.T) {
		path := cachePath(t)
		if err := os.Mkdir(path, 0o755); err != nil {
			t.Fatal(err)
		}
		c, movedTo, err := Recreate(path, -1)
		if err != nil || !strings.HasPrefix(movedTo, path+".corrupt-") {
			t.Fatalf("Recreate = %q, %v; want the directory moved aside", movedTo, err)
		}
		c.Close()
		if fi, err := os.Lstat(movedTo); err != nil || !fi.IsDir() {
			t.Errorf("moved-aside %s: %v, %v; want the directory", movedTo, fi, err)
		}
	})
	t.Run("names never replaced", func(t *testing.T) {
		path := cachePath(t)
		now := time.Unix(1700000000, 0)
		var names []string
		for i := range 3 {
			if err := os.WriteFile(path, []byte{byte(i)}, 0o600); err != nil {
				t.Fatal(err)
			}
			name, err := moveAside(path, now)
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, name)
			if b, err := os.ReadFile(name); err != nil || !bytes.Equal(b, []byte{byte(i)}) {
				t.Errorf("%s holds %v, %v; want [%d]", name, b, err, i)
			}
		}
		want := []string{path + ".corrupt-1700000000", path + ".corrupt-1700000000-2", path + ".corrupt-1700000000-3"}
		if strings.Join(names, " ") != strings.Join(want, " ") {
			t.Errorf("moved to %q; want %q", names, want)
		}
	})
	t.Run("unreadable is not moved", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "loop")
		if err := os.Symlink("loop", path+"x"); err != nil {
			t.Fatal(err)
		}
		// A path through a symlink loop: ELOOP, which says nothing about a file at the path.
		c, movedTo, err := Recreate(filepath.Join(path+"x", "config-versions"), -1)
		if err == nil {
			c.Close()
		}
		if err == nil || movedTo != "" || IsInvalid(err) {
			t.Errorf("Recreate through a symlink loop = %q, %v; want an error and nothing moved", movedTo, err)
		}
	})
}

// TestWatchTicks drives the loop with injected ticks: a removed file is made again and the
// events are logged; the loop ends when ctx is done or the Cache is closed.
func TestWatchTicks(t *testing.T) {
	path := cachePath(t)
	c, err := Create(path, -1)
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	tick := make(chan time.Time)
	got := make(chan Event, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.WatchTicks(context.Background(), tick, WatchOptions{Repair: true, GID: -1, Report: func(e Event) {
			e.Log(log)
			got <- e
		}})
	}()
	tick <- time.Time{}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	tick <- time.Time{}
	if e := <-got; !errors.Is(e.Err, fs.ErrNotExist) {
		t.Errorf("first event %+v; want the removal", e)
	}
	if e := <-got; e.Err != nil || !e.Made {
		t.Errorf("second event %+v; want a made file", e)
	}
	for _, want := range []string{
		`level=ERROR msg="config version cache broken" path=` + path + ` err="checking config version cache ` + path + `: lstat ` + path + `: no such file or directory"`,
		`level=WARN msg="config version cache recovered: caches of the old file dropped" path=` + path + ` inode=`,
		` made=true`,
	} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("log %q; want it to contain %q", logged.String(), want)
		}
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("file after the watch: %v; want it made again", err)
	}
	c.Close()
	tick <- time.Time{} // the loop sees the Cache closed and returns
	<-done

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c2 := mustCreate(t, cachePath(t))
	c2.WatchTicks(ctx, nil, WatchOptions{}) // returns at once: ctx is done
	c2.Watch(ctx, WatchOptions{})
}
