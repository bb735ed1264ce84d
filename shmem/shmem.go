// Package shmem implements the ConfigVersionCache: one small file, mapped
// MAP_SHARED by every gatehouse process, that holds a u64 generation counter
// per configuration domain. A process that changed configuration bumps the
// matching counter; every other process notices by loading it. This is the
// only package in gatehouse that touches unsafe or raw memory.
//
// # File format (layout version 1)
//
// The file is exactly [Size] = 4096 bytes. Default path:
// /run/gatehouse/shmem/config-versions.
//
//	offset  size  field
//	     0     8  magic: "GATECVC\n" (47 41 54 45 43 56 43 0a)
//	     8     4  layout version, u32 little endian, = 1
//	    12     4  counter count, u32 little endian, = 4
//	    16    48  reserved, zero
//	    64     8  counter 0, user: users, ACL, realms
//	    72    56  reserved, zero
//	   128     8  counter 1, token_shadow: token.shadow
//	   136    56  reserved, zero
//	   192     8  counter 2, tfa: TFA configuration (tfa.json)
//	   200    56  reserved, zero
//	   256     8  counter 3, keys: key files
//	   264  3832  reserved, zero
//
// Counter i is the u64 at offset 64*(1+i), in host byte order (the file lives
// in /run and never leaves the machine). Reserved bytes are written zero when
// the file is created and ignored by readers; a layout that gives them a
// meaning gets a new layout version.
//
// # Invariants
//
//   - The header (first 64 bytes) is written once, before the file becomes
//     visible under its name, and never changes afterwards.
//   - Counters are only ever read or written with sync/atomic operations.
//     The mapping is page aligned, so every counter is 8-byte aligned.
//   - Each counter sits alone on its own 64-byte cache line, so bumping one
//     does not slow down loads of another.
//   - Counters only grow (by exactly 1 per [Cache.Bump]); wrap-around at 2^64
//     is not a practical concern.
//   - A writer bumps a counter only after its change is durable on disk
//     (file replaced, fsynced, directory fsynced). A reader that sees the new
//     value and then reads the file therefore sees the change.
//   - Nobody spins or sleeps waiting on a counter: a check reads it once and
//     compares it with the generation the caller's cached state was built at.
//   - The file is never truncated or replaced while processes have it mapped.
//     Touching a truncated MAP_SHARED mapping raises SIGBUS, which kills a Go
//     program. [Cache.Check] detects truncation, removal and replacement
//     without touching the counters, for use in periodic health checks.
//
// # Creation
//
// [Create] makes the file atomically, so racing creators all end up with the
// same file:
//
//  1. If path already exists, [Open] it (and fail if it is not valid; an
//     invalid file is never overwritten).
//  2. Otherwise create a temp file in the same directory (O_EXCL, random
//     name), write the full 4096-byte image, fsync it, fchown(-1, gid) when a
//     gid is given, fchmod 0660 (so the mode does not depend on the umask).
//  3. Hard-link the temp file to path. link(2) never replaces an existing
//     name: if another process won the race the link fails with EEXIST and
//     its file is used instead. Remove the temp name, fsync the directory.
//  4. [Open] path.
//
// A creator that dies between steps 2 and 3 leaves a ".config-versions.tmp-*"
// file behind; it is harmless and may be removed.
//
// # Opening
//
// [Open] refuses anything that is not a regular file: symlinks are not
// followed (the path is checked with lstat and opened with O_NOFOLLOW),
// directories, FIFOs and devices are rejected with [ErrNotRegular]. It then
// checks size ([ErrBadSize]), magic ([ErrBadMagic]), layout version and
// counter count ([ErrBadVersion]), maps the file read-write and MAP_SHARED,
// and closes the descriptor. Errors read
//
//	opening config version cache /run/gatehouse/shmem/config-versions: is 100 bytes, want 4096: wrong size
//
// and wrap the sentinel, for use with errors.Is.
//
// # Concurrency
//
// [Cache.Load] and [Cache.Bump] are safe for concurrent use by any number of
// goroutines and processes. [Cache.Close] unmaps the file; it must not run
// concurrently with other methods, and Load or Bump after Close panic
// (nil pointer dereference) instead of touching unmapped memory. An invalid
// Counter panics too, before any memory is touched.
package shmem

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Size is the exact size of the cache file in bytes.
const Size = 4096

// Version is the layout version this package reads and writes.
const Version = 1

// Magic is the 8-byte value at offset 0 of the file.
const Magic = "GATECVC\n"

const (
	lineSize      = 64 // one counter per cache line
	numCounters   = 4
	versionOffset = 8
	countOffset   = 12
)

// Counter names one of the generation counters in the file.
type Counter int

