// Package revocation keeps the per-user ticket revocation times that let Gatehouse end
// sessions server-side, which PBS cannot do.
//
// # File
//
// revocations.json in the config directory: a JSON object {"<userid>": <unix seconds>, ...},
// mode 0640 root:gatehouse (apid writes it, proxyd reads it), at most 4 MiB. A missing file
// means nothing is revoked. A ticket of user u issued at second t is revoked when t <= the
// time recorded for u: logout and password change record "now" (or one second past the previous
// record, when that is not in the past), so every ticket issued so far stops working. A session that must survive (the one that changed
// the password) gets a new ticket stamped NotBefore(u), one second later; tickets may be
// stamped up to 300 s in the future (DESIGN.md), so this is always acceptable.
//
// The file is read with lockfile.ReadFile: a symbolic link, a non-regular file, one that group
// or others may write, a larger one or an invalid one is refused with ErrCorrupt.
//
// # Writers and readers
//
// Revoke takes the exclusive lock (lockfile, 10 s), removes the temp files a writer killed
// mid-replace left (lockfile.CleanTemps), rewrites the file atomically, bumps the
// user generation in the shared ConfigVersionCache and only then returns: a request that
// starts afterwards, in any process, sees the revocation. Readers keep the parsed file of one
// generation and re-read it only when the user generation moves; the check itself is a map
// lookup, with no allocation.
package revocation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync/atomic"
	"time"

	"gatehouse/authid"
	"gatehouse/lockfile"
	"gatehouse/shmem"
)

// MaxFileSize bounds revocations.json (about 50 000 users).
const MaxFileSize = 4 << 20

// ErrCorrupt is wrapped when the file cannot be used; writers then refuse to touch it.
var ErrCorrupt = errors.New("revocation file is corrupt")

// Options configure a Store.
type Options struct {
	Path        string        // revocations.json
	LockPath    string        // default "<dir>/.revocations.lck"
	Generations *shmem.Cache  // required
	LockTimeout time.Duration // default lockfile.DefaultTimeout
	GID         int           // group for the written file (gatehouse); <= 0 leaves it
}

// Store reads and writes revocations.json.
type Store struct {
	o   Options
	cur atomic.Pointer[snapshot]
}

type snapshot struct {
	gen   uint64
	times map[string]int64
}

// Open returns a Store; it reads nothing until first use.
func Open(o Options) (*Store, error) {
	if o.Path == "" || o.Generations == nil {
		return nil, errors.New("opening revocations: path and generation cache are required")
	}
	if o.LockPath == "" {
		o.LockPath = filepath.Join(filepath.Dir(o.Path), ".revocations.lck")
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = lockfile.DefaultTimeout
	}
	return &Store{o: o}, nil
}

// Path returns the revocations.json path.
func (s *Store) Path() string { return s.o.Path }

// Revoked reports whether a ticket of userid issued at issued is revoked.
func (s *Store) Revoked(userid string, issued time.Time) (bool, error) {
	sn, err := s.current()
	if err != nil {
		return false, err
	}
	t, ok := sn.times[userid]
	return ok && issued.Unix() <= t, nil
}

// Recorded reports whether the file holds a revocation time for userid: its tickets were
// revoked at least once (a logout, a password change, the user's deletion).
func (s *Store) Recorded(userid string) (bool, error) {
	sn, err := s.current()
	if err != nil {
		return false, err
	}
	_, ok := sn.times[userid]
	return ok, nil
}

// NotBefore returns the earliest time a new ticket of userid may be stamped with so that it is
// not revoked: one second after the revocation time, or now when that is later.
func (s *Store) NotBefore(userid string, now time.Time) (time.Time, error) {
	sn, err := s.current()
	if err != nil {
		return time.Time{}, err
	}
	if t, ok := sn.times[userid]; ok && now.Unix() <= t {
		return time.Unix(t+1, 0), nil
	}
	return now, nil
}

