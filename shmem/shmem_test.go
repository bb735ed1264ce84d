package shmem

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// newOwner makes a page owned by the test, closed at cleanup.
func newOwner(t testing.TB) *Cache {
	t.Helper()
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serve makes c serve its page on a socket in a temp dir: writable peers are those rw says.
// It returns the socket's path.
func serve(t testing.TB, c *Cache, rw bool) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "shmem.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Serve(ln, func(net.Conn) bool { return rw }) }()
	t.Cleanup(func() {
		ln.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return path
}

func mustPanic(t *testing.T, what string, f func()) (v any) {
	t.Helper()
	defer func() { v = recover() }()
	f()
	t.Fatalf("%s did not panic", what)
	return nil
}

func TestCounterString(t *testing.T) {
	for k, want := range map[Counter]string{User: "user", TokenShadow: "token_shadow", TFA: "tfa", Keys: "keys", 4: "Counter(4)", -1: "Counter(-1)"} {
		if got := k.String(); got != want {
			t.Errorf("Counter(%d).String() = %q; want %q", int(k), got, want)
		}
	}
	if got := Counters(); len(got) != numCounters || got[0] != User || got[3] != Keys {
		t.Errorf("Counters() = %v", got)
	}
}

// TestNewPage: a new page is a sealed memfd of Size bytes with the documented layout; its
// counters start where asked and only the owner's Bump moves them.
func TestNewPage(t *testing.T) {
	c, err := newPage([numCounters]uint64{7, 8, 9, 10})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f := c.StoreFile()
	if f == nil {
		t.Fatal("StoreFile() = nil for the owner")
	}
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL; seals&want != want {
		t.Errorf("seals %#x; want at least %#x", seals, want)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Size != Size {
		t.Errorf("page size %d (%v); want %d", st.Size, err, Size)
	}
	b := make([]byte, Size)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	want := image([numCounters]uint64{7, 8, 9, 10})
	if !bytes.Equal(b, want) {
		t.Errorf("page image differs from the documented layout")
	}
	if string(b[:8]) != "GATECVC\n" || binary.LittleEndian.Uint32(b[8:]) != 1 || binary.LittleEndian.Uint32(b[12:]) != 4 {
		t.Errorf("header = %q", b[:16])
	}
	for i, k := range Counters() {
		if got := c.Load(k); got != uint64(7+i) {
			t.Errorf("Load(%v) = %d; want %d", k, got, 7+i)
		}
		if got := c.Bump(k); got != uint64(8+i) {
			t.Errorf("Bump(%v) = %d; want %d", k, got, 8+i)
		}
		if got := binary.NativeEndian.Uint64(c.current().mem[k.offset():]); got != uint64(8+i) {
			t.Errorf("counter %v at offset %d = %d; want %d", k, k.offset(), got, 8+i)
		}
	}
}

// TestPageCannotShrink is the guarantee that replaced the SIGBUS: nobody can change the
// page's size, through its descriptor or through /proc, so a mapping of it can never fault.
// (A mapped file truncated in place killed proxyd and apid.)
func TestPageCannotShrink(t *testing.T) {
	c := newOwner(t)
	f := c.StoreFile()
	for _, size := range []int64{0, 100, Size - 1, Size + 1, 2 * Size} {
		if err := unix.Ftruncate(int(f.Fd()), size); !errors.Is(err, unix.EPERM) {
			t.Errorf("ftruncate(page, %d) = %v; want EPERM", size, err)
		}
		if err := os.Truncate("/proc/self/fd/"+strconv.Itoa(int(f.Fd())), size); !errors.Is(err, unix.EPERM) {
			t.Errorf("truncate(/proc/self/fd/N, %d) = %v; want EPERM", size, err)
		}
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_WRITE); !errors.Is(err, unix.EPERM) {
		t.Errorf("adding a seal = %v; want EPERM (F_SEAL_SEAL)", err)
	}
	for _, k := range Counters() {
		c.Bump(k) // the mapping is whole: no fault
	}
}

func TestServeDial(t *testing.T) {
	owner := newOwner(t)
	owner.Bump(Keys)
	for _, rw := range []bool{false, true} {
		t.Run("writable="+strconv.FormatBool(rw), func(t *testing.T) {
			r, err := Dial(serve(t, owner, rw))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			m, om := r.current(), owner.current()
			if m.dev != om.dev || m.ino != om.ino || m.writable != rw || r.StoreFile() != nil {
				t.Errorf("attached page inode %d writable %v; want the owner's %d, writable %v, no store file", m.ino, m.writable, om.ino, rw)
			}
			before := r.Load(Keys)
			owner.Bump(Keys)
			if got := r.Load(Keys); got != before+1 {
				t.Errorf("attached Load(Keys) after the owner's bump = %d; want %d", got, before+1)
			}
			if !rw {
				v := mustPanic(t, "Bump on a read-only page", func() { r.Bump(User) })
				if s, _ := v.(string); !strings.Contains(s, "read-only") {
					t.Errorf("Bump on a read-only page panicked with %v", v)
				}
				return
			}
			r.Bump(User)
			if got := owner.Load(User); got != 1 {
				t.Errorf("owner's Load(User) after a read-write peer's bump = %d; want 1", got)
			}
		})
	}
}

// TestDialRefuses: Dial maps only a sealed memfd of Size bytes with a valid header.
func TestDialRefuses(t *testing.T) {
	unsealed := func() *os.File {
		fd, err := unix.MemfdCreate("x", unix.MFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "unsealed")
		f.Truncate(Size)
		f.WriteAt(image([numCounters]uint64{}), 0)
		return f
	}
	sealed := func(size int64, img []byte) *os.File {
		fd, err := unix.MemfdCreate("x", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "sealed")
		f.Truncate(size)
		f.WriteAt(img, 0)
		if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW); err != nil {
			t.Fatal(err)
		}
		return f
	}
	regular := func() *os.File {
		f, err := os.Create(filepath.Join(t.TempDir(), "file"))
		if err != nil {
			t.Fatal(err)
		}
		f.Write(image([numCounters]uint64{}))
		return f
	}
	badMagic := image([numCounters]uint64{})
	copy(badMagic, "GATECVX\n")
	badVersion := image([numCounters]uint64{})
	binary.LittleEndian.PutUint32(badVersion[8:], 2)
	for _, tt := range []struct {
		name string
		f    func() *os.File
		want error
	}{
		{"regular file", regular, ErrNotSealed},
		{"unsealed memfd", unsealed, ErrNotSealed},
		{"small page", func() *os.File { return sealed(100, image([numCounters]uint64{})[:100]) }, ErrBadSize},
		{"bad magic", func() *os.File { return sealed(Size, badMagic) }, ErrBadMagic},
		{"bad version", func() *os.File { return sealed(Size, badVersion) }, ErrBadVersion},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.f()
			defer f.Close()
			path := filepath.Join(t.TempDir(), "s.sock")
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			sent := make(chan struct{})
			defer func() { <-sent }() // before f is closed
			go func() {
				defer close(sent)
				conn, err := ln.Accept()
				if err == nil {
					send(conn, f)
					conn.Close()
				}
			}()
			c, err := Dial(path)
			if err == nil {
				c.Close()
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("Dial of a %s = %v; want %v", tt.name, err, tt.want)
			}
		})
	}
	// A server that sends no descriptor, or something else.
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err == nil {
			conn.Write([]byte(Magic))
			conn.Close()
		}
	}()
	if _, err := Dial(path); !errors.Is(err, ErrBadMagic) {
		t.Errorf("Dial of an answer without a descriptor = %v; want ErrBadMagic", err)
	}
	if _, err := Dial(filepath.Join(t.TempDir(), "none.sock")); err == nil {
		t.Error("Dial of a missing socket succeeded")
	}
}

