package lockfile

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestReadFile(t *testing.T) {
	const maxSize = 16
	writable := ReadOptions{MaxSize: maxSize, Forbidden: 0o022}
	private := ReadOptions{MaxSize: maxSize, Forbidden: 0o077}
	trusted := ReadOptions{MaxSize: maxSize, Forbidden: 0o077, TrustedOwner: true}
	file := func(content string, mode fs.FileMode) func(t *testing.T, dir string) string {
		return func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "config")
			writeFile(t, path, content, mode)
			return path
		}
	}
	symlink := func(target string) func(t *testing.T, dir string) string {
		return func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "config")
			if target != "" {
				target = filepath.Join(dir, target)
				writeFile(t, target, "real", 0o600)
			} else {
				target = filepath.Join(dir, "missing")
			}
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
			return path
		}
	}
	otherOwner := func(t *testing.T, dir string) string {
		if os.Geteuid() != 0 {
			t.Skip("only root can give a file to another user")
		}
		path := file("x", 0o600)(t, dir)
		if err := os.Chown(path, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string) string // returns the path to read
		o       ReadOptions
		want    error  // nil, or what the error wraps
		wantErr string // the exact error text, if not ""
		data    string // what is read, when want is nil
	}{
		{"regular 0640", file("hello", 0o640), writable, nil, "", "hello"},
		{"regular 0644", file("hello", 0o644), writable, nil, "", "hello"},
		{"regular 0600, private", file("hello", 0o600), private, nil, "", "hello"},
		{"regular 0400, private", file("hello", 0o400), private, nil, "", "hello"},
		{"own file, trusted owner", file("hello", 0o600), trusted, nil, "", "hello"},
		{"empty", file("", 0o600), writable, nil, "", ""},
		{"max size", file(strings.Repeat("x", maxSize), 0o600), writable, nil, "", strings.Repeat("x", maxSize)},
		{"missing", func(t *testing.T, dir string) string { return filepath.Join(dir, "config") }, writable,
			fs.ErrNotExist, "", ""},
		{"missing directory", func(t *testing.T, dir string) string { return filepath.Join(dir, "no", "config") }, writable,
			fs.ErrNotExist, "", ""},
		{"symlink", symlink("real"), writable, ErrSymlink, "is a symbolic link: not a regular file", ""},
		{"dangling symlink", symlink(""), writable, ErrSymlink, "is a symbolic link: not a regular file", ""},
		{"directory", func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "config")
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
			return path
		}, writable, ErrNotRegular, "is a directory: not a regular file", ""},
		{"fifo", func(t *testing.T, dir string) string { // and the open does not block
			path := filepath.Join(dir, "config")
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
			return path
		}, writable, ErrNotRegular, "is a named pipe (FIFO): not a regular file", ""},
		{"group writable", file("x", 0o660), writable, ErrPermissions,
			"mode 0660; must not be group- or world-writable (chmod 0640): unsafe permissions", ""},
		{"world writable", file("x", 0o646), writable, ErrPermissions,
			"mode 0646; must not be group- or world-writable (chmod 0644): unsafe permissions", ""},
		{"group readable, private", file("x", 0o640), private, ErrPermissions,
			"mode 0640; must not be group- or world-accessible (chmod 0600): unsafe permissions", ""},
		{"world readable, private", file("x", 0o604), private, ErrPermissions,
			"mode 0604; must not be group- or world-accessible (chmod 0600): unsafe permissions", ""},
		{"other owner, trusted owner", otherOwner, trusted, ErrPermissions,
			"owned by uid 65534; want root or uid 0: unsafe permissions", ""},
		{"other owner", otherOwner, private, nil, "", "x"},
		{"too large", file(strings.Repeat("x", maxSize+1), 0o600), writable, ErrTooLarge,
			"17 bytes, more than 16: file too large", ""},
		{"larger than its size", func(t *testing.T, dir string) string { // as if it grew after the fstat
			path := "/proc/self/status" // size 0, contents more than 16 bytes
			if _, err := os.Stat(path); err != nil {
				t.Skip(err)
			}
			return path
		}, writable, ErrTooLarge, "more than 16 bytes: file too large", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.setup(t, t.TempDir())
			data, id, err := ReadFile(path, tt.o)
			if tt.want == nil {
				if err != nil || string(data) != tt.data {
					t.Fatalf("ReadFile(%s) = %q, %v; want %q, nil", path, data, err, tt.data)
				}
			} else {
				if !errors.Is(err, tt.want) || data != nil {
					t.Fatalf("ReadFile(%s) = %q, %v; want nil, an error wrapping %v", path, data, err, tt.want)
				}
				if tt.wantErr != "" && err.Error() != tt.wantErr {
					t.Errorf("ReadFile(%s) error = %q; want %q", path, err, tt.wantErr)
				}
			}
			// The identity is that of what is at path (the link itself for a symbolic link),
			// refused or not, and zero when nothing is.
			want, serr := Stat(path)
			if serr != nil {
				t.Fatal(serr)
			}
			if strings.HasPrefix(path, "/proc/") {
				return // procfs may make a new inode for every lookup
			}
			if id != want {
				t.Errorf("ReadFile(%s) id = %+v; want Stat's %+v", path, id, want)
			}
			if (id == FileID{}) != errors.Is(tt.want, fs.ErrNotExist) {
				t.Errorf("ReadFile(%s) id = %+v, error %v; want zero exactly when missing", path, id, err)
			}
		})
	}
}

func TestReadFileUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads any file")
	}
	path := filepath.Join(t.TempDir(), "config")
	writeFile(t, path, "x", 0o000)
	if _, _, err := ReadFile(path, ReadOptions{MaxSize: 1}); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("ReadFile(mode 0000) = %v; want fs.ErrPermission", err)
	}
}

func TestReadFileInvalidOptions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	writeFile(t, path, "x", 0o600)
	for _, o := range []ReadOptions{
		{},
		{MaxSize: -1},
		{MaxSize: 1, Forbidden: 0o200},
		{MaxSize: 1, Forbidden: fs.ModeSetuid},
	} {
		data, _, err := ReadFile(path, o)
		if err == nil || !strings.HasPrefix(err.Error(), "invalid read options") {
			t.Errorf("ReadFile(%+v) = %q, %v; want an invalid options error", o, data, err)
		}
	}
}

// TestStat checks that a FileID changes with every kind of edit, and only then.
func TestStat(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config")
	stat := func() FileID {
		t.Helper()
		id, err := Stat(path)
		if err != nil {
			t.Fatalf("Stat(%s) = %v", path, err)
		}
		return id
	}
	if id := stat(); id != (FileID{}) {
		t.Fatalf("Stat(missing) = %+v; want the zero FileID", id)
	}
	writeFile(t, path, "one", 0o600)
	// Edits keep the size and, on a coarse clock, maybe the times: pin mtime to tell them apart.
	pin := time.Unix(1_000_000_000, 0)
	edits := []struct {
		name string
		edit func() error
	}{
		{"same size, other mtime", func() error {
			if err := os.WriteFile(path, []byte("two"), 0o600); err != nil {
				return err
			}
			return os.Chtimes(path, pin, pin)
		}},
		{"other size", func() error { return os.WriteFile(path, []byte("three"), 0o600) }},
		{"renamed over", func() error {
			writeFile(t, path+".tmp", "three", 0o600)
			return os.Rename(path+".tmp", path)
		}},
		{"removed", func() error { return os.Remove(path) }},
		{"symbolic link", func() error { return os.Symlink(filepath.Join(dir, "elsewhere"), path) }},
	}
	prev := stat()
	if prev == (FileID{}) {
		t.Fatal("Stat(file) = the zero FileID")
	}
	if again := stat(); again != prev {
		t.Errorf("Stat of an unchanged file = %+v, then %+v; want equal", prev, again)
	}
	for _, e := range edits {
		if err := e.edit(); err != nil {
			t.Fatalf("%s: %v", e.name, err)
		}
		id := stat()
		if id == prev {
			t.Errorf("Stat after %s = %+v; want a new FileID", e.name, id)
		}
		prev = id
	}

	writeFile(t, path+".plain", "x", 0o600)
	if id, err := Stat(filepath.Join(path+".plain", "below")); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("Stat below a regular file = %+v, %v; want ENOTDIR", id, err)
	}
}

func TestDescribePerm(t *testing.T) {
	tests := []struct {
		forbidden fs.FileMode
		want      string
	}{
		{0o022, "group- or world-writable"},
		{0o027, "group-writable or world-accessible"},
		{0o077, "group- or world-accessible"},
		{0o020, "group-writable"},
		{0o002, "world-writable"},
		{0o044, "group- or world-readable"},
		{0o070, "group-accessible"},
		{0o061, "group-readable/writable or world-executable"},
	}
	for _, tt := range tests {
		if got := describePerm(tt.forbidden); got != tt.want {
			t.Errorf("describePerm(%04o) = %q; want %q", tt.forbidden, got, tt.want)
		}
	}
}

func TestPollTicks(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	tick := make(chan time.Time)
	calls := 0
	check := func() error {
		calls++
		if calls%2 == 0 {
			return errors.New("check " + strconv.Itoa(calls))
		}
		return nil
	}
	var reported []string
	done := make(chan struct{})
	go func() {
		PollTicks(ctx, tick, check, func(err error) { reported = append(reported, err.Error()) })
		close(done)
	}()
	for range 4 {
		tick <- time.Time{}
	}
	tick <- time.Time{} // received only after the 4th check returned
	cancel()
	<-done
	if calls != 5 {
		t.Errorf("PollTicks called check %d times for 5 ticks", calls)
	}
	if want := "check 2,check 4"; strings.Join(reported, ",") != want {
		t.Errorf("PollTicks reported %q; want %q", reported, want)
	}

	// A nil report is allowed: the errors are dropped.
	ctx, cancel = context.WithCancel(context.Background())
	done = make(chan struct{})
	go func() {
		PollTicks(ctx, tick, func() error { return errors.New("dropped") }, nil)
		close(done)
	}()
	tick <- time.Time{}
	tick <- time.Time{}
	cancel()
	<-done
}

func TestPoll(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	checked := make(chan struct{})
	done := make(chan struct{})
	go func() {
		check := func() error {
			select {
			case checked <- struct{}{}:
			case <-ctx.Done():
			}
			return nil
		}
		Poll(ctx, time.Millisecond, check, nil)
		close(done)
	}()
	for range 3 {
		<-checked
	}
	cancel()
	<-done
}
