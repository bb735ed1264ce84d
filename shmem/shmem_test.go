package shmem

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// allCounters returns every defined counter, in file order.
func allCounters() []Counter { return []Counter{User, TokenShadow, TFA, Keys} }

// cachePath returns a fresh, not yet existing path in a temp dir.
func cachePath(t testing.TB) string {
	return filepath.Join(t.TempDir(), "config-versions")
}

// tmpfsDir returns a temp dir on /dev/shm if possible, else t.TempDir().
func tmpfsDir(t testing.TB) string {
	dir, err := os.MkdirTemp("/dev/shm", "shmem-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func mustCreate(t testing.TB, path string) *Cache {
	t.Helper()
	c, err := Create(path, -1)
	if err != nil {
		t.Fatalf("Create(%q, -1) error = %v; want nil", path, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func mustOpen(t testing.TB, path string) *Cache {
	t.Helper()
	c, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%q) error = %v; want nil", path, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// withHeader returns a valid image of n bytes (n >= 64) whose version and
// counter count are replaced by the given values.
func withHeader(n int, version, count uint32) []byte {
	b := make([]byte, n)
	copy(b, Magic)
	binary.LittleEndian.PutUint32(b[versionOffset:], version)
	binary.LittleEndian.PutUint32(b[countOffset:], count)
	return b
}

func TestCounterString(t *testing.T) {
	tests := []struct {
		in   Counter
		want string
	}{
		{User, "user"},
		{TokenShadow, "token_shadow"},
		{TFA, "tfa"},
		{Keys, "keys"},
		{Counter(4), "Counter(4)"},
		{Counter(-1), "Counter(-1)"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("Counter(%d).String() = %q; want %q", int(tt.in), got, tt.want)
		}
	}
}

func TestCreateThenOpen(t *testing.T) {
	path := cachePath(t)
	a := mustCreate(t, path)
	b := mustOpen(t, path)
	if a.Path() != path {
		t.Errorf("Path() = %q; want %q", a.Path(), path)
	}
	for _, k := range allCounters() {
		if got := b.Load(k); got != 0 {
			t.Errorf("fresh Load(%v) = %d; want 0", k, got)
		}
	}
	for i, k := range allCounters() {
		for n := 0; n <= i; n++ {
			a.Bump(k)
		}
	}
	for i, k := range allCounters() {
		want := uint64(i + 1)
		if got := b.Load(k); got != want {
			t.Errorf("other mapping Load(%v) = %d; want %d", k, got, want)
		}
	}
	if got, want := b.Bump(TFA), uint64(4); got != want {
		t.Errorf("Bump(tfa) = %d; want %d", got, want)
	}
	if got, want := a.Load(TFA), uint64(4); got != want {
		t.Errorf("first mapping Load(tfa) = %d; want %d", got, want)
	}
	if err := a.Check(); err != nil {
		t.Errorf("Check() = %v; want nil", err)
	}
}

func TestCreateExisting(t *testing.T) {
	path := cachePath(t)
	a := mustCreate(t, path)
	a.Bump(Keys)
	b := mustCreate(t, path)
	if got := b.Load(Keys); got != 1 {
		t.Errorf("second Create: Load(keys) = %d; want 1 (file must not be replaced)", got)
	}
	if err := a.Check(); err != nil {
		t.Errorf("first cache Check() after second Create = %v; want nil", err)
	}
}

func TestCreateKeepsBadFile(t *testing.T) {
	path := cachePath(t)
	bad := []byte("not a cache")
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Create(path, -1)
	if !errors.Is(err, ErrBadSize) {
		c.Close()
		t.Fatalf("Create(%q) on a bad file error = %v; want %v", path, err, ErrBadSize)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bad) {
		t.Errorf("after failed Create file = %q; want %q (untouched)", got, bad)
	}
}

func TestCreateModeAndGroup(t *testing.T) {
	old := syscall.Umask(0o077) // mode must not depend on the umask
	t.Cleanup(func() { syscall.Umask(old) })
	tests := []struct {
		name string
		gid  int
	}{
		{"no gid", -1},
		{"own gid", os.Getgid()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "config-versions")
			c, err := Create(path, tt.gid)
			if err != nil {
				t.Fatalf("Create(%q, %d) error = %v; want nil", path, tt.gid, err)
			}
			defer c.Close()
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := fi.Mode(), fs.FileMode(0o660); got != want {
				t.Errorf("Create(%q, %d) mode = %v; want %v", path, tt.gid, got, want)
			}
			if got, want := fi.Size(), int64(Size); got != want {
				t.Errorf("Create(%q, %d) size = %d; want %d", path, tt.gid, got, want)
			}
			wantGid := uint32(os.Getegid()) // default for a new file here
			if tt.gid >= 0 {
				wantGid = uint32(tt.gid)
			}
			if got := fi.Sys().(*syscall.Stat_t).Gid; got != wantGid {
				t.Errorf("Create(%q, %d) gid = %d; want %d", path, tt.gid, got, wantGid)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				t.Errorf("Create(%q, %d) left %d entries in the dir; want 1 (no temp files)", path, tt.gid, len(entries))
			}
		})
	}
}

// TestFileLayout checks the documented offsets against the bytes on disk,
// which also shows the mapping is shared with the file.
func TestFileLayout(t *testing.T) {
	path := cachePath(t)
	c := mustCreate(t, path)
	for i, k := range allCounters() {
		for n := 0; n < 10*(i+1); n++ {
			c.Bump(k)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := withHeader(Size, 1, 4)
	for i, off := range []int{64, 128, 192, 256} {
		binary.NativeEndian.PutUint64(want[off:], uint64(10*(i+1)))
	}
	if !bytes.Equal(b, want) {
		for i := range b {
			if b[i] != want[i] {
				t.Fatalf("file byte %d = %#x; want %#x", i, b[i], want[i])
			}
		}
	}
	if got := string(b[:8]); got != "GATECVC\n" {
		t.Errorf("magic = %q; want %q", got, "GATECVC\n")
	}
}

func TestOpenBad(t *testing.T) {
	good := func(t *testing.T, path string) {
		c, err := Create(path, -1)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	write := func(b []byte) func(*testing.T, string) {
		return func(t *testing.T, path string) {
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string)
		wantErr error
		wantMsg string
	}{
		{"missing", func(*testing.T, string) {}, fs.ErrNotExist, "no such file"},
		{"empty", write(nil), ErrBadSize, "is 0 bytes, want 4096"},
		{"100 bytes", write(withHeader(100, 1, 4)), ErrBadSize, "is 100 bytes, want 4096"},
		{"8192 bytes", write(withHeader(8192, 1, 4)), ErrBadSize, "is 8192 bytes, want 4096"},
		{"zeros", write(make([]byte, Size)), ErrBadMagic, `magic "\x00\x00\x00\x00\x00\x00\x00\x00", want "GATECVC\n"`},
		{"other magic", write(append([]byte("GATECVC\r"), make([]byte, Size-8)...)), ErrBadMagic, `magic "GATECVC\r"`},
		{"version 7", write(withHeader(Size, 7, 4)), ErrBadVersion, "layout version 7, want 1"},
		{"version 0", write(withHeader(Size, 0, 4)), ErrBadVersion, "layout version 0, want 1"},
		{"5 counters", write(withHeader(Size, 1, 5)), ErrBadVersion, "with 5 counters, want 4"},
		{"directory", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, ErrNotRegular, "is a directory"},
		{"symlink to good file", func(t *testing.T, path string) {
			target := path + ".real"
			good(t, target)
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		}, ErrNotRegular, "is a symlink (not followed)"},
		{"fifo", func(t *testing.T, path string) {
			if err := unix.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
		}, ErrNotRegular, "is a named pipe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := cachePath(t)
			tt.setup(t, path)
			c, err := Open(path)
			if err == nil {
				c.Close()
				t.Fatalf("Open(%q) error = nil; want %v", path, tt.wantErr)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Open(%q) error = %v; want errors.Is %v", path, err, tt.wantErr)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "opening config version cache "+path+": ") {
				t.Errorf("Open(%q) error = %q; want prefix naming the path", path, msg)
			}
			if !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("Open(%q) error = %q; want it to contain %q", path, msg, tt.wantMsg)
			}
			// Create on an existing bad path reports the same problem and
			// leaves it alone.
			if tt.wantErr != fs.ErrNotExist {
				if c, cerr := Create(path, -1); !errors.Is(cerr, tt.wantErr) {
					if cerr == nil {
						c.Close()
					}
					t.Errorf("Create(%q) error = %v; want errors.Is %v", path, cerr, tt.wantErr)
				}
			}
		})
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(t *testing.T, path string)
		wantErr error // nil: Check must succeed
		wantMsg string
	}{
		{"intact", func(*testing.T, string) {}, nil, ""},
		{"truncated", func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}, ErrBadSize, "is 0 bytes, want 4096"},
		{"grown", func(t *testing.T, path string) {
			if err := os.Truncate(path, 2*Size); err != nil {
				t.Fatal(err)
			}
		}, ErrBadSize, "is 8192 bytes, want 4096"},
		{"truncated and regrown", func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, Size); err != nil {
				t.Fatal(err)
			}
		}, ErrBadMagic, "magic"},
		{"header overwritten", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte{7}, versionOffset); err != nil {
				t.Fatal(err)
			}
		}, ErrBadVersion, "layout version 7, want 1"},
		{"removed", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, fs.ErrNotExist, "no such file"},
		{"replaced", func(t *testing.T, path string) {
			other := path + ".new"
			c, err := Create(other, -1)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			if err := os.Rename(other, path); err != nil {
				t.Fatal(err)
			}
		}, ErrReplaced, "now names inode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := cachePath(t)
			c := mustCreate(t, path)
			c.Bump(User)
			tt.mutate(t, path)
			// Never Load here: the file may be truncated under the mapping.
			err := c.Check()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Check() = %v; want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Check() = %v; want errors.Is %v", err, tt.wantErr)
			}
			msg := err.Error()
			if !strings.Contains(msg, path) || !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("Check() = %q; want it to name %q and contain %q", msg, path, tt.wantMsg)
			}
		})
	}
}

