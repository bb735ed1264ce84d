// Package cfgstore keeps one configuration file that every process reads and one writer
// changes (user.cfg, acl.cfg): each process caches its parse, and writers replace it under a
// lock and bump a shared generation counter (package shmem).
//
// # Reading
//
// Config returns the parse cached for the current generation. The fast path (the generation
// has not moved) is one shared-memory load and one atomic pointer load: no system call, no
// allocation. The slow path, serialised so that concurrent misses read the file once, reads
// the generation, then the file (a regular file, not a symbolic link, not group- or
// world-writable, at most Format.MaxSize bytes; a missing file parses as Format.Parse(nil)),
// and caches the parse, or its refusal (Format.Syntax, Format.Permissions), under that
// generation and the file's identity. Other errors (I/O) are not cached.
//
// Manual edits bump no generation: CheckFile (Watch calls it every WatchInterval, 250 ms)
// drops the cache when the file's identity (inode, size, mtime, ctime) changed. It also moves
// the Store's epoch, a local counter the cache is stamped with (read before the file is), and
// does so whenever nothing is cached, since a reload may be reading the old file right then:
// the fast path ignores a parse of an older epoch, so an edit CheckFile has seen stays seen
// (TestEditDuringReload; before the epoch such a reload cached the old content until the next
// CheckFile).
//
// # Writing
//
// Update takes the exclusive lock (package lockfile; 10 s timeout by default), reads and
// parses the file, refusing to overwrite one it cannot parse (nothing is lost), calls fn on
// that private copy and, when the encoding differs from the file, replaces it atomically
// (temp, fsync, rename, fsync dir; mode 0640 and the configured group by default) and bumps
// the generation before unlocking. Once Update has returned, every Config that starts
// afterwards, in any process sharing the generation file, sees the change.
package cfgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/lockfile"
	"gatehouse/shmem"
)

// WatchInterval is the default poll interval of Watch.
const WatchInterval = 250 * time.Millisecond

// Format is what a Store needs to know of its file.
type Format[T any] struct {
	Name    string                  // in errors: "reading <Name> <path>: ..."
	Parse   func([]byte) (T, error) // nil data: the file is missing
	Encode  func(T) ([]byte, error)
	MaxSize int64 // larger files are refused, wrapping Syntax
	// Syntax is wrapped for an oversized file (Parse's errors wrap it themselves),
	// Permissions for a file that is not regular or that group or others may write.
	Syntax, Permissions error
}

// Options configure a Store.
type Options struct {
	Path        string        // the file; required
	LockPath    string        // its lock file; required
	Generations *shmem.Cache  // shared generation counters; required
	Counter     shmem.Counter // the counter the file belongs to
	LockTimeout time.Duration // default lockfile.DefaultTimeout (10 s)
	Mode        os.FileMode   // mode of the written file; default 0640
	GID         int           // group to chown the written file to; <= 0 leaves the process's group
}

// Store reads and writes one file and caches its parse for this process.
type Store[T any] struct {
	f              Format[T]
	path, lockPath string
	gen            *shmem.Cache
	counter        shmem.Counter
	lockTimeout    time.Duration
	mode           os.FileMode
	gid            int

	snap  atomic.Pointer[snapshot[T]] // nil: nothing cached
	epoch atomic.Uint64               // moved by CheckFile (see the package comment)

	// reload serialises the slow path of Config, so that concurrent misses read the file once.
	reload sync.Mutex
}

// snapshot is the parse of one file version, valid while the generation is gen and the epoch
// epoch. Either cfg or err (a refused file) is meaningful. Immutable.
type snapshot[T any] struct {
	gen   uint64
	epoch uint64
	fid   lockfile.FileID
	cfg   T
	err   error
}

// Open returns a Store for o.Path. It does not read the file: that happens on first use.
func Open[T any](o Options, f Format[T]) (*Store[T], error) {
	if o.Path == "" {
		return nil, fmt.Errorf("opening %s: no path given", f.Name)
	}
	if o.Generations == nil {
		return nil, fmt.Errorf("opening %s %s: no generation cache given", f.Name, o.Path)
	}
	if o.LockPath == "" {
		return nil, fmt.Errorf("opening %s %s: no lock file given", f.Name, o.Path)
	}
	s := &Store[T]{
		f: f, path: o.Path, lockPath: o.LockPath, gen: o.Generations, counter: o.Counter,
		lockTimeout: o.LockTimeout, mode: o.Mode, gid: o.GID,
	}
	if s.lockTimeout <= 0 {
		s.lockTimeout = lockfile.DefaultTimeout
	}
	if s.mode == 0 {
		s.mode = 0o640
	}
	return s, nil
}

// Path returns the file's path.
func (s *Store[T]) Path() string { return s.path }

// LockPath returns the lock file's path.
func (s *Store[T]) LockPath() string { return s.lockPath }

// Generations returns the shared generation counters the Store follows.
func (s *Store[T]) Generations() *shmem.Cache { return s.gen }

// Mode returns the mode written files get.
func (s *Store[T]) Mode() os.FileMode { return s.mode }

// Config returns the current parse, shared and read-only: do not modify it.
func (s *Store[T]) Config() (T, error) {
	g := s.gen.Load(s.counter)
	if sn := s.snap.Load(); sn != nil && sn.gen == g && sn.epoch == s.epoch.Load() {
		return sn.cfg, sn.err
	}
	return s.load()
}

