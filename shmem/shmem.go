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
//   - Counters only grow: by exactly 1 per [Cache.Bump], or, when a process
//     switches to the file after an incident, lifted to 2^32 above the
//     values it saw last (see below). Wrap-around at 2^64 is not a practical
//     concern.
//   - No value [Cache.Load] returns in a process is returned again later in
//     that process for the same counter, across every switch of files: a
//     cache built at generation g is never taken for current after the file
//     changed under it.
//   - A writer bumps a counter only after its change is durable on disk
//     (file replaced, fsynced, directory fsynced). A reader that sees the new
//     value and then reads the file therefore sees the change.
//   - Nobody spins or sleeps waiting on a counter: a check reads it once and
//     compares it with the generation the caller's cached state was built at.
//   - A file is never unmapped while a reader may use it: a file switched
//     away from stays mapped (4 KiB each) until [Cache.Close].
//   - An invalid file is never overwritten: the writer moves it aside.
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
// # Breakage and recovery
//
// The file lives in /run, where an administrator or a cleanup job can remove,
// replace, truncate or overwrite it while the daemons run. If apid then made
// a new file while proxyd kept the old inode mapped, proxyd's caches would
// never see apid's bumps again: a rotated token's old secret or a revoked
// ticket accepted for good. So every process that holds the file runs
// [Cache.Watch]: a health check every [WatchInterval] (250 ms). It is
// [Cache.Check]: one lstat (the path still names the mapped inode, of Size
// bytes) and a read of the header and counters, which must be valid and not
// lower than at the last check ([ErrBadCounter]: a counter written back
// could make an old generation current again).
//
// When the check fails, the incident is reported once (an [Event], which
// [Event.Log] writes as "config version cache broken" with what was found:
// removed, path naming another inode, wrong size, magic, version, counter
// moved backwards) and the Cache looks for a replacement:
//
//   - The writer (apid, WatchOptions.Repair) calls [Recreate]: a valid file
//     at the path is used; a missing one is made as [Create] does (link(2),
//     never replacing a name); an invalid one is renamed to
//     "<path>.corrupt-<unix time>" (renameat2 RENAME_NOREPLACE: "-2", "-3"...
//     when taken), kept for inspection, and a new one is made. apid calls
//     Recreate at start too, so a restart repairs the file as well.
//   - Readers (proxyd, which runs unprivileged and may not write the
//     directory) open the file at the path once a valid one is there.
//
// Switching: the new file's counters are lifted to at least the values this
// process saw at its last good check plus 2^32 (more than a counter can grow
// in one check interval), with compare-and-swap, never lowering one; then the
// mapping is swapped behind an atomic pointer. Every value Load returns from
// then on is above every value it returned before, so every cache keyed on a
// generation (tokenshadow, users, acl, revocation, tfa, the ticket keys)
// misses once and re-reads its file: no hooks are needed, and no cache can be
// refilled at an old generation by a reader racing the switch. Lifting
// happens in the shared file, so the processes that share it agree on the
// values again (apid's GET /status and gatectl status show the same); another
// process's lift only moves the counters up, which only invalidates.
//
// Meanwhile (no valid file at the path; a reader until apid has made one,
// apid only if making one fails), the Cache runs on a private page of
// process memory whose counters also start 2^32 above, and every health
// check moves all of them by 1. Caches therefore live at most one check
// interval: requests are verified against the files on disk at least every
// 250 ms, which honours any change within that time, the same bound manual
// edits of token.shadow and user.cfg have. This was chosen over refusing with
// 503: a missing file in /run would otherwise take proxyd down for as long
// as apid is down, while the slow path is correct. A counter that changed on
// every Load would break the callers' read-check-retry loops (tokenshadow
// gives up after 8 moves).
//
// Bounds: a change made by apid after it switched files and before a reader
// noticed is seen by that reader at its next check, within one interval. A
// truncation to less than one page is the one fault that cannot be made
// harmless: touching a MAP_SHARED page past the end of the file raises
// SIGBUS, which kills a Go program. The check sees the size by lstat before
// it reads the mapping (and reads it with debug.SetPanicOnFault, so a
// truncation in between is an error, not a crash) and switches away, so the
// window is one interval; a Load from a request in that window kills the
// process (systemd restarts it, and apid's Recreate moves the file aside).
// debug.SetPanicOnFault on every request goroutine would turn that into a
// failed request, but it is per goroutine: every goroutine that may load a
// counter (requests, /metrics, anything added later) would need it, and a
// single one missed still crashes; it is not used. Values Load returned
// from counters overwritten with garbage before the check noticed are not
// guaranteed distinct from later ones.
//
// # Concurrency
//
// [Cache.Load] and [Cache.Bump] are safe for concurrent use by any number of
// goroutines and processes; they read the current mapping through an atomic
// pointer, take no lock and allocate nothing. [Cache.Check], [Cache.Watch]
// and [Cache.Close] serialize on a mutex. Close unmaps every file the Cache
// mapped; it must not run concurrently with Load or Bump, and Load or Bump
// after Close panic (nil pointer dereference) instead of touching unmapped
// memory. An invalid Counter panics too, before any memory is touched.
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
	"sync"
	"sync/atomic"
	"time"
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