// TestCheckFaultingHeader shows that Check turns a fault while reading the
// mapped header (SIGBUS on a truncated file) into an error: the stat is
// bypassed by calling readMapped directly on a truncated mapping.
func TestCheckFaultingHeader(t *testing.T) {
	path := cachePath(t)
	c := mustCreate(t, path)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	_, err := readMapped(c.current())
	if !errors.Is(err, ErrBadSize) {
		t.Fatalf("readMapped(truncated mapping) = %v; want errors.Is %v", err, ErrBadSize)
	}
}

// mustPanic calls f and returns the panic value, failing if f returns.
func mustPanic(t *testing.T, name string, f func()) (v any) {
	t.Helper()
	defer func() { v = recover() }()
	f()
	t.Fatalf("%s did not panic", name)
	return nil
}

func TestClose(t *testing.T) {
	path := cachePath(t)
	c, err := Create(path, -1)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close() = %v; want nil", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close() = %v; want nil", err)
	}
	if err := c.Check(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Check() after Close = %v; want error mentioning closed", err)
	}
	for _, k := range allCounters() {
		v := mustPanic(t, "Load after Close", func() { c.Load(k) })
		if re, ok := v.(error); !ok || !strings.Contains(re.Error(), "nil pointer") {
			t.Errorf("Load(%v) after Close panicked with %v; want nil pointer dereference", k, v)
		}
		mustPanic(t, "Bump after Close", func() { c.Bump(k) })
	}
}