// load is the slow path of Config: read the file and cache its parse (or its refusal) under
// the generation and epoch read before the file was.
func (s *Store[T]) load() (T, error) {
	s.reload.Lock()
	defer s.reload.Unlock()
	g, e := s.gen.Load(s.counter), s.epoch.Load()
	if sn := s.snap.Load(); sn != nil && sn.gen == g && sn.epoch == e {
		return sn.cfg, sn.err // another goroutine loaded it meanwhile
	}
	cfg, _, fid, err := s.read()
	if err != nil && !errors.Is(err, s.f.Syntax) && !errors.Is(err, s.f.Permissions) {
		return cfg, err // not cached: it may be transient
	}
	err = lockfile.Versioned(fid, err) // a cached refusal stays that of the version read
	s.snap.Store(&snapshot[T]{gen: g, epoch: e, fid: fid, cfg: cfg, err: err})
	return cfg, err
}

// Forget drops this process's cached parse; the next Config reads the file.
func (s *Store[T]) Forget() { s.snap.Store(nil) }

// CheckFile drops the cached parse when the file is no longer the one it was read from (an
// edit that bumped no generation), or when nothing is cached (a reload may be reading the
// file that was there before), by moving the epoch. Watch calls it periodically.
func (s *Store[T]) CheckFile() error {
	fid, err := lockfile.Stat(s.path)
	if err != nil {
		return fmt.Errorf("checking %s %s: %w", s.f.Name, s.path, err)
	}
	if sn := s.snap.Load(); sn == nil || sn.fid != fid {
		s.epoch.Add(1)
		s.snap.CompareAndSwap(sn, nil)
	}
	return nil
}

// Watch calls CheckFile every interval (WatchInterval if <= 0) until ctx is done. Errors are
// passed to report (which may be nil) and do not stop the watch. Tests inject the ticks with
// lockfile.PollTicks.
func (s *Store[T]) Watch(ctx context.Context, interval time.Duration, report func(error)) {
	if interval <= 0 {
		interval = WatchInterval
	}
	lockfile.Poll(ctx, interval, s.CheckFile, report)
}

// Update changes the file: see the package comment. An error from fn is returned wrapped, and
// nothing is written.
func (s *Store[T]) Update(fn func(T) error) error {
	what := "updating " + s.f.Name
	return s.locked(what, func() error {
		c, raw, fid, err := s.read()
		if err != nil {
			return fmt.Errorf("%s: refusing to overwrite: %w", what, err)
		}
		if err := fn(c); err != nil {
			return fmt.Errorf("%s %s: %w", what, s.path, err)
		}
		data, err := s.f.Encode(c)
		if err != nil {
			return fmt.Errorf("%s %s: %w", what, s.path, err)
		}
		if fid != (lockfile.FileID{}) && bytes.Equal(data, raw) {
			return nil // nothing changed: no write, no bump
		}
		return s.write(what, data)
	})
}

// Create writes data as the file, under the lock and bumping the generation, when nothing is
// at its path; when something is, whatever it holds, Create does nothing. what names the
// operation in errors.
func (s *Store[T]) Create(what string, data []byte) error {
	return s.locked(what, func() error {
		_, err := os.Lstat(s.path)
		if err == nil {
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s %s: %w", what, s.path, err)
		}
		return s.write(what, data)
	})
}

// locked runs fn with the exclusive lock held.
func (s *Store[T]) locked(what string, fn func() error) (err error) {
	lk, err := lockfile.Exclusive(s.lockPath, s.lockTimeout)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, s.path, err)
	}
	defer func() {
		if uerr := lk.Unlock(); uerr != nil && err == nil {
			err = fmt.Errorf("%s %s: %w", what, s.path, uerr)
		}
	}()
	return fn()
}

// write replaces the file with data and then bumps the generation. Call it with the
// exclusive lock held.
func (s *Store[T]) write(what string, data []byte) error {
	dir, base := filepath.Split(s.path)
	if err := lockfile.CleanTemps(filepath.Clean(dir), base); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	opt := lockfile.DefaultOptions(s.mode)
	if s.gid > 0 {
		opt.GID = s.gid
	}
	if err := lockfile.Replace(s.path, data, opt); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	s.gen.Bump(s.counter)
	return nil
}

// read reads and parses the file, returning the parse, the raw bytes and the identity of what
// was read. A missing file parses as Parse(nil) with a zero FileID. The identity is returned
// with refusals too, so that they can be cached per file version.
func (s *Store[T]) read() (T, []byte, lockfile.FileID, error) {
	var zero T
	raw, fid, err := lockfile.ReadFile(s.path, lockfile.ReadOptions{MaxSize: s.f.MaxSize, Forbidden: 0o022})
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c, err := s.f.Parse(nil)
		return c, nil, lockfile.FileID{}, err
	case errors.Is(err, lockfile.ErrNotRegular), errors.Is(err, lockfile.ErrPermissions):
		return zero, nil, fid, fmt.Errorf("reading %s %s: %w: %w", s.f.Name, s.path, err, s.f.Permissions)
	case errors.Is(err, lockfile.ErrTooLarge):
		return zero, nil, fid, fmt.Errorf("reading %s %s: %w: %w", s.f.Name, s.path, err, s.f.Syntax)
	case err != nil:
		return zero, nil, fid, fmt.Errorf("reading %s %s: %w", s.f.Name, s.path, err)
	}
	c, err := s.f.Parse(raw)
	if err != nil {
		return zero, nil, fid, fmt.Errorf("parsing %s %s: %w", s.f.Name, s.path, err)
	}
	return c, raw, fid, nil
}
