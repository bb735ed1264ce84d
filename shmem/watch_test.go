package shmem

import (
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ticker runs health checks one at a time, as Watch does at each tick, and collects what
// they report.
type ticker struct {
	t      *testing.T
	c      *Cache
	o      WatchOptions
	lifts  uint64
	events []Event
}

func watch(t *testing.T, c *Cache, o WatchOptions) *ticker {
	tk := &ticker{t: t, c: c, o: o}
	tk.o.Report = func(e Event) { tk.events = append(tk.events, e) }
	return tk
}

// tick runs one health check and returns the events it reported.
func (tk *ticker) tick() []Event {
	tk.t.Helper()
	tk.events = nil
	if !tk.c.heal(tk.o, &tk.lifts) {
		tk.t.Fatal("health check on a closed Cache")
	}
	return tk.events
}

// TestWatchTicks: Watch runs one health check per tick and stops with its context or once the
// Cache is closed.
func TestWatchTicks(t *testing.T) {
	c, path := owned(t)
	ticks := make(chan time.Time)
	events := make(chan Event, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.WatchTicks(ctx, ticks, WatchOptions{Report: func(e Event) { events <- e }})
	}()
	os.Remove(path)
	ticks <- time.Time{}
	if e := <-events; !errors.Is(e.Err, fs.ErrNotExist) {
		t.Errorf("first event = %+v; want the removed mirror", e)
	}
	if e := <-events; e.Err != nil {
		t.Errorf("second event = %+v; want the recovery", e)
	}
	cancel()
	<-done
	// A closed Cache ends Watch at its next tick.
	c2, _ := owned(t)
	done = make(chan struct{})
	go func() {
		defer close(done)
		c2.WatchTicks(context.Background(), ticks, WatchOptions{})
	}()
	c2.Close()
	ticks <- time.Time{}
	<-done
}

// owned is an owner keeping its mirror in a temp dir.
func owned(t *testing.T) (*Cache, string) {
	t.Helper()
	c := newOwner(t)
	path := filepath.Join(t.TempDir(), "shmem", "config-versions")
	if moved, err := c.KeepMirror(path, -1); err != nil || moved != "" {
		t.Fatalf("KeepMirror = %q, %v", moved, err)
	}
	return c, path
}

func mirrorValues(t *testing.T, path string) map[Counter]uint64 {
	t.Helper()
	v, err := ReadMirror(path)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMirror(t *testing.T) {
	c, path := owned(t)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != MirrorMode || fi.Size() != Size {
		t.Fatalf("mirror %v (%v); want mode %#o, %d bytes", fi, err, MirrorMode, Size)
	}
	tk := watch(t, c, WatchOptions{})
	c.Bump(Keys)
	c.Bump(Keys)
	if ev := tk.tick(); len(ev) != 0 {
		t.Errorf("a health check with a good mirror reported %v", ev)
	}
	if got := mirrorValues(t, path)[Keys]; got != 2 {
		t.Errorf("mirror's keys after two bumps and a check = %d; want 2", got)
	}
	after, err := NewAfter(path)
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if k, u := after.Load(Keys), after.Load(User); k != 2+jump || u != jump {
		t.Errorf("NewAfter(mirror): keys %d, user %d; want the mirror's values plus 2^32", k, u)
	}
	none, err := NewAfter(filepath.Join(t.TempDir(), "none"))
	if err != nil {
		t.Fatal(err)
	}
	defer none.Close()
	if k := none.Load(Keys); k != 0 {
		t.Errorf("NewAfter(missing): keys %d; want 0", k)
	}
	// A new owner (apid restarted) replaces a valid mirror without moving it aside.
	c2 := newOwner(t)
	if moved, err := c2.KeepMirror(path, -1); err != nil || moved != "" {
		t.Errorf("KeepMirror over a valid mirror = %q, %v; want it replaced, nothing moved", moved, err)
	}
}

// TestMirrorTampered: whatever is done to the mirror file, the page is untouched, the health
// check reports it once and writes the mirror anew, moving an invalid file aside.
func TestMirrorTampered(t *testing.T) {
	for _, tt := range []struct {
		name    string
		tamper  func(t *testing.T, path string)
		want    error
		movedTo bool
	}{
		{"removed", func(t *testing.T, p string) { os.Remove(p) }, fs.ErrNotExist, false},
		{"truncated to 0", func(t *testing.T, p string) { os.Truncate(p, 0) }, ErrBadSize, true},
		{"truncated to 100", func(t *testing.T, p string) { os.Truncate(p, 100) }, ErrBadSize, true},
		{"truncated to 4095", func(t *testing.T, p string) { os.Truncate(p, 4095) }, ErrBadSize, true},
		{"garbage header", func(t *testing.T, p string) { writeAt(t, p, 0, []byte("garbage!")) }, ErrBadMagic, true},
		{"counter written back", func(t *testing.T, p string) {
			var b [8]byte
			binary.NativeEndian.PutUint64(b[:], 4)
			writeAt(t, p, int64(TokenShadow.offset()), b[:])
		}, ErrMirrorWritten, false},
		{"replaced", func(t *testing.T, p string) {
			os.Remove(p)
			os.WriteFile(p, image([numCounters]uint64{}), 0o640)
		}, ErrReplaced, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, path := owned(t)
			tk := watch(t, c, WatchOptions{})
			for range 5 {
				c.Bump(TokenShadow)
			}
			tk.tick()
			tt.tamper(t, path)
			c.Bump(TokenShadow)
			ev := tk.tick()
			if len(ev) != 2 || !errors.Is(ev[0].Err, tt.want) || ev[0].What != "mirror" || ev[1].Err != nil || (ev[1].MovedTo != "") != tt.movedTo {
				t.Fatalf("events after the tamper = %+v; want a failure wrapping %v, then a recovery (moved aside: %v)", ev, tt.want, tt.movedTo)
			}
			if tt.movedTo {
				if _, err := os.Stat(ev[1].MovedTo); err != nil || !strings.HasPrefix(ev[1].MovedTo, path+".corrupt-") {
					t.Errorf("moved to %q: %v", ev[1].MovedTo, err)
				}
			}
			if got := mirrorValues(t, path)[TokenShadow]; got != 6 || c.Load(TokenShadow) != 6 {
				t.Errorf("mirror %d, page %d after the repair; want 6 and 6 (the page never moved back)", got, c.Load(TokenShadow))
			}
			if ev := tk.tick(); len(ev) != 0 {
				t.Errorf("the check after the repair reported %+v", ev)
			}
		})
	}
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
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

func TestReadMirrorRefuses(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "link")
	os.Symlink(filepath.Join(dir, "target"), link)
	small := filepath.Join(dir, "small")
	os.WriteFile(small, []byte("x"), 0o640)
	for _, tt := range []struct {
		path string
		want error
	}{
		{link, ErrNotRegular}, {dir, ErrNotRegular}, {small, ErrBadSize}, {filepath.Join(dir, "none"), fs.ErrNotExist},
	} {
		if _, err := ReadMirror(tt.path); !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.path) {
			t.Errorf("ReadMirror(%s) = %v; want %v naming the path", tt.path, err, tt.want)
		}
	}
}