// The counters, in file order.
const (
	User        Counter = iota // users, ACL, realms
	TokenShadow                // token.shadow
	TFA                        // tfa.json
	Keys                       // signing, CSRF and proxy keys
)

// String returns the counter's name as used in the format spec:
// "user", "token_shadow", "tfa", "keys", or "Counter(n)" for invalid values.
func (c Counter) String() string {
	switch c {
	case User:
		return "user"
	case TokenShadow:
		return "token_shadow"
	case TFA:
		return "tfa"
	case Keys:
		return "keys"
	}
	return "Counter(" + strconv.Itoa(int(c)) + ")"
}

// offset returns the byte offset of counter c in the file.
func (c Counter) offset() int { return lineSize * (1 + int(c)) }

// Sentinel errors, wrapped by the errors of [Open], [Create] and [Cache.Check].
var (
	ErrBadSize    = errors.New("wrong size")
	ErrBadMagic   = errors.New("wrong magic")
	ErrBadVersion = errors.New("unsupported layout version")
	ErrNotRegular = errors.New("not a regular file")
	ErrReplaced   = errors.New("file replaced")
)

// Cache is an open ConfigVersionCache: the shared mapping of the file.
type Cache struct {
	// counters point into mem; all nil after Close, so Load and Bump on a
	// closed Cache fault on nil instead of on unmapped memory. They index
	// this array only after checking the Counter, so the index needs no
	// bounds check.
	counters [numCounters]*atomic.Uint64
	mem      []byte
	unmap    func([]byte) error
	path     string
	dev, ino uint64
}

// Create creates the file at path if it does not exist and opens it; see
// the package documentation for the procedure. If gid >= 0 the new file's
// group is set to gid. An existing file is opened as by [Open], never
// replaced, and its owner and mode are left alone.
func Create(path string, gid int) (*Cache, error) {
	c, err := Open(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return c, err
	}
	if err := createFile(path, gid); err != nil {
		return nil, fmt.Errorf("creating config version cache %s: %w", path, err)
	}
	return Open(path)
}

// image returns a freshly initialized file image.
func image() []byte {
	b := make([]byte, Size)
	copy(b, Magic)
	binary.LittleEndian.PutUint32(b[versionOffset:], Version)
	binary.LittleEndian.PutUint32(b[countOffset:], numCounters)
	return b
}

func createFile(path string, gid int) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = cerr
		}
		// Either the link succeeded and path names the file, or it
		// failed; the temp name goes away in both cases.
		if rerr := os.Remove(tmp); rerr != nil && err == nil {
			err = rerr
		}
	}()
	if _, err := f.Write(image()); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if gid >= 0 {
		if err := f.Chown(-1, gid); err != nil {
			return err
		}
	}
	if err := f.Chmod(0o660); err != nil {
		return err
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // another creator won; use its file
		}
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Open maps the existing file at path. It fails with an error wrapping
// [ErrNotRegular], [ErrBadSize], [ErrBadMagic] or [ErrBadVersion] (or the
// error from the file system, such as fs.ErrNotExist) and naming the path
// and what was found.
func Open(path string) (*Cache, error) {
	c, err := open(path)
	if err != nil {
		return nil, fmt.Errorf("opening config version cache %s: %w", path, err)
	}
	return c, nil
}

func open(path string) (*Cache, error) {
	// lstat first for a clear message about symlinks and directories;
	// O_NOFOLLOW and fstat below close the race with a swapped name.
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("is a %s: %w", describeMode(fi.Mode()), ErrNotRegular)
	}
	// O_NONBLOCK: never hang if a FIFO was swapped in after the lstat.
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("is not a regular file (mode %#o): %w", st.Mode, ErrNotRegular)
	}
	if err := checkSize(st.Size); err != nil {
		return nil, err
	}
	mem, err := unix.Mmap(fd, 0, Size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, &fs.PathError{Op: "mmap", Path: path, Err: err}
	}
	c, err := newCache(path, mem, unix.Munmap)
	if err != nil {
		unix.Munmap(mem)
		return nil, err
	}
	c.dev, c.ino = uint64(st.Dev), uint64(st.Ino)
	return c, nil
}

func describeMode(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symlink (not followed)"
	case m.IsDir():
		return "directory"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "non-regular file (" + m.String() + ")"
}

func checkSize(n int64) error {
	if n != Size {
		return fmt.Errorf("is %d bytes, want %d: %w", n, Size, ErrBadSize)
	}
	return nil
}

// checkHeader validates a header: the first lineSize bytes of the file.
func checkHeader(hdr []byte) error {
	if string(hdr[:len(Magic)]) != Magic {
		return fmt.Errorf("magic %q, want %q: %w", hdr[:len(Magic)], Magic, ErrBadMagic)
	}
	if v := binary.LittleEndian.Uint32(hdr[versionOffset:]); v != Version {
		return fmt.Errorf("layout version %d, want %d: %w", v, Version, ErrBadVersion)
	}
	if n := binary.LittleEndian.Uint32(hdr[countOffset:]); n != numCounters {
		return fmt.Errorf("layout version %d with %d counters, want %d: %w", Version, n, numCounters, ErrBadVersion)
	}
	return nil
}

