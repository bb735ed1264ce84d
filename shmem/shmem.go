// Package shmem implements the ConfigVersionCache: one page of generation counters shared by
// every gatehouse process, a u64 counter per configuration domain. A process that changed
// configuration bumps the matching counter; every other process notices by loading it. This
// is the only package in gatehouse that touches unsafe or raw memory.
//
// # The page (layout version 1)
//
// The page is exactly [Size] = 4096 bytes:
//
//	offset  size  field
//	     0     8  magic: "GATECVC\n" (47 41 54 45 43 56 43 0a)
//	     8     4  layout version, u32 little endian, = 1
//	    12     4  counter count, u32 little endian, = 4
//	    16    48  reserved, zero
//	    64     8  counter 0, user: users, ACL, realms, revocations
//	    72    56  reserved, zero
//	   128     8  counter 1, token_shadow: token.shadow
//	   136    56  reserved, zero
//	   192     8  counter 2, tfa: TFA configuration (tfa.json)
//	   200    56  reserved, zero
//	   256     8  counter 3, keys: key files
//	   264  3832  reserved, zero
//
// Counter i is the u64 at offset 64*(1+i), in host byte order (the page never leaves the
// machine). Reserved bytes are zero; a layout that gives them a meaning gets a new version.
//
// # A page nobody can shrink
//
// The page lives in a sealed memfd, not in a file anyone can name: apid makes it with
// memfd_create(MFD_ALLOW_SEALING), sizes it to 4096 bytes and seals it with F_SEAL_SHRINK,
// F_SEAL_GROW and F_SEAL_SEAL ([New]). A process maps it only after checking the seals, so its
// size can never change under a mapping, and touching the mapping can never fault: nothing done
// to any file, in the run directory or elsewhere, can kill a process that maps the page with
// SIGBUS. (It did: a generation file truncated in place killed proxyd in 15 of 15 tries, and
// apid in 8 of 9 when a rotation followed.)
//
// apid owns the page and hands it out on a unix socket ([Cache.Serve]; apid's socket is
// <run-dir>/shmem.sock, admitted by SO_PEERCRED like apid.sock): each connection gets one
// message, the magic, carrying the memfd's descriptor (SCM_RIGHTS). Peers apid lets write (root
// and apid's own user: gatectl, tests) get a read-write descriptor, everyone else (proxyd) a
// read-only one (a second open of the memfd with O_RDONLY), which it can map read-only only:
// no process but apid and root can move a counter. [Dial] attaches to the page.
//
// A page outlives apid's restarts where something keeps it: under systemd, apid puts it in
// its unit's file descriptor store (FDSTORE=1, FDNAME=config-versions) and gets it back in
// LISTEN_FDS on the next start ([Adopt]), so an apid restart changes nothing for the processes
// attached. Started by hand, a new apid makes a new page, and the processes attached follow it
// within one health check (see Following a new page).
//
// # The mirror
//
// <run-dir>/shmem/config-versions is no longer mapped by anyone. apid writes the page's image
// there (a regular 4096-byte file, 0640) at start and at every health check when it changed
// ([Cache.Watch]), so it is at most one interval behind: gatectl status reads it when apid is
// down ([ReadMirror]), and a new page starts above it. Removing, replacing, truncating or
// overwriting it changes nothing any process trusts; apid's next health check reports it once
// ("config version mirror broken"), moves an invalid one aside to
// "<path>.corrupt-<unix time>" and writes it anew.
//
// # Invariants
//
//   - Counters are only ever read or written with sync/atomic operations. The mapping is page
//     aligned, so every counter is 8-byte aligned; each sits alone on its 64-byte cache line.
//   - The header is written before the page is sealed and handed out, and never changes.
//   - Counters only grow. apid, the owner, bumps them under a mutex, after checking that each
//     is where its last bump left it: a counter moved by anyone else (a process holding a
//     read-write descriptor wrote a value back) makes it lift every counter by 2^32 first, so
//     that no cache built at the written-back value can be taken for current again. A bump
//     comes only after the change it stands for is durable on disk.
//   - No value [Cache.Load] returns in a process is returned again later in that process for
//     the same counter, across every page it follows: a cache built at generation g is never
//     taken for current after the page changed under it.
//   - Nobody spins or sleeps waiting on a counter: a check reads it once and compares.
//   - A page is never unmapped while a reader may use it: a page switched away from stays
//     mapped (4 KiB) until [Cache.Close].
//
// # Following a new page
//
// A process attached to a page (proxyd) runs [Cache.Watch]: every [WatchInterval] (250 ms) it
// dials apid's socket again. The same page (same device and inode) changes nothing. A new page
// (apid restarted without a descriptor store) is taken over: its values, plus a per-process
// lift of 2^32 above the values last returned (more than a counter can grow in one interval),
// are what Load returns from then on, so every cache keyed on a generation (tokenshadow, users,
// acl, revocation, tfa, the ticket keys) misses once and re-reads its file. Bounds: a change
// apid makes on a new page before a process followed it is seen at that process's next check,
// within one interval; under systemd there is no new page, and no such window. While apid is
// unreachable the page attached stays (nobody else can bump it meanwhile).
//
// A process that never got a page (proxyd started while apid was down) runs on a private page
// of process memory whose counters start 2^32 above zero and move by 1 at every health check:
// caches live at most one interval, so requests are verified against the files on disk at
// least every 250 ms, until apid's page is attached. This was chosen over refusing with 503:
// the slow path is correct, and token and ticket checks go on while apid is down.
//
// # Concurrency
//
// [Cache.Load] is safe for concurrent use by any number of goroutines and processes; it reads
// the current mapping through an atomic pointer, takes no lock and allocates nothing.
// [Cache.Bump] takes the owner's mutex. [Cache.Watch] and [Cache.Close] serialize on a
// mutex. Close unmaps every page the Cache mapped; it must not run concurrently with Load or
// Bump, and Load or Bump after Close panic (nil pointer dereference) instead of touching
// unmapped memory. An invalid Counter panics too, before any memory is touched, and so does a
// Bump on a read-only page.
package shmem

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Size is the exact size of the page in bytes.
const Size = 4096