// Sentinel errors, wrapped by the errors of [Open], [Create], [Recreate] and [Cache.Check].
var (
	ErrBadSize    = errors.New("wrong size")
	ErrBadMagic   = errors.New("wrong magic")
	ErrBadVersion = errors.New("unsupported layout version")
	ErrNotRegular = errors.New("not a regular file")
	ErrReplaced   = errors.New("file replaced")
	ErrBadCounter = errors.New("counter moved backwards")
	ErrUnmapped   = errors.New("no valid file mapped")
)

// jump is how far above the values last seen a Cache lifts the counters when it switches
// from a failed file to another file or to its private page: more than any counter can grow
// between two health checks, so that no value Load returned before the switch is returned
// again after it.
const jump = 1 << 32

// Cache is an open ConfigVersionCache: the shared mapping of the file, and, after the file
// broke, whatever replaced it (see "Breakage and recovery" in the package documentation).
type Cache struct {
	// cur is the *mapping Load and Bump use (nil after Close), read with
	// atomic.LoadPointer: atomic.Pointer's generic Load would push Load past the inlining
	// budget.
	cur  unsafe.Pointer
	path string

	mu       sync.Mutex          // serializes Check, health checks and Close
	seen     [numCounters]uint64 // values at the last health check (or Open)
	retired  []*mapping          // files switched away from, unmapped by Close
	reported string              // the failure last reported in the current incident; "" when healthy
}

// paddedCount is a counter of the private page, alone on its cache line like in the file.
type paddedCount struct {
	v atomic.Uint64
	_ [lineSize - 8]byte
}

// mapping is one mapped file (or the private page: mem nil). Only the counters it points to
// change after it is made; Load and Bump read it through Cache.cur without locking.
type mapping struct {
	// counters point into mem (or the private page). They index this array only after
	// checking the Counter, so the index needs no bounds check.
	counters [numCounters]*atomic.Uint64
	mem      []byte
	unmap    func([]byte) error
	dev, ino uint64
	cause    error // private page: why no file is mapped
}

// values returns every counter. The caller must know the mapping is safe to touch (see
// readMapped).
func (m *mapping) values() (v [numCounters]uint64) {
	for k := range v {
		v[k] = m.counters[k].Load()
	}
	return v
}

