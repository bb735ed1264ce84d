package acl

import (
	"errors"
	"os"
	"path/filepath"
	"time"

	"gatehouse/cfgstore"
	"gatehouse/shmem"
)

// WatchInterval is the default poll interval of Watch.
const WatchInterval = cfgstore.WatchInterval

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
// does for user.cfg (package cfgstore): the snapshot is valid while shmem.User is the
// generation read before the file was; Update locks, reads, changes, replaces atomically and
// bumps shmem.User. A missing file is an empty list.
type Store struct {
	*cfgstore.Store[*Config]
}

// format is acl.cfg for package cfgstore.
func format() cfgstore.Format[*Config] {
	return cfgstore.Format[*Config]{
		Name: "acl config", Parse: Parse, Encode: func(c *Config) ([]byte, error) { return c.Encode(), nil },
		MaxSize: MaxFileSize, Syntax: ErrSyntax, Permissions: ErrPermissions,
	}
}

// Open returns a Store for o.Path. It does not read the file.
func Open(o Options) (*Store, error) {
	if o.LockPath == "" {
		o.LockPath = filepath.Join(filepath.Dir(o.Path), ".acl.lck")
	}
	s, err := cfgstore.Open(cfgstore.Options{
		Path: o.Path, LockPath: o.LockPath, Generations: o.Generations, Counter: shmem.User,
		LockTimeout: o.LockTimeout, Mode: o.Mode, GID: o.GID,
	}, format())
	if err != nil {
		return nil, err
	}
	return &Store{s}, nil
}

// Admin reports whether id holds Admin on "/" with propagate 1 in the current config.
func (s *Store) Admin(id string) (bool, error) {
	c, err := s.Config()
	if err != nil {
		return false, err
	}
	return c.Admin(id), nil
}