// FuzzReadMirror: any file content is a valid image (and reads back as written) or an
// invalid one, never a crash.
func FuzzReadMirror(f *testing.F) {
	f.Add(image([numCounters]uint64{1, 2, 3, 4}))
	f.Add([]byte("GATECVC\n"))
	f.Add([]byte{})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, "m")
		if err := os.WriteFile(path, b, 0o640); err != nil {
			t.Fatal(err)
		}
		vals, err := ReadMirror(path)
		if err != nil {
			if !IsInvalid(err) {
				t.Fatalf("ReadMirror(%d bytes) = %v; want an invalid-image error", len(b), err)
			}
			return
		}
		for k, v := range vals {
			if got := binary.NativeEndian.Uint64(b[k.offset():]); got != v {
				t.Fatalf("counter %v = %d; the file holds %d", k, v, got)
			}
		}
	})
}

// TestReportsBumpLift: the owner's health check reports a lift its Bump made once.
func TestReportsBumpLift(t *testing.T) {
	owner := newOwner(t)
	tk := watch(t, owner, WatchOptions{})
	peer, err := Dial(serve(t, owner, true))
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	owner.Bump(User)
	peer.current().counters[User].Store(0)
	owner.Bump(User)
	if ev := tk.tick(); len(ev) != 1 || ev[0].What != "bump" || !errors.Is(ev[0].Err, ErrMoved) {
		t.Errorf("events after a lift = %+v; want one bump incident", ev)
	}
	if ev := tk.tick(); len(ev) != 0 {
		t.Errorf("next check reported %+v; want nothing", ev)
	}
}