// Version is the layout version this package reads and writes.
const Version = 1

// Magic is the 8-byte value at offset 0 of the page.
const Magic = "GATECVC\n"

// StoreName is the page's name in systemd's file descriptor store (FDNAME, LISTEN_FDNAMES).
const StoreName = "config-versions"

const (
	lineSize      = 64 // one counter per cache line
	numCounters   = 4
	versionOffset = 8
	countOffset   = 12
	// seals are the seals a page must carry: its size never changes.
	seals = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW
)

// Counter names one of the generation counters.
type Counter int

// The counters, in page order.
const (
	User        Counter = iota // users, ACL, realms, revocations
	TokenShadow                // token.shadow
	TFA                        // tfa.json
	Keys                       // signing, CSRF and proxy keys
)

// Counters lists every counter in page order.
func Counters() []Counter { return []Counter{User, TokenShadow, TFA, Keys} }

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

// offset returns the byte offset of counter c in the page.
func (c Counter) offset() int { return lineSize * (1 + int(c)) }

// Sentinel errors, wrapped by this package's errors.
var (
	ErrBadSize    = errors.New("wrong size")
	ErrBadMagic   = errors.New("wrong magic")
	ErrBadVersion = errors.New("unsupported layout version")
	ErrNotRegular = errors.New("not a regular file")
	ErrNotSealed  = errors.New("not a sealed memfd")
	ErrReplaced   = errors.New("file replaced")
	ErrUnmapped   = errors.New("no page attached")
)

// jump is how far above the values last returned a process lifts the counters when it
// follows a new page or starts on its private page: more than any counter can grow between
// two health checks.
const jump = 1 << 32

