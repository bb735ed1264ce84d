package lockfile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"time"
)

// Errors of ReadFile, besides ErrNotRegular, fs.ErrNotExist and other I/O errors.
var (
	// ErrSymlink is returned when a symbolic link stands in place of the file. It wraps
	// ErrNotRegular.
	ErrSymlink = fmt.Errorf("is a symbolic link: %w", ErrNotRegular)
	// ErrPermissions is wrapped when the file has a forbidden permission bit or an untrusted
	// owner.
	ErrPermissions = errors.New("unsafe permissions")
	// ErrTooLarge is wrapped when the file is larger than allowed.
	ErrTooLarge = errors.New("file too large")
)

// ReadOptions say which files ReadFile accepts.
type ReadOptions struct {
	// MaxSize is the largest accepted size in bytes; it must be > 0.
	MaxSize int64
	// Forbidden holds the group and other permission bits that must all be clear, e.g. 0o022
	// (writable by the owner only) or 0o077 (accessible by the owner only). Only bits of 0o077.
	Forbidden fs.FileMode
	// TrustedOwner refuses a file owned by anyone but root or this process's effective uid.
	TrustedOwner bool
}

// FileID identifies one version of a file: a writer's rename changes the inode, an editor's
// in-place write changes size or times. FileIDs are comparable; the zero value means "no file".
type FileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds
}

func idOf(fi fs.FileInfo) FileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return FileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	}
	return FileID{
		dev: uint64(st.Dev), ino: st.Ino, size: st.Size,
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(),
	}
}

// VersionError is a refusal of one version of a file (unreadable, unsafe, unparsable): ID is
// the identity of what was read. A reader that keeps a refusal until the file changes returns
// it, so that a caller can tell a version already reported from a new one (proxyd logs a
// broken config file once per version).
type VersionError struct {
	ID  FileID
	Err error
}

func (e *VersionError) Error() string { return e.Err.Error() }
func (e *VersionError) Unwrap() error { return e.Err }

// Versioned returns err as a *VersionError of id; nil for nil.
func Versioned(id FileID, err error) error {
	if err == nil {
		return nil
	}
	return &VersionError{ID: id, Err: err}
}

// Stat returns the identity of what is at path (not following a symbolic link), the zero
// FileID if nothing is.
func Stat(path string) (FileID, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return FileID{}, nil
	}
	if err != nil {
		return FileID{}, err
	}
	return idOf(fi), nil
}

// ReadFile reads the config file at path, refusing what the package comment lists. It also
// returns the identity of what it found, with a refusal too (so that a caller can keep the
// refusal until the file changes); the identity is zero when nothing was found or it could
// not be examined. A missing file is an error wrapping fs.ErrNotExist. Errors do not repeat
// path (those of the os package do): wrap them, as in "reading token shadow %s: %w".
func ReadFile(path string, o ReadOptions) ([]byte, FileID, error) {
	if o.MaxSize <= 0 || o.Forbidden&^0o077 != 0 {
		return nil, FileID{}, fmt.Errorf("invalid read options: max size %d, forbidden bits %#o; "+
			"want a size > 0 and bits of 0077", o.MaxSize, uint32(o.Forbidden))
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errors.Is(err, syscall.ELOOP) { // O_NOFOLLOW and a symbolic link
		id, _ := Stat(path)
		return nil, id, ErrSymlink
	}
	if err != nil {
		return nil, FileID{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, FileID{}, err
	}
	id := idOf(fi)
	if !fi.Mode().IsRegular() {
		return nil, id, fmt.Errorf("is %s: %w", describe(fi.Mode()), ErrNotRegular)
	}
	if perm := fi.Mode().Perm(); perm&o.Forbidden != 0 {
		return nil, id, fmt.Errorf("mode %04o; must not be %s (chmod %04o): %w",
			uint32(perm), describePerm(o.Forbidden), uint32(perm&^o.Forbidden), ErrPermissions)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); o.TrustedOwner && ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return nil, id, fmt.Errorf("owned by uid %d; want root or uid %d: %w", st.Uid, os.Geteuid(), ErrPermissions)
	}
	if fi.Size() > o.MaxSize {
		return nil, id, fmt.Errorf("%d bytes, more than %d: %w", fi.Size(), o.MaxSize, ErrTooLarge)
	}
	data, err := io.ReadAll(io.LimitReader(f, o.MaxSize+1))
	if err != nil {
		return nil, id, err
	}
	if int64(len(data)) > o.MaxSize { // it grew since the fstat
		return nil, id, fmt.Errorf("more than %d bytes: %w", o.MaxSize, ErrTooLarge)
	}
	return data, id, nil
}

// describePerm names what forbidden (bits of 0o077) denies, e.g. "group- or world-writable".
func describePerm(forbidden fs.FileMode) string {
	g, o := describeAccess(forbidden>>3&7), describeAccess(forbidden&7)
	switch {
	case g == o:
		return "group- or world-" + g
	case o == "":
		return "group-" + g
	case g == "":
		return "world-" + o
	}
	return "group-" + g + " or world-" + o
}

// describeAccess names the access that rwx bits (0..7) give, e.g. "readable/writable".
func describeAccess(rwx fs.FileMode) string {
	if rwx == 7 {
		return "accessible"
	}
	var names []string
	for i, name := range []string{"readable", "writable", "executable"} {
		if rwx&(4>>i) != 0 {
			names = append(names, name)
		}
	}
	return strings.Join(names, "/")
}

// Poll calls check every interval (> 0) until ctx is done, passing its errors to report (which
// may be nil); they do not stop the polling.
func Poll(ctx context.Context, interval time.Duration, check func() error, report func(error)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	PollTicks(ctx, tick.C, check, report)
}

// PollTicks is Poll with the ticks injected: it calls check on every value received from tick.
func PollTicks(ctx context.Context, tick <-chan time.Time, check func() error, report func(error)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			if err := check(); err != nil && report != nil {
				report(err)
			}
		}
	}
}
