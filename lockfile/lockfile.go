// Package lockfile provides the primitives behind every Gatehouse config
// file: advisory locks on lock files, atomic replacement of a file's
// contents, and safe reading of a file that others could have tampered
// with, with the file identities that tell a cache the file changed.
//
// # Locks
//
// [Exclusive] and [Shared] take a flock(2) lock on a lock file (for
// example /run/gatehouse/.token.lck), waiting at most the given timeout
// ([DefaultTimeout] is 10s). While waiting, the lock is retried every 5ms
// without blocking in the kernel, so a waiter never outlives its timeout.
// When the wait runs out the error wraps [ErrTimeout] and names the lock
// kind, the file and the wait, e.g.
//
//	taking exclusive lock /run/gatehouse/.token.lck: timeout after 10s waiting for lock: lock timeout
//
// A timeout of zero or less means a single attempt without waiting.
//
// Invariants:
//   - The lock file is created with mode 0600 if missing; its parent
//     directory must already exist. It is opened with O_NOFOLLOW, so a
//     symbolic link in its place is an error, never followed.
//   - Lock files are never removed (removing one while it is held would let
//     a second locker lock a new inode); their contents are never used.
//   - Every [Lock] owns its own open file description, so two locks on the
//     same path exclude each other even inside one process, and the kernel
//     releases a lock when its process dies, however it dies (kill -9
//     included): there are no stale locks.
//   - Any number of shared locks coexist; an exclusive lock excludes every
//     other lock. A [Lock] is taken once and released once; [Lock.Unlock] on
//     a released lock returns nil.
//
// # Atomic replacement
//
// [Replace] writes a whole new file and then renames it over the old one, so
// a reader (in any process) sees either the complete old contents or the
// complete new contents, and so does the file system after a crash or power
// loss. The steps:
//
//  1. lstat the target: if it exists and is not a regular file (symbolic
//     link, directory, named pipe, socket, device) refuse, wrapping
//     [ErrNotRegular] and saying what was found;
//  2. create a temp file ".<base>.tmp-<random>" in the target's directory
//     (os.CreateTemp: O_EXCL, mode 0600 while it is being written);
//  3. write the data;
//  4. fchown to [Options].UID/GID when either is >= 0;
//  5. fchmod to [Options].Mode (exact: the umask does not apply);
//  6. fsync the temp file (data and the owner and mode just set);
//  7. close it;
//  8. rename it over the target;
//  9. fsync the directory, so that the rename itself is durable.
//
// [Options]: Mode is permission bits only, never 0 (0600 for files only apid
// reads, 0640 root:gatehouse for files proxyd reads); UID or GID -1 leaves
// that part of the owner as created, 0 means root. The zero Options is
// therefore invalid; start from [DefaultOptions] (UID and GID -1).
//
// Owner and mode are set before the fsync so that they are durable with the
// data; fchown comes before fchmod so that no chown rule can clear the bits.
//
// An error in steps 1-8 removes the temp file and leaves the target as it
// was. An error in step 9 means the new contents are in place but their
// durability across a power loss is unknown; the error says so.
//
// Replace does not serialise writers: callers hold the file's exclusive lock
// around read-modify-Replace. A process killed (e.g. by SIGKILL) between
// steps 2 and 8 leaves its temp file behind; the target is still whole.
// [CleanTemps] removes such leftovers and must be called with the exclusive
// lock held, so that it cannot remove a temp file another writer is still
// filling. Replacing a name breaks hard links: other names keep the old
// contents.
//
// # Reading
//
// [ReadFile] reads a whole config file, with the checks made on the opened
// file (fstat), so that they hold for the bytes read. It refuses:
//   - a symbolic link in the file's place ([ErrSymlink], which wraps
//     [ErrNotRegular]): the file is opened with O_NOFOLLOW, never followed;
//   - anything but a regular file, e.g. a directory, named pipe, socket or
//     device ([ErrNotRegular], saying what was found); O_NONBLOCK makes
//     opening a named pipe return at once;
//   - a file with a permission bit of [ReadOptions].Forbidden set, e.g. 0o022
//     for files only their owner may write or 0o077 for password hashes, and,
//     with TrustedOwner, a file owned by neither root nor the process's
//     effective uid ([ErrPermissions]);
//   - a file larger than [ReadOptions].MaxSize ([ErrTooLarge]), checked before
//     reading and again after: at most MaxSize+1 bytes are ever read.
//
// A missing file is an error wrapping fs.ErrNotExist (callers read it as
// empty). Callers wrap the error with the file's role and path and with
// their own sentinel, e.g.
//
//	reading token shadow /etc/gatehouse/token.shadow: mode 0644; must not be group-writable or world-accessible (chmod 0640): unsafe permissions: token shadow has unsafe permissions
//
// [ReadFile] and [Stat] also return the file's [FileID]: device, inode,
// size, mtime and ctime, so that a replacement (new inode) and an in-place
// edit (size or times) both change it. A cache keeps the FileID of what it
// parsed and drops the parse when [Stat] tells another; [Poll] runs such a
// check every interval (users and tokenshadow: 250 ms), so that manual
// edits, which bump no generation, take effect.
package lockfile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gofrs/flock"
)