// TestOwnerBumpLiftsMoved: a counter another process wrote back (the tamper of issue 18: a
// value written back by one, then a rotation) makes the owner's next bump lift every counter
// above both values, so no cache built at the written-back value is taken for current again.
func TestOwnerBumpLiftsMoved(t *testing.T) {
	owner := newOwner(t)
	for range 10 {
		owner.Bump(TokenShadow)
	}
	peer, err := Dial(serve(t, owner, true))
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	cached := peer.Load(TokenShadow) // 10: a reader's cache was built here...
	peer.current().counters[TokenShadow].Store(cached - 1)
	if got := owner.Bump(TokenShadow); got <= cached || got < jump {
		t.Errorf("owner's Bump after a counter was written back = %d; want above %d and 2^32 (no old value again)", got, cached)
	}
	if got := peer.Load(User); got < jump {
		t.Errorf("Load(User) after the lift = %d; want every counter lifted by 2^32", got)
	}
	if owner.lifts.Load() != 1 {
		t.Errorf("lifts = %d; want 1", owner.lifts.Load())
	}
	// A peer's own bump is no tamper: the owner's check sees it (counters moved), lifts once
	// more, and no value ever repeats.
	last := owner.Load(TokenShadow)
	peer.Bump(User)
	if got := owner.Bump(TokenShadow); got <= last {
		t.Errorf("owner's Bump after a peer's = %d; want above %d", got, last)
	}
	// Concurrent owner bumps move nothing else: no lift.
	lifts := owner.lifts.Load()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				owner.Bump(TFA)
			}
		})
	}
	wg.Wait()
	if owner.lifts.Load() != lifts {
		t.Errorf("concurrent owner bumps lifted %d times; want 0", owner.lifts.Load()-lifts)
	}
}