func (s *Store) current() (*snapshot, error) {
	g := s.o.Generations.Load(shmem.User)
	if sn := s.cur.Load(); sn != nil && sn.gen == g {
		return sn, nil
	}
	times, err := read(s.o.Path)
	if err != nil {
		return nil, err
	}
	sn := &snapshot{gen: g, times: times}
	if s.o.Generations.Load(shmem.User) == g {
		s.cur.Store(sn)
	}
	return sn, nil
}

// Revoke ends every ticket of userid issued so far: it records now as the revocation time, or,
// when the recorded time is now or later (a revocation earlier in this second), that time + 1 s,
// which covers the tickets NotBefore stamped. The time never moves backwards.
func (s *Store) Revoke(userid string, now time.Time) error {
	if _, err := authid.ParseUserid(userid); err != nil {
		return fmt.Errorf("revoking tickets: %w", err)
	}
	l, err := lockfile.Exclusive(s.o.LockPath, s.o.LockTimeout)
	if err != nil {
		return fmt.Errorf("revoking tickets of %s: %w", userid, err)
	}
	defer l.Unlock()
	times, err := read(s.o.Path)
	if err != nil {
		return fmt.Errorf("revoking tickets of %s: %w", userid, err)
	}
	// Tickets issued so far are stamped at most old+1 (NotBefore), so that is what must go too
	// when the last revocation is this second or later.
	if old, ok := times[userid]; ok && old >= now.Unix() {
		times[userid] = old + 1
	} else {
		times[userid] = now.Unix()
	}
	data, err := json.MarshalIndent(times, "", "  ")
	if err != nil {
		return fmt.Errorf("revoking tickets of %s: %w", userid, err)
	}
	opt := lockfile.DefaultOptions(0o640)
	if s.o.GID > 0 {
		opt.GID = s.o.GID
	}
	// A writer killed mid-replace leaves its temp file; nobody else would remove it.
	if err := lockfile.CleanTemps(filepath.Dir(s.o.Path), filepath.Base(s.o.Path)); err != nil {
		return fmt.Errorf("revoking tickets of %s: %w", userid, err)
	}
	if err := lockfile.Replace(s.o.Path, append(data, '\n'), opt); err != nil {
		return fmt.Errorf("revoking tickets of %s: %w", userid, err)
	}
	s.o.Generations.Bump(shmem.User)
	return nil
}

// readOptions are the file rules of the package comment.
var readOptions = lockfile.ReadOptions{MaxSize: MaxFileSize, Forbidden: 0o022}

// read parses the file; a missing file is an empty map. Errors are *lockfile.VersionError
// naming the version read.
func read(path string) (map[string]int64, error) {
	data, fid, err := lockfile.ReadFile(path, readOptions)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return map[string]int64{}, nil
	case errors.Is(err, lockfile.ErrNotRegular), errors.Is(err, lockfile.ErrPermissions),
		errors.Is(err, lockfile.ErrTooLarge):
		return nil, lockfile.Versioned(fid, fmt.Errorf("reading revocations %s: %w: %w", path, err, ErrCorrupt))
	case err != nil:
		return nil, lockfile.Versioned(fid, fmt.Errorf("reading revocations %s: %w", path, err))
	}
	m, err := parse(data)
	if err != nil {
		return nil, lockfile.Versioned(fid, fmt.Errorf("parsing revocations %s: %w", path, err))
	}
	return m, nil
}

// parse decodes {"userid": seconds}: every key a valid userid, every value a positive integer.
func parse(data []byte) (map[string]int64, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("more than %d bytes: %w", MaxFileSize, ErrCorrupt)
	}
	var m map[string]int64
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("not a JSON object of integers: %v: %w", err, ErrCorrupt)
	}
	if dec.More() {
		return nil, fmt.Errorf("data after the JSON object: %w", ErrCorrupt)
	}
	if m == nil {
		return nil, fmt.Errorf("null instead of an object: %w", ErrCorrupt)
	}
	for u, t := range m {
		if _, err := authid.ParseUserid(u); err != nil {
			return nil, fmt.Errorf("%v: %w", err, ErrCorrupt)
		}
		if t <= 0 {
			return nil, fmt.Errorf("user %s has time %d: %w", u, t, ErrCorrupt)
		}
	}
	return m, nil
}