// DefaultTimeout is how long callers normally wait for a lock.
const DefaultTimeout = 10 * time.Second

// retryDelay is the pause between two non-blocking lock attempts.
const retryDelay = 5 * time.Millisecond

// lockFileMode is the mode of a lock file created by Exclusive or Shared.
const lockFileMode fs.FileMode = 0o600

// ErrTimeout is wrapped by the error Exclusive and Shared return when the
// lock was not free within the timeout.
var ErrTimeout = errors.New("lock timeout")

// ErrNotRegular is wrapped by the error Replace returns when the target
// exists and is not a regular file, and by the error ReadFile returns when
// the file is not one.
var ErrNotRegular = errors.New("not a regular file")

// Lock is a held flock on a lock file.
type Lock struct {
	path string
	kind string // "exclusive" or "shared"
	fl   *flock.Flock
}

// Exclusive takes an exclusive flock on path (created 0600 if missing,
// parent dir must exist) waiting at most timeout.
func Exclusive(path string, timeout time.Duration) (*Lock, error) {
	return take(path, "exclusive", timeout)
}

// Shared takes a shared flock on path, with the same rules as Exclusive.
func Shared(path string, timeout time.Duration) (*Lock, error) {
	return take(path, "shared", timeout)
}

func take(path, kind string, timeout time.Duration) (*Lock, error) {
	fl := flock.New(path,
		flock.SetFlag(os.O_CREATE|os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC),
		flock.SetPermissions(lockFileMode))
	try, tryCtx := fl.TryLock, fl.TryLockContext
	if kind == "shared" {
		try, tryCtx = fl.TryRLock, fl.TryRLockContext
	}

	var ok bool
	var err error
	if timeout <= 0 {
		ok, err = try()
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		ok, err = tryCtx(ctx, retryDelay)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			ok, err = false, nil
		}
	}
	if err != nil {
		// flock closes its descriptor itself when no lock is held.
		return nil, fmt.Errorf("taking %s lock %s: %w", kind, path, err)
	}
	if !ok {
		return nil, fmt.Errorf("taking %s lock %s: timeout after %v waiting for lock: %w",
			kind, path, max(timeout, 0), ErrTimeout)
	}
	return &Lock{path: path, kind: kind, fl: fl}, nil
}

// Unlock releases the lock and closes its file descriptor. Calling it again,
// or on a nil *Lock, returns nil.
func (l *Lock) Unlock() error {
	if l == nil {
		return nil
	}
	// flock.Unlock is a no-op returning nil when nothing is held.
	if err := l.fl.Unlock(); err != nil {
		return fmt.Errorf("releasing %s lock %s: %w", l.kind, l.path, err)
	}
	return nil
}

// Path returns the lock file's path as given to Exclusive or Shared.
func (l *Lock) Path() string { return l.path }

// Options for Replace.
//
// The zero value is not valid: Mode 0 is rejected, and UID/GID 0 mean
// "chown to root". Start from [DefaultOptions], which leaves the owner as
// created (the caller's uid and gid).
type Options struct {
	// Mode holds the permission bits of the new file, e.g. 0600 or 0640.
	// Only permission bits (0777) are allowed, and not 0.
	Mode os.FileMode
	// UID and GID are the owner to chown the new file to; -1 leaves that
	// part as created. fchown(2) semantics: either may be -1 alone.
	UID, GID int
}

