package users

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
	"gatehouse/sectionconfig"
	"gatehouse/shmem"
)

// WatchInterval is the default poll interval of Watch.
const WatchInterval = 250 * time.Millisecond

// Options configure a Store.
type Options struct {
	Path        string        // user.cfg
	LockPath    string        // lock file; default "<dir of Path>/.user.lck" (PBS: /etc/proxmox-backup/.user.lck)
	Generations *shmem.Cache  // shared generation counters; required
	LockTimeout time.Duration // default lockfile.DefaultTimeout (10 s)
	Mode        os.FileMode   // mode of the written file; default 0640
	GID         int           // group to chown the written file to (root:gatehouse); <= 0 leaves the process's group
}

// Store reads and writes one user.cfg and caches its parse for this process.
type Store struct {
	path, lockPath string
	gen            *shmem.Cache
	lockTimeout    time.Duration
	mode           os.FileMode
	gid            int

	snap atomic.Pointer[snapshot] // nil: nothing cached

	// reload serialises the slow path of Config, so that concurrent misses read the file once.
	reload sync.Mutex
}

// snapshot is the parse of one file version, valid while the user generation is gen. Either
// cfg or err (an invalid file) is set. Immutable.
type snapshot struct {
	gen uint64
	fid lockfile.FileID
	cfg *Config
	err error
}

// Open returns a Store for o.Path. It does not read the file: that happens on first use.
func Open(o Options) (*Store, error) {
	if o.Path == "" {
		return nil, errors.New("opening user config: no path given")
	}
	if o.Generations == nil {
		return nil, fmt.Errorf("opening user config %s: no generation cache given", o.Path)
	}
	s := &Store{
		path:        o.Path,
		lockPath:    o.LockPath,
		gen:         o.Generations,
		lockTimeout: o.LockTimeout,
		mode:        o.Mode,
		gid:         o.GID,
	}
	if s.lockPath == "" {
		s.lockPath = filepath.Join(filepath.Dir(o.Path), ".user.lck")
	}
	if s.lockTimeout <= 0 {
		s.lockTimeout = lockfile.DefaultTimeout
	}
	if s.mode == 0 {
		s.mode = 0o640
	}
	return s, nil
}

// Path returns the user.cfg path.
func (s *Store) Path() string { return s.path }

// Config returns the current parsed config, shared and read-only: do not modify it. See the
// package comment for the caching rules; on the fast path it makes no system call and does
// not allocate.
func (s *Store) Config() (*Config, error) {
	g := s.gen.Load(shmem.User)
	if sn := s.snap.Load(); sn != nil && sn.gen == g {
		return sn.cfg, sn.err
	}
	return s.load()
}

// load is the slow path of Config: read the file and cache its parse (or its error, if the
// file is invalid) under the generation read before the file was.
func (s *Store) load() (*Config, error) {
	s.reload.Lock()
	defer s.reload.Unlock()
	g := s.gen.Load(shmem.User)
	if sn := s.snap.Load(); sn != nil && sn.gen == g {
		return sn.cfg, sn.err // another goroutine loaded it meanwhile
	}
	cfg, _, fid, err := readConfig(s.path)
	if err != nil && !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrPermissions) {
		return nil, err // not cached: it may be transient
	}
	s.snap.Store(&snapshot{gen: g, fid: fid, cfg: cfg, err: err})
	return cfg, err
}

// Forget drops this process's cached config; the next Config reads the file.
func (s *Store) Forget() { s.snap.Store(nil) }

// CheckFile drops the cached config when user.cfg is no longer the file it was read from (an
// edit that bumped no generation). Watch calls it periodically.
func (s *Store) CheckFile() error {
	fid, err := lockfile.Stat(s.path)
	if err != nil {
		return fmt.Errorf("checking user config %s: %w", s.path, err)
	}
	if sn := s.snap.Load(); sn != nil && sn.fid != fid {
		s.snap.CompareAndSwap(sn, nil)
	}
	return nil
}

