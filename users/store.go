package users

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"gatehouse/cfgstore"
	"gatehouse/sectionconfig"
	"gatehouse/shmem"
)

// WatchInterval is the default poll interval of Watch.
const WatchInterval = cfgstore.WatchInterval

// Options configure a Store.
type Options struct {
	Path        string        // user.cfg
	LockPath    string        // lock file; default "<dir of Path>/.user.lck" (PBS: /etc/proxmox-backup/.user.lck)
	Generations *shmem.Cache  // shared generation counters; required
	LockTimeout time.Duration // default lockfile.DefaultTimeout (10 s)
	Mode        os.FileMode   // mode of the written file; default 0640
	GID         int           // group to chown the written file to (root:gatehouse); <= 0 leaves the process's group
}

// Store reads and writes one user.cfg and caches its parse for this process, following the
// user generation (package cfgstore: Config, Update, Forget, CheckFile, Watch, Path).
type Store struct {
	*cfgstore.Store[*Config]
}

// format is user.cfg for package cfgstore.
func format() cfgstore.Format[*Config] {
	return cfgstore.Format[*Config]{
		Name: "user config", Parse: Parse, Encode: (*Config).Encode,
		MaxSize: sectionconfig.MaxFileSize, Syntax: ErrSyntax, Permissions: ErrPermissions,
	}
}

// Open returns a Store for o.Path. It does not read the file: that happens on first use.
func Open(o Options) (*Store, error) {
	if o.LockPath == "" {
		o.LockPath = filepath.Join(filepath.Dir(o.Path), ".user.lck")
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

// Bootstrap creates user.cfg holding root@pam (comment Superuser, enable true, expire 0), as a
// PBS installation starts, if the file does not exist. When it exists, whatever it holds,
// Bootstrap does nothing.
func (s *Store) Bootstrap() error {
	const what = "bootstrapping user config"
	data, err := sectionconfig.Encode([]sectionconfig.Section{{Type: typeUser, ID: Root, Props: []sectionconfig.Prop{
		{Key: keyComment, Value: RootComment},
		{Key: keyEnable, Value: "true"},
		{Key: keyExpire, Value: "0"},
	}}})
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, s.Path(), err)
	}
	return s.Create(what, data)
}