// raise lifts every counter below floor to floor (never lowers one).
func (m *mapping) raise(floor [numCounters]uint64) {
	for k, p := range m.counters {
		for {
			v := p.Load()
			if v >= floor[k] || p.CompareAndSwap(v, floor[k]) {
				break
			}
		}
	}
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

// Recreate is the writer's (apid's) Create: it opens the file at path, creates it when it is
// missing, and when it is invalid ([ErrNotRegular], [ErrBadSize], [ErrBadMagic],
// [ErrBadVersion]) moves it aside to "<path>.corrupt-<unix time>" and creates a new one. It
// returns the name the invalid file was moved to, or "". Other errors (permissions, I/O) are
// returned as they are and nothing is moved.
func Recreate(path string, gid int) (c *Cache, movedTo string, err error) {
	m, movedTo, _, err := recreate(path, gid)
	if err != nil {
		return nil, movedTo, err
	}
	return newCacheFrom(path, m), movedTo, nil
}

// recreate is Recreate returning the mapping, and whether it made a new file.
func recreate(path string, gid int) (m *mapping, movedTo string, made bool, err error) {
	m, err = open(path)
	switch {
	case err == nil:
		return m, "", false, nil
	case IsInvalid(err):
		if movedTo, err = moveAside(path, time.Now()); err != nil {
			return nil, "", false, fmt.Errorf("moving invalid config version cache %s aside: %w", path, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, "", false, fmt.Errorf("opening config version cache %s: %w", path, err)
	}
	// The directory is apid's own (under --run-dir); it may have been removed too.
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, movedTo, false, fmt.Errorf("creating config version cache %s: %w", path, err)
	}
	if err := createFile(path, gid); err != nil {
		return nil, movedTo, false, fmt.Errorf("creating config version cache %s: %w", path, err)
	}
	if m, err = open(path); err != nil {
		return nil, movedTo, true, fmt.Errorf("opening config version cache %s: %w", path, err)
	}
	return m, movedTo, true, nil
}

// IsInvalid tells whether an error of Open (or Check) means that what is at the path is not
// a valid cache file ([ErrNotRegular], [ErrBadSize], [ErrBadMagic], [ErrBadVersion]), as
// opposed to missing or unreadable: the kind Recreate moves aside.
func IsInvalid(err error) bool {
	for _, e := range []error{ErrNotRegular, ErrBadSize, ErrBadMagic, ErrBadVersion} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// moveAside renames path to "<path>.corrupt-<unix time>" (with "-2", "-3"... when that name
// is taken: an existing name is never replaced) and fsyncs the directory.
func moveAside(path string, now time.Time) (string, error) {
	for i := 1; ; i++ {
		dst := path + ".corrupt-" + strconv.FormatInt(now.Unix(), 10)
		if i > 1 {
			dst += "-" + strconv.Itoa(i)
		}
		err := unix.Renameat2(unix.AT_FDCWD, path, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
		if err == unix.EEXIST && i < 100 {
			continue
		}
		if err != nil {
			return "", &os.LinkError{Op: "rename", Old: path, New: dst, Err: err}
		}
		return dst, syncDir(filepath.Dir(path))
	}
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
	m, err := open(path)
	if err != nil {
		return nil, fmt.Errorf("opening config version cache %s: %w", path, err)
	}
	return newCacheFrom(path, m), nil
}

func open(path string) (*mapping, error) {
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
	m, err := newMapping(mem, unix.Munmap)
	if err != nil {
		unix.Munmap(mem)
		return nil, err
	}
	m.dev, m.ino = uint64(st.Dev), uint64(st.Ino)
	return m, nil
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

// readMapped copies the header and the counters out of shared memory and
// checks the header. If the file was truncated under the mapping, the read
// faults with SIGBUS, which is turned into an error instead of killing the
// process (debug.SetPanicOnFault, for this goroutine and this call only).
func readMapped(m *mapping) (vals [numCounters]uint64, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(interface{ Addr() uintptr }); !ok {
				panic(r)
			}
			err = fmt.Errorf("memory fault reading the mapping (file truncated?): %w", ErrBadSize)
		}
	}()
	var hdr [lineSize]byte
	copy(hdr[:], m.mem)
	if err := checkHeader(hdr[:]); err != nil {
		return vals, err
	}
	return m.values(), nil
}

// newMapping maps the counters of mem, which must be Size bytes, 8-byte
// aligned, and hold a valid header. unmap (may be nil) is called by Close.
func newMapping(mem []byte, unmap func([]byte) error) (*mapping, error) {
	if len(mem) != Size {
		return nil, checkSize(int64(len(mem)))
	}
	if p := uintptr(unsafe.Pointer(&mem[0])); p%8 != 0 {
		return nil, fmt.Errorf("mapping at %#x is not 8-byte aligned", p)
	}
	m := &mapping{mem: mem, unmap: unmap}
	for i := range m.counters {
		m.counters[i] = (*atomic.Uint64)(unsafe.Pointer(&mem[Counter(i).offset()]))
	}
	if _, err := readMapped(m); err != nil {
		return nil, err
	}
	return m, nil
}

// privateMapping is a mapping of process memory, used while no valid file is mapped; its
// counters start at zero.
func privateMapping(cause error) *mapping {
	page := new([numCounters]paddedCount)
	m := &mapping{cause: cause}
	for i := range m.counters {
		m.counters[i] = &page[i].v
	}
	return m
}

// current returns the mapping in use; nil after Close.
func (c *Cache) current() *mapping { return (*mapping)(atomic.LoadPointer(&c.cur)) }

// swap makes next the mapping in use and returns the previous one.
func (c *Cache) swap(next *mapping) *mapping {
	return (*mapping)(atomic.SwapPointer(&c.cur, unsafe.Pointer(next)))
}

// newCacheFrom makes a Cache over a valid mapping.
func newCacheFrom(path string, m *mapping) *Cache {
	c := &Cache{path: path}
	c.swap(m)
	c.seen = m.values()
	return c
}

// newCache builds a Cache over mem, as newMapping. Tests use it to place
// the cache right before a PROT_NONE guard page.
func newCache(path string, mem []byte, unmap func([]byte) error) (*Cache, error) {
	m, err := newMapping(mem, unmap)
	if err != nil {
		return nil, err
	}
	return newCacheFrom(path, m), nil
}

// Load returns the current value of counter k: two dependent loads (the
// current mapping, then the counter, one atomic load), no allocation,
// inlined into the caller. After a switch of files the value is that of
// the new file, whose counters the switch lifted (see "Breakage and
// recovery"). It panics if k is not one of the defined counters ("shmem: invalid
// Counter(4)"), and with a nil pointer dereference if the Cache is closed.
// Both are programming errors, and neither touches the mapping.
func (c *Cache) Load(k Counter) uint64 {
	if uint(k) >= numCounters {
		badCounter(k)
	}
	return (*mapping)(atomic.LoadPointer(&c.cur)).counters[k].Load()
}

// Bump atomically adds 1 to counter k and returns the new value (as Load
// counts it). Call it only after the change the counter stands for is
// durable on disk. It panics like [Cache.Load].
func (c *Cache) Bump(k Counter) uint64 {
	if uint(k) >= numCounters {
		badCounter(k)
	}
	return (*mapping)(atomic.LoadPointer(&c.cur)).counters[k].Add(1)
}

// badCounter panics for an invalid Counter. It is kept out of line so Load
// and Bump stay small enough to inline.
//
//go:noinline
func badCounter(k Counter) {
	panic("shmem: invalid " + k.String())
}

// Close unmaps the file and every file the Cache switched away from, and
// stops health checks. Afterwards Load and Bump panic (nil pointer
// dereference) instead of touching unmapped memory. Close must not run
// concurrently with Load or Bump; it may run concurrently with Watch and
// Check. Closing twice is a no-op.
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.swap(nil)
	if m == nil {
		return nil
	}
	var errs []error
	for _, m := range append(c.retired, m) {
		if m.mem == nil || m.unmap == nil {
			continue
		}
		if err := m.unmap(m.mem); err != nil {
			errs = append(errs, err)
		}
	}
	c.retired = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing config version cache %s: %w", c.path, err)
	}
	return nil
}

// Path returns the path the Cache was opened with.
func (c *Cache) Path() string { return c.path }

// Check verifies that the file at Path is still the file that is mapped
// (same device and inode, not removed or replaced: [ErrReplaced] or
// fs.ErrNotExist), still a regular file of Size bytes ([ErrBadSize] if it
// was truncated), that the mapped header is intact, and that no counter
// moved backwards since the last health check ([ErrBadCounter]; it may
// move forward by any amount: another process's switch lifts it by 2^32). While the Cache runs on its private page it returns
// an error wrapping [ErrUnmapped] and the failure that started the
// incident. It costs one lstat and reads only the header and the counters;
// it is meant for periodic health checks ([Cache.Watch]), not for the hot path.
// A truncated file is detected by the lstat, before the mapping is
// touched; if it is truncated between the lstat and the read, the
// resulting SIGBUS is recovered and reported as [ErrBadSize].
func (c *Cache) Check() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.current()
	if m == nil {
		return fmt.Errorf("checking config version cache %s: cache is closed", c.path)
	}
	_, err := c.check(m)
	return err
}