// Watch calls CheckFile every interval (WatchInterval if <= 0) until ctx is done. Errors are
// passed to report (which may be nil) and do not stop the watch. Tests inject the ticks with
// lockfile.PollTicks.
func (s *Store) Watch(ctx context.Context, interval time.Duration, report func(error)) {
	if interval <= 0 {
		interval = WatchInterval
	}
	lockfile.Poll(ctx, interval, s.CheckFile, report)
}

// Update changes user.cfg: under the exclusive lock it reads and parses the file (refusing to
// overwrite one it cannot parse: nothing is lost), calls fn on that private Config, and, if fn
// returns nil and the encoded result differs from the file, replaces the file atomically and
// bumps the user generation before unlocking. An error from fn is returned wrapped, and
// nothing is written.
func (s *Store) Update(fn func(*Config) error) error {
	const what = "updating user config"
	return s.locked(what, func() error {
		c, raw, fid, err := readConfig(s.path)
		if err != nil {
			return fmt.Errorf("%s: refusing to overwrite: %w", what, err)
		}
		if err := fn(c); err != nil {
			return fmt.Errorf("%s %s: %w", what, s.path, err)
		}
		data, err := c.Encode()
		if err != nil {
			return fmt.Errorf("%s %s: %w", what, s.path, err)
		}
		if fid != (lockfile.FileID{}) && bytes.Equal(data, raw) {
			return nil // nothing changed: no write, no bump
		}
		return s.write(what, data)
	})
}

// Bootstrap creates user.cfg holding root@pam (comment Superuser, enable true, expire 0), as a
// PBS installation starts, if the file does not exist. When it exists, whatever it holds,
// Bootstrap does nothing.
func (s *Store) Bootstrap() error {
	const what = "bootstrapping user config"
	return s.locked(what, func() error {
		_, err := os.Lstat(s.path)
		if err == nil {
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s %s: %w", what, s.path, err)
		}
		data, err := sectionconfig.Encode([]sectionconfig.Section{{Type: typeUser, ID: Root, Props: []sectionconfig.Prop{
			{Key: keyComment, Value: RootComment},
			{Key: keyEnable, Value: "true"},
			{Key: keyExpire, Value: "0"},
		}}})
		if err != nil {
			return fmt.Errorf("%s %s: %w", what, s.path, err)
		}
		return s.write(what, data)
	})
}

// locked runs fn with the exclusive lock held.
func (s *Store) locked(what string, fn func() error) (err error) {
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

// write replaces the file with data and then bumps the user generation. Call it with the
// exclusive lock held.
func (s *Store) write(what string, data []byte) error {
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
	s.gen.Bump(shmem.User)
	return nil
}

// readOptions are the file rules of the package comment.
var readOptions = lockfile.ReadOptions{MaxSize: sectionconfig.MaxFileSize, Forbidden: 0o022}

// readConfig reads and parses user.cfg, returning the parse, the raw bytes and the identity
// of what was read. A missing file parses as empty (root@pam alone) with a zero FileID; a
// symbolic link, a non-regular file, a group- or world-writable one (ErrPermissions), an
// oversized or unparsable one (ErrSyntax) is an error that names the path. The identity is
// returned with those errors too, so that the caller can cache them per file version.
func readConfig(path string) (*Config, []byte, lockfile.FileID, error) {
	raw, fid, err := lockfile.ReadFile(path, readOptions)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c, err := Parse(nil)
		return c, nil, lockfile.FileID{}, err
	case errors.Is(err, lockfile.ErrNotRegular), errors.Is(err, lockfile.ErrPermissions):
		return nil, nil, fid, fmt.Errorf("reading user config %s: %w: %w", path, err, ErrPermissions)
	case errors.Is(err, lockfile.ErrTooLarge):
		return nil, nil, fid, fmt.Errorf("reading user config %s: %w: %w", path, err, ErrSyntax)
	case err != nil:
		return nil, nil, fid, fmt.Errorf("reading user config %s: %w", path, err)
	}
	c, err := Parse(raw)
	if err != nil {
		return nil, nil, fid, fmt.Errorf("parsing user config %s: %w", path, err)
	}
	return c, raw, fid, nil
}