// guardedMem returns Size bytes of memory that end exactly at a PROT_NONE
// page and start right after one (when the page size is 4096), in the
// style of crypto/subtle's dangerousSlice: any access outside the 4096
// bytes faults.
func guardedMem(t *testing.T) []byte {
	t.Helper()
	ps := os.Getpagesize()
	b, err := unix.Mmap(-1, 0, 3*ps, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	if err := unix.Mprotect(b[:ps], unix.PROT_NONE); err != nil {
		t.Fatalf("mprotect: %v", err)
	}
	if err := unix.Mprotect(b[2*ps:], unix.PROT_NONE); err != nil {
		t.Fatalf("mprotect: %v", err)
	}
	return b[2*ps-Size : 2*ps]
}

func TestGuardPages(t *testing.T) {
	mem := guardedMem(t)
	copy(mem, image())
	c, err := newCache("guarded", mem, nil)
	if err != nil {
		t.Fatalf("newCache(guarded) error = %v; want nil", err)
	}
	defer c.Close()
	want := image()
	for i, k := range allCounters() {
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
			wantMsg := "shmem: invalid " + k.String()
			if s, ok := v.(string); !ok || s != wantMsg {
				t.Errorf("%s(%d) panicked with %v; want %q", op.name, int(k), v, wantMsg)
			}
		}
	}
	if !bytes.Equal(mem, want) {
		t.Errorf("memory changed by invalid counters")
	}
}

func TestNewCacheRejects(t *testing.T) {
	tests := []struct {
		name    string
		mem     []byte
		wantMsg string
	}{
		{"short", make([]byte, 100), "is 100 bytes"},
		{"unaligned", func() []byte {
			b := make([]byte, Size+8)
			copy(b[1:], image())
			return b[1 : Size+1]
		}(), "not 8-byte aligned"},
		{"zeros", make([]byte, Size), "magic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := newCache(tt.name, tt.mem, nil)
			if err == nil {
				c.Close()
				t.Fatalf("newCache(%s) error = nil; want %q", tt.name, tt.wantMsg)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("newCache(%s) error = %v; want it to contain %q", tt.name, err, tt.wantMsg)
			}
		})
	}
}