// TestGuardPages: the counters sit where the layout says, within the page: loads and bumps of
// a page placed right before a PROT_NONE guard page do not fault, and invalid counters panic
// before touching memory.
func TestGuardPages(t *testing.T) {
	ps := os.Getpagesize()
	b, err := unix.Mmap(-1, 0, 3*ps, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	defer unix.Munmap(b)
	for _, g := range [][]byte{b[:ps], b[2*ps:]} {
		if err := unix.Mprotect(g, unix.PROT_NONE); err != nil {
			t.Fatal(err)
		}
	}
	mem := b[2*ps-Size : 2*ps]
	copy(mem, image([numCounters]uint64{}))
	m, err := newMapping(mem)
	if err != nil {
		t.Fatal(err)
	}
	m.writable = true
	c := newCacheFrom(m)
	want := image([numCounters]uint64{})
	for i, k := range Counters() {
		for n := 0; n <= i; n++ {
			c.Bump(k)
		}
		if got := c.Load(k); got != uint64(i+1) {
			t.Errorf("Load(%v) = %d; want %d", k, got, i+1)
		}
		binary.NativeEndian.PutUint64(want[k.offset():], uint64(i+1))
	}
	if !bytes.Equal(mem, want) {
		t.Errorf("memory after bumps differs from the documented layout")
	}
	for _, k := range []Counter{-1, 4, 5, 63, 64, -64, 1 << 40} {
		for _, op := range []struct {
			name string
			f    func(Counter) uint64
		}{{"Load", c.Load}, {"Bump", c.Bump}} {
			v := mustPanic(t, op.name, func() { op.f(k) })
			if s, ok := v.(string); !ok || s != "shmem: invalid "+k.String() {
				t.Errorf("%s(%d) panicked with %v", op.name, int(k), v)
			}
		}
	}
	if !bytes.Equal(mem, want) {
		t.Errorf("memory changed by invalid counters")
	}
}

func TestClose(t *testing.T) {
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	f := c.StoreFile()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v; want nil", err)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0); err == nil {
		t.Error("the page's descriptor is still open after Close")
	}
	mustPanic(t, "Load after Close", func() { c.Load(User) })
}

func BenchmarkLoad(b *testing.B) {
	c := newOwner(b)
	var s uint64
	for b.Loop() {
		s += c.Load(TokenShadow)
	}
	_ = s
}

func BenchmarkLoadParallel(b *testing.B) {
	c := newOwner(b)
	b.RunParallel(func(pb *testing.PB) {
		var s uint64
		for pb.Next() {
			s += c.Load(TokenShadow)
		}
		_ = s
	})
}

func BenchmarkBump(b *testing.B) {
	c := newOwner(b)
	for b.Loop() {
		c.Bump(TokenShadow)
	}
}