// checkMappedHeader copies the header out of shared memory and checks it.
// If the file was truncated under the mapping, the read faults with SIGBUS,
// which is turned into an error instead of killing the process.
func checkMappedHeader(mem []byte) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(interface{ Addr() uintptr }); !ok {
				panic(r)
			}
			err = fmt.Errorf("memory fault reading the mapped header (file truncated?): %w", ErrBadSize)
		}
	}()
	var hdr [lineSize]byte
	copy(hdr[:], mem)
	return checkHeader(hdr[:])
}

// newCache builds a Cache over mem, which must be Size bytes, 8-byte
// aligned, and hold a valid header. unmap (may be nil) is called by Close.
// Tests use it to place the cache right before a PROT_NONE guard page.
func newCache(path string, mem []byte, unmap func([]byte) error) (*Cache, error) {
	if len(mem) != Size {
		return nil, checkSize(int64(len(mem)))
	}
	if p := uintptr(unsafe.Pointer(&mem[0])); p%8 != 0 {
		return nil, fmt.Errorf("mapping at %#x is not 8-byte aligned", p)
	}
	if err := checkMappedHeader(mem); err != nil {
		return nil, err
	}
	c := &Cache{mem: mem, unmap: unmap, path: path}
	for i := range c.counters {
		c.counters[i] = (*atomic.Uint64)(unsafe.Pointer(&mem[Counter(i).offset()]))
	}
	return c, nil
}

// Load returns the current value of counter k: one atomic load, no
// allocation, inlined into the caller. It panics if k is not one of the
// defined counters ("shmem: invalid Counter(4)"), and with a nil pointer
// dereference if the Cache is closed (Close clears the counter pointers).
// Both are programming errors, and neither touches the mapping.
func (c *Cache) Load(k Counter) uint64 {
	if uint(k) >= numCounters {
		badCounter(k)
	}
	return c.counters[k].Load()
}

// Bump atomically adds 1 to counter k and returns the new value. Call it
// only after the change the counter stands for is durable on disk. It
// panics like [Cache.Load].
func (c *Cache) Bump(k Counter) uint64 {
	if uint(k) >= numCounters {
		badCounter(k)
	}
	return c.counters[k].Add(1)
}

// badCounter panics for an invalid Counter. It is kept out of line so Load
// and Bump stay small enough to inline.
//
//go:noinline
func badCounter(k Counter) {
	panic("shmem: invalid " + k.String())
}

// Close unmaps the file. Afterwards Load and Bump panic (nil pointer
// dereference) instead of touching the unmapped memory. Close must not be
// called concurrently with other methods. Closing twice is a no-op.
func (c *Cache) Close() error {
	if c.mem == nil {
		return nil
	}
	mem := c.mem
	c.counters = [numCounters]*atomic.Uint64{}
	c.mem = nil
	if c.unmap == nil {
		return nil
	}
	if err := c.unmap(mem); err != nil {
		return fmt.Errorf("closing config version cache %s: %w", c.path, err)
	}
	return nil
}

// Path returns the path the Cache was opened with.
func (c *Cache) Path() string { return c.path }

// Check verifies that the file at Path is still the file that is mapped
// (same device and inode, not removed or replaced: [ErrReplaced] or
// fs.ErrNotExist), still a regular file of Size bytes ([ErrBadSize] if it
// was truncated), and that the mapped header is intact. It costs one lstat
// and reads only the header; it is meant for periodic health checks, not
// for the hot path. A truncated file is detected by the lstat, before the
// mapping is touched; if it is truncated between the lstat and the header
// read, the resulting SIGBUS is recovered and reported as [ErrBadSize].
func (c *Cache) Check() error {
	if err := c.check(); err != nil {
		return fmt.Errorf("checking config version cache %s: %w", c.path, err)
	}
	return nil
}

func (c *Cache) check() error {
	if c.mem == nil {
		return errors.New("cache is closed")
	}
	var st unix.Stat_t
	if err := unix.Lstat(c.path, &st); err != nil {
		return &fs.PathError{Op: "lstat", Path: c.path, Err: err}
	}
	if uint64(st.Dev) != c.dev || uint64(st.Ino) != c.ino {
		return fmt.Errorf("path now names inode %d on device %#x, mapped inode %d on device %#x: %w",
			st.Ino, st.Dev, c.ino, c.dev, ErrReplaced)
	}
	if err := checkSize(st.Size); err != nil {
		return err
	}
	return checkMappedHeader(c.mem)
}