func FuzzOpen(f *testing.F) {
	valid := image()
	bumped := image()
	for i, k := range allCounters() {
		binary.NativeEndian.PutUint64(bumped[k.offset():], uint64(1)<<(8*i)+7)
	}
	junk := image()
	for i := 16; i < Size; i++ {
		junk[i] = byte(i) // reserved bytes are ignored
	}
	f.Add(valid)
	f.Add(bumped)
	f.Add(junk)
	f.Add([]byte{})
	f.Add(valid[:100])
	f.Add(valid[:Size-1])
	f.Add(append(valid[:Size:Size], 0))
	f.Add(make([]byte, Size))
	f.Add(withHeader(Size, 7, 4))
	f.Add(withHeader(Size, 1, 5))
	f.Add(withHeader(Size, 1<<24, 4))
	f.Add(append([]byte("GATECVC\x00"), valid[8:]...))
	// One file per worker process, rewritten for each input, on tmpfs
	// when there is one (as /run is in production): rewriting a file on
	// ext4 costs ~1ms, which makes minimizing 4096-byte inputs crawl.
	path := filepath.Join(tmpfsDir(f), "config-versions")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		wantOK := len(data) == Size &&
			string(data[:8]) == Magic &&
			binary.LittleEndian.Uint32(data[8:]) == 1 &&
			binary.LittleEndian.Uint32(data[12:]) == 4
		c, err := Open(path)
		if wantOK {
			if err != nil {
				t.Fatalf("Open(valid image) error = %v; want nil", err)
			}
			defer c.Close()
			for _, k := range allCounters() {
				want := binary.NativeEndian.Uint64(data[k.offset():])
				if got := c.Load(k); got != want {
					t.Errorf("Load(%v) = %d; want %d", k, got, want)
				}
			}
			if err := c.Check(); err != nil {
				t.Errorf("Check() = %v; want nil", err)
			}
			return
		}
		if err == nil {
			c.Close()
			t.Fatalf("Open(%d invalid bytes) error = nil; want an error", len(data))
		}
		if !errors.Is(err, ErrBadSize) && !errors.Is(err, ErrBadMagic) && !errors.Is(err, ErrBadVersion) {
			t.Errorf("Open(%d invalid bytes) error = %v; want a sentinel", len(data), err)
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("Open(%d invalid bytes) error = %v; want it to name %s", len(data), err, path)
		}
	})
}

func BenchmarkLoad(b *testing.B) {
	c := mustCreate(b, cachePath(b))
	c.Bump(TokenShadow)
	var sum uint64
	for b.Loop() {
		sum += c.Load(TokenShadow)
	}
	if sum == 0 {
		b.Fatal("Load returned 0")
	}
}

func BenchmarkLoadParallel(b *testing.B) {
	c := mustCreate(b, cachePath(b))
	c.Bump(TokenShadow)
	var total atomic.Uint64
	b.RunParallel(func(pb *testing.PB) {
		var sum uint64
		for pb.Next() {
			sum += c.Load(TokenShadow)
		}
		total.Add(sum)
	})
	if total.Load() == 0 {
		b.Fatal("Load returned 0")
	}
}

func BenchmarkBump(b *testing.B) {
	c := mustCreate(b, cachePath(b))
	for b.Loop() {
		c.Bump(TokenShadow)
	}
}

// BenchmarkLoadWhileBumping measures a Load of one counter while another
// goroutine keeps bumping a different one: separate cache lines mean no
// false sharing.
func BenchmarkLoadWhileBumping(b *testing.B) {
	c := mustCreate(b, cachePath(b))
	c.Bump(TokenShadow)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				for range 1000 {
					c.Bump(Keys)
				}
			}
		}
	}()
	var sum uint64
	for b.Loop() {
		sum += c.Load(TokenShadow)
	}
	close(stop)
	<-done
	if sum == 0 {
		b.Fatal("Load returned 0")
	}
}

// TestCreateFileLosesRace runs the creation step as the loser of a race:
// the name already exists when the temp file is linked, so the existing
// file must stay and the temp file must go.
func TestCreateFileLosesRace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config-versions")
	c := mustCreate(t, path)
	c.Bump(TFA)
	if err := createFile(path, -1); err != nil {
		t.Fatalf("createFile(%q) over an existing file = %v; want nil", path, err)
	}
	if err := c.Check(); err != nil {
		t.Errorf("Check() after losing createFile = %v; want nil (file not replaced)", err)
	}
	if got := c.Load(TFA); got != 1 {
		t.Errorf("Load(tfa) = %d; want 1", got)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("dir has %d entries after losing createFile; want 1 (temp removed)", len(entries))
	}
}