// Cache is a process's view of the page: the mapping Load and Bump use, and, for the owner,
// the mirror it keeps (see the package documentation).
type Cache struct {
	// cur is the *mapping Load and Bump use (nil after Close), read with
	// atomic.LoadPointer: atomic.Pointer's generic Load would push Load past the inlining
	// budget.
	cur unsafe.Pointer

	bumpMu sync.Mutex          // the owner's bumps: check, lift, add
	left   [numCounters]uint64 // where the owner's last bump (or lift) left each counter
	lifts  atomic.Uint64       // bumps that found a counter moved by someone else

	mu       sync.Mutex  // serializes Watch's checks and Close
	retired  []*mapping  // pages switched away from, unmapped by Close
	mirror   mirrorState // the owner's mirror file
	reported string      // the failure last reported in the current incident; "" when healthy
}

// paddedCount is a counter of the private page, alone on its cache line like in the page.
type paddedCount struct {
	v atomic.Uint64
	_ [lineSize - 8]byte
}

// mapping is one mapped page (or the private page: mem nil). Only the counters it points to
// change after it is made; Load and Bump read it through Cache.cur without locking.
type mapping struct {
	// counters point into mem (or the private page). They index this array only after
	// checking the Counter, so the index needs no bounds check.
	counters [numCounters]*atomic.Uint64
	// lift is added to every value read: this process's lift when it followed this page.
	lift     [numCounters]uint64
	writable bool
	mem      []byte
	file     *os.File // the page's descriptor; nil for the private page
	ro       *os.File // owner only: a read-only descriptor of the same page, for readers
	dev, ino uint64
	cause    error // private page: why no page is attached
}

// values returns every counter as Load returns it.
func (m *mapping) values() (v [numCounters]uint64) {
	for k := range v {
		v[k] = m.counters[k].Load() + m.lift[k]
	}
	return v
}

// raw returns every counter as stored in the page.
func (m *mapping) raw() (v [numCounters]uint64) {
	for k := range v {
		v[k] = m.counters[k].Load()
	}
	return v
}

// image returns a freshly initialized page image with the given counters.
func image(vals [numCounters]uint64) []byte {
	b := make([]byte, Size)
	copy(b, Magic)
	binary.LittleEndian.PutUint32(b[versionOffset:], Version)
	binary.LittleEndian.PutUint32(b[countOffset:], numCounters)
	for k, v := range vals {
		binary.NativeEndian.PutUint64(b[Counter(k).offset():], v)
	}
	return b
}

// New makes a new page, owned by this process: a sealed memfd of Size bytes with every
// counter at zero, mapped read-write. Serve hands it out; StoreFile is its descriptor, for
// systemd's store.
func New() (*Cache, error) { return newPage([numCounters]uint64{}) }

// NewAfter is New for apid's start without its old page: the counters start at the values of
// the mirror file at mirror lifted by 2^32 (above anything the old page reached), or at zero
// when there is no valid mirror.
func NewAfter(mirror string) (*Cache, error) {
	vals, err := readMirror(mirror)
	if err != nil {
		return New()
	}
	return newPage(add(vals, jump))
}