// check checks m as Check describes and returns its values; c.mu is held.
func (c *Cache) check(m *mapping) ([numCounters]uint64, error) {
	vals, err := c.checkMapping(m)
	if err != nil {
		return vals, fmt.Errorf("checking config version cache %s: %w", c.path, err)
	}
	return vals, nil
}

func (c *Cache) checkMapping(m *mapping) (vals [numCounters]uint64, err error) {
	if m.mem == nil {
		return vals, fmt.Errorf("%w since: %w", ErrUnmapped, m.cause)
	}
	var st unix.Stat_t
	if err := unix.Lstat(c.path, &st); err != nil {
		return vals, &fs.PathError{Op: "lstat", Path: c.path, Err: err}
	}
	if uint64(st.Dev) != m.dev || uint64(st.Ino) != m.ino {
		return vals, fmt.Errorf("path now names inode %d on device %#x, mapped inode %d on device %#x: %w",
			st.Ino, st.Dev, m.ino, m.dev, ErrReplaced)
	}
	if err := checkSize(st.Size); err != nil {
		return vals, err
	}
	if vals, err = readMapped(m); err != nil {
		return vals, err
	}
	for k, v := range vals {
		if v < c.seen[k] {
			return vals, fmt.Errorf("counter %s went from %d to %d: %w", Counter(k), c.seen[k], v, ErrBadCounter)
		}
	}
	return vals, nil
}
