package acl

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

// ErrPermissions is wrapped when acl.cfg is not a regular file or is group- or world-writable.
var ErrPermissions = errors.New("acl config has unsafe permissions")

// Options configure a Store.
type Options struct {
	Path        string        // acl.cfg
	LockPath    string        // lock file; default "<dir of Path>/.acl.lck"
	Generations *shmem.Cache  // shared generation counters; required
	LockTimeout time.Duration // default lockfile.DefaultTimeout (10 s)
	Mode        os.FileMode   // mode of the written file; default 0640
	GID         int           // group of the written file (root:gatehouse); <= 0 leaves the process's group
}

// Store reads and writes one acl.cfg and caches its parse for this process, as users.Store
// does for user.cfg: the snapshot is valid while shmem.User is the generation read before the
// file was; Update locks, reads, changes, replaces atomically and bumps shmem.User.
type Store struct {
	path, lockPath string
	gen            *shmem.Cache
	lockTimeout    time.Duration
	mode           os.FileMode
	gid            int

	snap atomic.Pointer[snapshot] // nil: nothing cached

	// reload serialises the slow path of Config.
	reload sync.Mutex
}

// snapshot is the parse (or the refusal) of one file version at generation gen. Immutable.
type snapshot struct {
	gen uint64
	fid lockfile.FileID
	cfg *Config
	err error
}

// Open returns a Store for o.Path. It does not read the file.
func Open(o Options) (*Store, error) {
	if o.Path == "" {
		return nil, errors.New("opening acl config: no path given")
	}
	if o.Generations == nil {
		return nil, fmt.Errorf("opening acl config %s: no generation cache given", o.Path)
	}
	s := &Store{path: o.Path, lockPath: o.LockPath, gen: o.Generations, lockTimeout: o.LockTimeout, mode: o.Mode, gid: o.GID}
	if s.lockPath == "" {
		s.lockPath = filepath.Join(filepath.Dir(o.Path), ".acl.lck")
	}
	if s.lockTimeout <= 0 {
		s.lockTimeout = lockfile.DefaultTimeout
	}
	if s.mode == 0 {
		s.mode = 0o640
	}
	return s, nil
}

// Path returns the acl.cfg path.
func (s *Store) Path() string { return s.path }

// Config returns the current parse, shared and read-only. On the fast path (generation
// unchanged) it makes no system call and does not allocate.
func (s *Store) Config() (*Config, error) {
	g := s.gen.Load(shmem.User)
	if sn := s.snap.Load(); sn != nil && sn.gen == g {
		return sn.cfg, sn.err
	}
	s.reload.Lock()
	defer s.reload.Unlock()
	g = s.gen.Load(shmem.User)
	if sn := s.snap.Load(); sn != nil && sn.gen == g {
		return sn.cfg, sn.err
	}
	cfg, _, fid, err := readConfig(s.path)
	if err != nil && !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrPermissions) {
		return nil, err // not cached: it may be transient
	}
	s.snap.Store(&snapshot{gen: g, fid: fid, cfg: cfg, err: err})
	return cfg, err
}

// Admin reports whether id holds Admin on "/" with propagate 1 in the current config.
func (s *Store) Admin(id string) (bool, error) {
	c, err := s.Config()
	if err != nil {
		return false, err
	}
	return c.Admin(id), nil
}

// Forget drops the cached parse; the next Config reads the file again.
func (s *Store) Forget() { s.snap.Store(nil) }

// CheckFile drops the cached parse when acl.cfg is no longer the file it was read from (a
// manual edit, which bumps no generation).
func (s *Store) CheckFile() error {
	fid, err := lockfile.Stat(s.path)
	if err != nil {
		return fmt.Errorf("checking acl config %s: %w", s.path, err)
	}
	if sn := s.snap.Load(); sn != nil && sn.fid != fid {
		s.snap.CompareAndSwap(sn, nil)
	}
	return nil
}

// Watch calls CheckFile every interval (WatchInterval if <= 0) until ctx is done.
func (s *Store) Watch(ctx context.Context, interval time.Duration, report func(error)) {
	if interval <= 0 {
		interval = WatchInterval
	}
	lockfile.Poll(ctx, interval, s.CheckFile, report)
}

// Update changes acl.cfg: under the exclusive lock it reads and parses the file (refusing to
// overwrite one it cannot parse), calls fn on that private Config and, if fn returns nil and
// the canonical text differs from the file, replaces the file atomically and bumps shmem.User
// before unlocking. Once Update has returned, every Config that starts afterwards, in any
// process sharing the generation file, sees the change.
func (s *Store) Update(fn func(*Config) error) (err error) {
	const what = "updating acl config"
	lk, err := lockfile.Exclusive(s.lockPath, s.lockTimeout)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, s.path, err)
	}
	defer func() {
		if uerr := lk.Unlock(); uerr != nil && err == nil {
			err = fmt.Errorf("%s %s: %w", what, s.path, uerr)
		}
	}()
	c, raw, fid, err := readConfig(s.path)
	if err != nil {
		return fmt.Errorf("%s: refusing to overwrite: %w", what, err)
	}
	if err := fn(c); err != nil {
		return fmt.Errorf("%s %s: %w", what, s.path, err)
	}
	data := c.Encode()
	if fid != (lockfile.FileID{}) && bytes.Equal(data, raw) {
		return nil
	}
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

var readOptions = lockfile.ReadOptions{MaxSize: MaxFileSize, Forbidden: 0o022}

// readConfig reads and parses acl.cfg; a missing file is an empty list with a zero FileID.
func readConfig(path string) (*Config, []byte, lockfile.FileID, error) {
	raw, fid, err := lockfile.ReadFile(path, readOptions)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &Config{}, nil, lockfile.FileID{}, nil
	case errors.Is(err, lockfile.ErrNotRegular), errors.Is(err, lockfile.ErrPermissions):
		return nil, nil, fid, fmt.Errorf("reading acl config %s: %w: %w", path, err, ErrPermissions)
	case errors.Is(err, lockfile.ErrTooLarge):
		return nil, nil, fid, fmt.Errorf("reading acl config %s: %w: %w", path, err, ErrSyntax)
	case err != nil:
		return nil, nil, fid, fmt.Errorf("reading acl config %s: %w", path, err)
	}
	c, err := Parse(raw)
	if err != nil {
		return nil, nil, fid, fmt.Errorf("parsing acl config %s: %w", path, err)
	}
	return c, raw, fid, nil
}