func newPage(start [numCounters]uint64) (*Cache, error) {
	fd, err := unix.MemfdCreate("gatehouse-"+StoreName, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("making the config version page: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:gatehouse-"+StoreName)
	fail := func(doing string, err error) (*Cache, error) {
		f.Close()
		return nil, fmt.Errorf("making the config version page: %s: %w", doing, err)
	}
	if err := unix.Ftruncate(fd, Size); err != nil {
		return fail("ftruncate", err)
	}
	if _, err := f.WriteAt(image(start), 0); err != nil {
		return fail("writing the header", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals|unix.F_SEAL_SEAL); err != nil {
		return fail("sealing", err)
	}
	c, err := adopt(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("making the config version page: %w", err)
	}
	return c, nil
}

// Adopt makes the page of descriptor f, which must be read-write, this process's own (apid
// after a restart, with the page systemd kept). It is checked like a page Dial receives.
func Adopt(f *os.File) (*Cache, error) {
	c, err := adopt(f)
	if err != nil {
		return nil, fmt.Errorf("adopting the config version page %s: %w", f.Name(), err)
	}
	return c, nil
}

func adopt(f *os.File) (*Cache, error) {
	m, err := mapFile(f)
	if err != nil {
		return nil, err
	}
	if !m.writable {
		unmap(m)
		return nil, fmt.Errorf("descriptor is read-only: %w", fs.ErrPermission)
	}
	// Readers get a read-only descriptor of the same page: a second open, read-only.
	ro, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(int(f.Fd())), os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		unmap(m)
		return nil, fmt.Errorf("opening a read-only descriptor of the page: %w", err)
	}
	m.ro = ro
	c := newCacheFrom(m)
	c.left = m.raw()
	return c, nil
}

// StoreFile returns the page's read-write descriptor (the owner's), for systemd's file
// descriptor store; nil for a page attached with Dial or the private page. The Cache keeps it:
// the caller must not close it.
func (c *Cache) StoreFile() *os.File {
	m := c.current()
	if m == nil || m.ro == nil {
		return nil
	}
	return m.file
}

// mapFile checks that f is a sealed memfd of Size bytes with a valid header and maps it,
// read-write when f allows writing, else read-only. On success the mapping owns f.
func mapFile(f *os.File) (*mapping, error) {
	fd := int(f.Fd())
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("fstat: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("is not a regular file (mode %#o): %w", st.Mode, ErrNotRegular)
	}
	if err := checkSize(st.Size); err != nil {
		return nil, err
	}
	got, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil {
		return nil, fmt.Errorf("reading its seals: %v: %w", err, ErrNotSealed)
	}
	if got&seals != seals {
		return nil, fmt.Errorf("seals %#x lack shrink and grow (%#x): %w", got, seals, ErrNotSealed)
	}
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return nil, fmt.Errorf("reading its access mode: %w", err)
	}
	writable := flags&unix.O_ACCMODE == unix.O_RDWR
	prot := unix.PROT_READ
	if writable {
		prot |= unix.PROT_WRITE
	}
	mem, err := unix.Mmap(fd, 0, Size, prot, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap: %w", err)
	}
	m, err := newMapping(mem)
	if err != nil {
		unix.Munmap(mem)
		return nil, err
	}
	m.writable, m.file, m.dev, m.ino = writable, f, uint64(st.Dev), uint64(st.Ino)
	return m, nil
}

func checkSize(n int64) error {
	if n != Size {
		return fmt.Errorf("is %d bytes, want %d: %w", n, Size, ErrBadSize)
	}
	return nil
}

// checkHeader validates a header: the first lineSize bytes of a page.
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

// newMapping maps the counters of mem, which must be Size bytes, 8-byte aligned, and hold a
// valid header.
func newMapping(mem []byte) (*mapping, error) {
	if len(mem) != Size {
		return nil, checkSize(int64(len(mem)))
	}
	if p := uintptr(unsafe.Pointer(&mem[0])); p%8 != 0 {
		return nil, fmt.Errorf("mapping at %#x is not 8-byte aligned", p)
	}
	if err := checkHeader(mem[:lineSize]); err != nil {
		return nil, err
	}
	m := &mapping{mem: mem}
	for i := range m.counters {
		m.counters[i] = (*atomic.Uint64)(unsafe.Pointer(&mem[Counter(i).offset()]))
	}
	return m, nil
}

// unmap releases a mapping's memory and descriptors.
func unmap(m *mapping) error {
	var errs []error
	if m.mem != nil && m.file != nil {
		errs = append(errs, unix.Munmap(m.mem))
	}
	for _, f := range []*os.File{m.file, m.ro} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	return errors.Join(errs...)
}

// privateMapping is a mapping of process memory, used while no page is attached; its
// counters start at start.
func privateMapping(cause error, start [numCounters]uint64) *mapping {
	page := new([numCounters]paddedCount)
	m := &mapping{cause: cause, writable: true}
	for i := range m.counters {
		m.counters[i] = &page[i].v
		m.counters[i].Store(start[i])
	}
	return m
}

// Private returns a Cache on a private page (cause says why no page is attached), with
// counters 2^32 above zero: a process that could not Dial the page, which Watch then keeps
// dialing.
func Private(cause error) *Cache {
	return newCacheFrom(privateMapping(cause, add([numCounters]uint64{}, jump)))
}

// current returns the mapping in use; nil after Close.
func (c *Cache) current() *mapping { return (*mapping)(atomic.LoadPointer(&c.cur)) }

// swap makes next the mapping in use and returns the previous one.
func (c *Cache) swap(next *mapping) *mapping {
	return (*mapping)(atomic.SwapPointer(&c.cur, unsafe.Pointer(next)))
}

// newCacheFrom makes a Cache over a mapping.
func newCacheFrom(m *mapping) *Cache {
	c := &Cache{}
	c.swap(m)
	return c
}

// Load returns the current value of counter k: two dependent loads (the current mapping,
// then the counter, one atomic load) and an add, no allocation, inlined into the caller. After
// this process followed a new page the value is that page's plus this process's lift (see
// "Following a new page"). It panics if k is not one of the defined counters ("shmem: invalid
// Counter(4)"), and with a nil pointer dereference if the Cache is closed. Both are
// programming errors, and neither touches the mapping.
func (c *Cache) Load(k Counter) uint64 {
	if uint(k) >= numCounters {
		badCounter(k)
	}
	m := (*mapping)(atomic.LoadPointer(&c.cur))
	return m.counters[k].Load() + m.lift[k]
}

// Bump adds 1 to counter k and returns the new value (as Load counts it). Call it only after
// the change the counter stands for is durable on disk. The owner (the process that made or
// adopted the page) first checks that every counter is where its bumps left them and lifts
// them all by 2^32 when one is not (see Invariants). It panics like [Cache.Load], and on a
// read-only page ("shmem: Bump on a read-only page"): only apid moves counters.
func (c *Cache) Bump(k Counter) uint64 {
	if uint(k) >= numCounters {
		badCounter(k)
	}
	m := (*mapping)(atomic.LoadPointer(&c.cur))
	if !m.writable {
		readOnly()
	}
	if m.ro == nil {
		// Not the owner (a test or tool with a read-write descriptor, the private page):
		// no bookkeeping of where counters were left.
		return m.counters[k].Add(1) + m.lift[k]
	}
	c.bumpMu.Lock()
	defer c.bumpMu.Unlock()
	if now := m.raw(); now != c.left {
		// Moved by someone else: a value written back could make an old generation current
		// again. Lift every counter above both, and bump from there.
		var floor [numCounters]uint64
		for i := range floor {
			floor[i] = max(now[i], c.left[i]) + jump
		}
		m.raise(floor)
		c.left = m.raw()
		c.lifts.Add(1)
	}
	v := m.counters[k].Add(1)
	c.left[k] = v
	return v + m.lift[k]
}

// badCounter panics for an invalid Counter. It is kept out of line so Load and Bump stay small.
//
//go:noinline
func badCounter(k Counter) {
	panic("shmem: invalid " + k.String())
}

//go:noinline
func readOnly() {
	panic("shmem: Bump on a read-only page (only apid moves counters)")
}

// Close unmaps every page the Cache mapped and closes their descriptors; the owner first
// writes its mirror one last time, so that a clean stop leaves the last values there.
// Afterwards Load and Bump panic (nil pointer dereference) instead of touching unmapped
// memory. Close must not run concurrently with Load or Bump; it may run concurrently with
// Watch. Closing twice is a no-op.
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	if m := c.current(); m != nil && c.mirror.f != nil {
		errs = append(errs, c.writeMirror(m))
	}
	m := c.swap(nil)
	if m == nil {
		return nil
	}
	for _, m := range append(c.retired, m) {
		errs = append(errs, unmap(m))
	}
	c.retired = nil
	if c.mirror.f != nil {
		errs = append(errs, c.mirror.f.Close())
		c.mirror.f = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing the config version page: %w", err)
	}
	return nil
}

// add returns v with n added to every counter.
func add(v [numCounters]uint64, n uint64) [numCounters]uint64 {
	for k := range v {
		v[k] += n
	}
	return v
}