// TestFollowNewPage: a process attached to apid's page follows the page a new apid serves on
// the same socket, with values above every one it returned before, and keeps its page while
// apid is unreachable.
func TestFollowNewPage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shmem.sock")
	listen := func(c *Cache) net.Listener {
		t.Helper()
		os.Remove(path)
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		go c.Serve(ln, func(net.Conn) bool { return false })
		return ln
	}
	first := newOwner(t)
	for range 3 {
		first.Bump(Keys)
	}
	ln := listen(first)
	r, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tk := watch(t, r, WatchOptions{Socket: path})
	if ev := tk.tick(); len(ev) != 0 {
		t.Errorf("check of the same page reported %+v", ev)
	}
	seen := map[Counter]uint64{}
	for _, k := range Counters() {
		seen[k] = r.Load(k)
	}
	ln.Close()
	ev := tk.tick()
	if len(ev) != 1 || ev[0].Err == nil || ev[0].Private {
		t.Errorf("check with apid unreachable = %+v; want one failure, the page kept", ev)
	}
	first.Bump(Keys) // still the page attached
	if got := r.Load(Keys); got != seen[Keys]+1 {
		t.Errorf("Load(Keys) with apid down = %d; want %d from the page kept", got, seen[Keys]+1)
	}
	seen[Keys]++
	second := newOwner(t) // a new apid, a new page, counters from zero
	ln = listen(second)
	defer ln.Close()
	ev = tk.tick()
	if len(ev) != 1 || ev[0].Err != nil || ev[0].Inode != second.current().ino || !ev[0].NewPage {
		t.Fatalf("check with a new page = %+v; want a recovery naming it", ev)
	}
	for _, k := range Counters() {
		if got := r.Load(k); got < seen[k]+jump {
			t.Errorf("Load(%v) after following = %d; want at least %d (above every value before)", k, got, seen[k]+jump)
		}
	}
	before := r.Load(Keys)
	second.Bump(Keys)
	if got := r.Load(Keys); got != before+1 {
		t.Errorf("Load(Keys) after the new apid's bump = %d; want %d", got, before+1)
	}
}

// TestPrivatePage: a process that never got a page runs on a private one whose counters move
// at every check, until apid's page is there.
func TestPrivatePage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shmem.sock")
	r := Private(errors.New("apid not started"))
	defer r.Close()
	tk := watch(t, r, WatchOptions{Socket: path})
	v0 := r.Load(User)
	if v0 < jump {
		t.Errorf("private page starts at %d; want 2^32 or more", v0)
	}
	ev := tk.tick()
	if len(ev) != 1 || !ev[0].Private {
		t.Errorf("first check without apid = %+v; want one private-page incident", ev)
	}
	if got := r.Load(User); got != v0+1 {
		t.Errorf("Load after a check on the private page = %d; want %d", got, v0+1)
	}
	if ev := tk.tick(); len(ev) != 0 || r.Load(User) != v0+2 {
		t.Errorf("second check = %+v, Load %d; want no report, %d", ev, r.Load(User), v0+2)
	}
	owner := newOwner(t)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go owner.Serve(ln, func(net.Conn) bool { return false })
	if ev := tk.tick(); len(ev) != 1 || ev[0].Err != nil {
		t.Errorf("check once apid serves = %+v; want a recovery", ev)
	}
	if got := r.Load(User); got <= v0+2 {
		t.Errorf("Load after attaching = %d; want above %d", got, v0+2)
	}
	owner.Bump(User)
	if got, want := r.Load(User), owner.Load(User)+r.current().lift[User]; got != want {
		t.Errorf("Load after the owner's bump = %d; want %d", got, want)
	}
}