// DefaultOptions returns Options with the given mode and UID, GID = -1.
func DefaultOptions(mode os.FileMode) Options {
	return Options{Mode: mode, UID: -1, GID: -1}
}

// Replace atomically replaces path with data; see the package comment for
// the steps and guarantees. Errors read "replacing <path>: ...".
func Replace(path string, data []byte, opt Options) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("replacing %s: %w", path, err)
		}
	}()
	if opt.Mode == 0 || opt.Mode&^fs.ModePerm != 0 {
		return fmt.Errorf("invalid mode %#o: want permission bits only, not 0", uint32(opt.Mode))
	}
	if opt.UID < -1 || opt.GID < -1 {
		return fmt.Errorf("invalid owner %d:%d: want ids >= 0, or -1 to leave as created", opt.UID, opt.GID)
	}

	fi, err := os.Lstat(path)
	switch {
	case err == nil && !fi.Mode().IsRegular():
		return fmt.Errorf("target is %s: %w", describe(fi.Mode()), ErrNotRegular)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("checking target: %w", err)
	}

	dir, base := filepath.Split(path)
	if base == "" {
		return errors.New("empty file name")
	}
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, tempPrefix(base)+"*")
	if err != nil {
		return fmt.Errorf("creating temp file: %w", err)
	}
	tmp := f.Name()
	closed, renamed := false, false
	defer func() {
		if err == nil || renamed {
			return
		}
		if !closed {
			_ = f.Close()
		}
		_ = os.Remove(tmp)
	}()

	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing temp file %s: %w", tmp, err)
	}
	if opt.UID >= 0 || opt.GID >= 0 {
		if err := f.Chown(opt.UID, opt.GID); err != nil {
			return fmt.Errorf("changing owner of temp file %s to %d:%d: %w", tmp, opt.UID, opt.GID, err)
		}
	}
	if err := f.Chmod(opt.Mode); err != nil {
		return fmt.Errorf("changing mode of temp file %s to %#o: %w", tmp, uint32(opt.Mode), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing temp file %s: %w", tmp, err)
	}
	closed = true
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing temp file %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming temp file %s: %w", tmp, err)
	}
	renamed = true
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("new contents in place, but not durable: %w", err)
	}
	return nil
}

// syncDir fsyncs directory dir, making renames in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening directory %s: %w", dir, err)
	}
	serr := d.Sync()
	cerr := d.Close()
	if serr != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, serr)
	}
	if cerr != nil {
		return fmt.Errorf("closing directory %s: %w", dir, cerr)
	}
	return nil
}

// tempPrefix is the name prefix of Replace's temp files for a target named
// base: ".<base>.tmp-".
func tempPrefix(base string) string { return "." + base + ".tmp-" }

// describe names a non-regular file type for an error message.
func describe(m fs.FileMode) string {
	switch t := m.Type(); {
	case t&fs.ModeSymlink != 0:
		return "a symbolic link"
	case t&fs.ModeDir != 0:
		return "a directory"
	case t&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case t&fs.ModeSocket != 0:
		return "a socket"
	case t&fs.ModeCharDevice != 0:
		return "a character device"
	case t&fs.ModeDevice != 0:
		return "a block device"
	default:
		return fmt.Sprintf("a non-regular file (type %v)", t)
	}
}

// CleanTemps removes the temp files that Replace leaves in dir for a target
// named base (".<base>.tmp-*") when a writer dies mid-replace. Call it with
// the target's exclusive lock held: a temp file of a live writer is not
// distinguishable from a stale one. Directories matching the pattern are
// left alone. A missing dir is not an error. The match is by prefix, so
// a sibling target literally named "<base>.tmp-<x>" would lose its temp
// files too; do not name config files that way.
func CleanTemps(dir, base string) error {
	if base == "" || base == "." || base == ".." || strings.ContainsRune(base, filepath.Separator) {
		return fmt.Errorf("cleaning temp files in %s: invalid base name %q", dir, base)
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cleaning temp files in %s: %w", dir, err)
	}
	prefix := tempPrefix(base)
	var errs []error
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) || e.IsDir() {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleaning temp files in %s: %w", dir, err)
	}
	return nil
}
