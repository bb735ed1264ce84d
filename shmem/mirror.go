package shmem

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// MirrorMode is the mirror file's mode: gatectl status (root, or apid's own user in the demo)
// reads it; nobody writes it but apid.
const MirrorMode = 0o640

// mirrorState is the owner's mirror file (see "The mirror"); guarded by Cache.mu.
type mirrorState struct {
	path     string
	gid      int
	f        *os.File // the file apid made and writes; nil until made
	dev, ino uint64
	written  [numCounters]uint64 // the values last written
}

// IsInvalid tells whether an error of ReadMirror (or Dial) means that what is there is not a
// valid page image ([ErrNotRegular], [ErrBadSize], [ErrBadMagic], [ErrBadVersion]), as opposed
// to missing or unreadable: the kind apid moves aside.
func IsInvalid(err error) bool {
	for _, e := range []error{ErrNotRegular, ErrBadSize, ErrBadMagic, ErrBadVersion} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// ReadMirror reads the mirror file at path (see "The mirror"): the counters as apid last wrote
// them, at most one health check behind its page. Nothing is mapped. It fails with an error
// wrapping [ErrNotRegular], [ErrBadSize], [ErrBadMagic] or [ErrBadVersion] (or the file
// system's, such as fs.ErrNotExist), naming the path and what was found.
func ReadMirror(path string) (map[Counter]uint64, error) {
	vals, err := readMirror(path)
	if err != nil {
		return nil, fmt.Errorf("reading config version mirror %s: %w", path, err)
	}
	out := map[Counter]uint64{}
	for k, v := range vals {
		out[Counter(k)] = v
	}
	return out, nil
}

func readMirror(path string) (vals [numCounters]uint64, err error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return vals, err
	}
	if !fi.Mode().IsRegular() {
		return vals, fmt.Errorf("is a %s: %w", describeMode(fi.Mode()), ErrNotRegular)
	}
	// O_NONBLOCK: never hang if a FIFO was swapped in after the lstat.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return vals, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return vals, err
	}
	if !st.Mode().IsRegular() {
		return vals, fmt.Errorf("is a %s: %w", describeMode(st.Mode()), ErrNotRegular)
	}
	if err := checkSize(st.Size()); err != nil {
		return vals, err
	}
	b := make([]byte, Size)
	if _, err := io.ReadFull(f, b); err != nil {
		return vals, err
	}
	return decode(b)
}

// decode checks a page image's header and returns its counters.
func decode(b []byte) (vals [numCounters]uint64, err error) {
	if err := checkHeader(b[:lineSize]); err != nil {
		return vals, err
	}
	for k := range vals {
		vals[k] = binary.NativeEndian.Uint64(b[Counter(k).offset():])
	}
	return vals, nil
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

// KeepMirror makes this process, the owner, keep the mirror file at path (group gid when
// >= 0): it writes the page's image there now and at every health check of Watch. Something
// invalid at the path is moved aside first ("<path>.corrupt-<unix time>"), and its new name
// returned.
func (c *Cache) KeepMirror(path string, gid int) (movedTo string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.current()
	if m == nil || m.ro == nil {
		return "", errors.New("keeping the config version mirror: this process does not own the page")
	}
	c.mirror = mirrorState{path: path, gid: gid}
	movedTo, err = c.remakeMirror(m)
	if err != nil {
		return movedTo, fmt.Errorf("keeping the config version mirror %s: %w", path, err)
	}
	return movedTo, nil
}

// remakeMirror writes a new mirror file with m's values, replacing a valid one at the path
// (the last apid's, say) and moving an invalid one aside first. c.mu is held.
func (c *Cache) remakeMirror(m *mapping) (movedTo string, err error) {
	ms := &c.mirror
	if ms.f != nil {
		ms.f.Close()
		ms.f = nil
	}
	switch _, err := readMirror(ms.path); {
	case IsInvalid(err):
		if movedTo, err = moveAside(ms.path, time.Now()); err != nil {
			return "", fmt.Errorf("moving it aside: %w", err)
		}
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return "", err
	}
	// The directory is apid's own (under --run-dir); it may have been removed too.
	if err := os.MkdirAll(filepath.Dir(ms.path), 0o755); err != nil {
		return movedTo, err
	}
	vals := m.raw()
	f, err := createMirror(ms.path, ms.gid, vals)
	if err != nil {
		return movedTo, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return movedTo, err
	}
	ms.f, ms.dev, ms.ino, ms.written = f, uint64(st.Dev), uint64(st.Ino), vals
	return movedTo, nil
}

// createMirror writes a new mirror file atomically (a temp file in the same directory, then
// rename) and returns it open for writing.
func createMirror(path string, gid int, vals [numCounters]uint64) (*os.File, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*os.File, error) {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	if _, err := f.Write(image(vals)); err != nil {
		return fail(err)
	}
	if gid >= 0 {
		if err := f.Chown(-1, gid); err != nil {
			return fail(err)
		}
	}
	if err := f.Chmod(MirrorMode); err != nil {
		return fail(err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fail(err)
	}
	return f, nil
}

// checkMirror is the owner's health check of the mirror: it reports what is wrong with the
// file at the path (removed, replaced, wrong size, bad header, counters someone else wrote),
// or nil. c.mu is held.
func (c *Cache) checkMirror() error {
	ms := &c.mirror
	var st unix.Stat_t
	if err := unix.Lstat(ms.path, &st); err != nil {
		return &fs.PathError{Op: "lstat", Path: ms.path, Err: err}
	}
	if ms.f == nil || uint64(st.Dev) != ms.dev || uint64(st.Ino) != ms.ino {
		return fmt.Errorf("path now names inode %d on device %#x, not the mirror written (inode %d): %w", st.Ino, st.Dev, ms.ino, ErrReplaced)
	}
	if err := checkSize(st.Size); err != nil {
		return err
	}
	b := make([]byte, Size)
	if _, err := ms.f.ReadAt(b, 0); err != nil {
		return err
	}
	vals, err := decode(b)
	if err != nil {
		return err
	}
	if vals != ms.written {
		return fmt.Errorf("counters %v, written %v: %w", vals, ms.written, ErrMirrorWritten)
	}
	return nil
}

// ErrMirrorWritten is reported when the mirror's counters are not what apid wrote there.
var ErrMirrorWritten = errors.New("counters written by someone else")

// writeMirror writes m's values to the mirror when they changed. c.mu is held.
func (c *Cache) writeMirror(m *mapping) error {
	ms := &c.mirror
	vals := m.raw()
	if vals == ms.written {
		return nil
	}
	if _, err := ms.f.WriteAt(image(vals), 0); err != nil {
		return fmt.Errorf("writing config version mirror %s: %w", ms.path, err)
	}
	ms.written = vals
	return nil
}

// moveAside renames path to "<path>.corrupt-<unix time>" (with "-2", "-3"... when that name
// is taken: an existing name is never replaced).
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
		return dst, nil
	}
}
