package lockfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// listDir returns the sorted names in dir.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

func writeFile(t *testing.T, path, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// checkFile checks path's content and permission bits.
func checkFile(t *testing.T, path, content string, mode fs.FileMode) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("ReadFile(%s) = %v", path, err)
	}
	if string(got) != content {
		t.Errorf("ReadFile(%s) = %q; want %q", path, got, content)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != mode {
		t.Errorf("Lstat(%s).Mode() = %v; want %v", path, fi.Mode(), mode)
	}
}

func TestReplace(t *testing.T) {
	tests := []struct {
		name    string
		old     string // "" means no old file
		oldMode fs.FileMode
		data    string
		mode    fs.FileMode
	}{
		{"new 0600", "", 0, "secret\n", 0o600},
		{"new 0640", "", 0, "user: root@pam\n", 0o640},
		{"new empty", "", 0, "", 0o600},
		{"replace 0644 by 0600", "old contents, longer than new\n", 0o644, "new\n", 0o600},
		{"replace 0600 by 0640", "old\n", 0o600, "new contents, longer than old\n", 0o640},
		{"replace 0000 by 0600", "old\n", 0, "new\n", 0o600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "token.shadow")
			if tt.old != "" {
				writeFile(t, path, tt.old, tt.oldMode)
			}
			if err := Replace(path, []byte(tt.data), DefaultOptions(tt.mode)); err != nil {
				t.Fatalf("Replace(%s, %q, %v) = %v; want nil", path, tt.data, tt.mode, err)
			}
			checkFile(t, path, tt.data, tt.mode)
			if got, want := listDir(t, dir), []string{"token.shadow"}; !slices.Equal(got, want) {
				t.Errorf("dir after Replace = %q; want %q", got, want)
			}
		})
	}
}

func TestReplaceRelativePath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := Replace("user.cfg", []byte("x"), DefaultOptions(0o640)); err != nil {
		t.Fatalf("Replace(user.cfg) = %v; want nil", err)
	}
	checkFile(t, filepath.Join(dir, "user.cfg"), "x", 0o640)
}

func TestReplaceRefusesNonRegular(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, path string)
		want  string
	}{
		{"symlink to file", func(t *testing.T, path string) {
			real := filepath.Join(filepath.Dir(path), "real")
			writeFile(t, real, "real contents", 0o600)
			if err := os.Symlink(real, path); err != nil {
				t.Fatal(err)
			}
		}, "a symbolic link"},
		{"dangling symlink", func(t *testing.T, path string) {
			if err := os.Symlink(filepath.Join(filepath.Dir(path), "missing"), path); err != nil {
				t.Fatal(err)
			}
		}, "a symbolic link"},
		{"directory", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(path, "inner"), "inner", 0o600)
		}, "a directory"},
		{"fifo", func(t *testing.T, path string) {
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "a named pipe (FIFO)"},
		{"character device", func(t *testing.T, path string) {
			// /dev/null: major 1, minor 3.
			if err := syscall.Mknod(path, syscall.S_IFCHR|0o600, 1<<8|3); err != nil {
				t.Skipf("cannot create a device node here: %v", err)
			}
		}, "a character device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "tfa.json")
			tt.setup(t, path)
			before, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			namesBefore := listDir(t, dir)

			err = Replace(path, []byte("new"), DefaultOptions(0o600))
			if !errors.Is(err, ErrNotRegular) {
				t.Fatalf("Replace(%s) = %v; want error wrapping ErrNotRegular", path, err)
			}
			if want := "replacing " + path + ": target is " + tt.want + ": not a regular file"; err.Error() != want {
				t.Errorf("Replace(%s) = %q; want %q", path, err, want)
			}
			after, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if after.Mode() != before.Mode() || !os.SameFile(before, after) {
				t.Errorf("Lstat(%s) after Replace = %v; want unchanged %v", path, after.Mode(), before.Mode())
			}
			if got := listDir(t, dir); !slices.Equal(got, namesBefore) {
				t.Errorf("dir after Replace = %q; want %q", got, namesBefore)
			}
			if real := filepath.Join(dir, "real"); tt.name == "symlink to file" {
				checkFile(t, real, "real contents", 0o600)
			}
		})
	}
}

func TestReplaceErrors(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "shadow.json")
	tests := []struct {
		name   string
		path   string
		opt    Options
		wantIs error
		want   string // substring of the error
	}{
		{"missing parent dir", filepath.Join(dir, "nope", "x.json"), DefaultOptions(0o600), fs.ErrNotExist, "creating temp file"},
		{"zero Options", old, Options{}, nil, "invalid mode 0"},
		{"mode with setuid", old, DefaultOptions(0o4755), nil, "invalid mode"},
		{"mode with type bits", old, DefaultOptions(fs.ModeDir | 0o700), nil, "invalid mode"},
		{"uid below -1", old, Options{Mode: 0o600, UID: -2, GID: -1}, nil, "invalid owner -2:-1"},
		{"gid below -1", old, Options{Mode: 0o600, UID: -1, GID: -7}, nil, "invalid owner -1:-7"},
		{"empty path", "", DefaultOptions(0o600), nil, "empty file name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeFile(t, old, "old", 0o600)
			err := Replace(tt.path, []byte("new"), tt.opt)
			if err == nil {
				t.Fatalf("Replace(%q, %+v) = nil; want error", tt.path, tt.opt)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Replace(%q, %+v) = %v; want error wrapping %v", tt.path, tt.opt, err, tt.wantIs)
			}
			if want := "replacing " + tt.path + ": "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("Replace(%q, %+v) = %q; want prefix %q", tt.path, tt.opt, err, want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Replace(%q, %+v) = %q; want it to contain %q", tt.path, tt.opt, err, tt.want)
			}
			checkFile(t, old, "old", 0o600)
			if got, want := listDir(t, dir), []string{"shadow.json"}; !slices.Equal(got, want) {
				t.Errorf("dir after Replace = %q; want %q", got, want)
			}
		})
	}
}

func TestReplaceOwner(t *testing.T) {
	uid, gid := os.Getuid(), os.Getgid()
	root := uid == 0
	tests := []struct {
		name             string
		uid, gid         int
		wantUID, wantGID int
		needRoot         bool
	}{
		{"leave as created", -1, -1, uid, gid, false},
		{"current uid and gid", uid, gid, uid, gid, false},
		{"current gid only", -1, gid, uid, gid, false},
		{"nobody", 65534, 65534, 65534, 65534, true},
		{"uid only", 65534, -1, 65534, gid, true},
		{"gid only", -1, 65534, uid, 65534, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needRoot && !root {
				t.Skip("chown to another user needs root")
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "token.shadow")
			writeFile(t, path, "old", 0o600)
			opt := Options{Mode: 0o640, UID: tt.uid, GID: tt.gid}
			if err := Replace(path, []byte("new"), opt); err != nil {
				t.Fatalf("Replace(%s, %+v) = %v; want nil", path, opt, err)
			}
			checkFile(t, path, "new", 0o640)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if int(st.Uid) != tt.wantUID || int(st.Gid) != tt.wantGID {
				t.Errorf("owner after Replace(%s, %+v) = %d:%d; want %d:%d", path, opt, st.Uid, st.Gid, tt.wantUID, tt.wantGID)
			}
		})
	}
}

// TestReplaceChownFailure checks that a failed chown (as a non-root user)
// leaves the old file and no temp file.
func TestReplaceChownFailure(t *testing.T) {
	if os.Getuid() == 0 {
		t.Skip("root may chown to anyone")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "token.shadow")
	writeFile(t, path, "old", 0o600)
	opt := Options{Mode: 0o600, UID: 0, GID: -1} // UID 0 is root, not "leave as is"
	err := Replace(path, []byte("new"), opt)
	if !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("Replace(%s, %+v) = %v; want permission error", path, opt, err)
	}
	checkFile(t, path, "old", 0o600)
	if got, want := listDir(t, dir), []string{"token.shadow"}; !slices.Equal(got, want) {
		t.Errorf("dir after failed Replace = %q; want %q", got, want)
	}
}

// TestReplaceReadOnlyDir checks that Replace in a directory it cannot write
// fails and leaves the old file. Root ignores directory permissions; the
// write failure as root is covered by TestReplaceWriteFailure.
func TestReplaceReadOnlyDir(t *testing.T) {
	if os.Getuid() == 0 {
		t.Skip("root ignores directory permissions")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "user.cfg")
	writeFile(t, path, "old", 0o640)
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	err := Replace(path, []byte("new"), DefaultOptions(0o640))
	if !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("Replace(%s) in read-only dir = %v; want permission error", path, err)
	}
	if want := "replacing " + path + ": creating temp file"; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Replace(%s) in read-only dir = %q; want prefix %q", path, err, want)
	}
	checkFile(t, path, "old", 0o640)
	if got, want := listDir(t, dir), []string{"user.cfg"}; !slices.Equal(got, want) {
		t.Errorf("dir after failed Replace = %q; want %q", got, want)
	}
}

func TestDefaultOptions(t *testing.T) {
	got := DefaultOptions(0o640)
	if want := (Options{Mode: 0o640, UID: -1, GID: -1}); got != want {
		t.Errorf("DefaultOptions(0640) = %+v; want %+v", got, want)
	}
}

func TestCleanTemps(t *testing.T) {
	dir := t.TempDir()
	files := []string{
		"token.shadow",
		".token.shadow.tmp-123456",
		".token.shadow.tmp-abc",
		".token.shadow.tmp-", // pattern's * may match nothing
		".user.cfg.tmp-99",   // another target's temp: kept
		"token.shadow.tmp-1", // no leading dot: kept
		".token.shadow.lck",  // kept
	}
	for _, f := range files {
		writeFile(t, filepath.Join(dir, f), f, 0o600)
	}
	if err := os.Symlink("nowhere", filepath.Join(dir, ".token.shadow.tmp-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, ".token.shadow.tmp-dir"), 0o700); err != nil {
		t.Fatal(err)
	}

	if err := CleanTemps(dir, "token.shadow"); err != nil {
		t.Fatalf("CleanTemps(%s, token.shadow) = %v; want nil", dir, err)
	}
	want := []string{".token.shadow.lck", ".token.shadow.tmp-dir", ".user.cfg.tmp-99", "token.shadow", "token.shadow.tmp-1"}
	if got := listDir(t, dir); !slices.Equal(got, want) {
		t.Errorf("dir after CleanTemps = %q; want %q", got, want)
	}
	checkFile(t, filepath.Join(dir, "token.shadow"), "token.shadow", 0o600)

	// Nothing left to clean, and a missing directory, are not errors.
	for _, d := range []string{dir, filepath.Join(dir, "missing")} {
		if err := CleanTemps(d, "token.shadow"); err != nil {
			t.Errorf("CleanTemps(%s, token.shadow) = %v; want nil", d, err)
		}
	}
}

func TestCleanTempsInvalidBase(t *testing.T) {
	dir := t.TempDir()
	for _, base := range []string{"", ".", "..", "a/b", "/etc"} {
		err := CleanTemps(dir, base)
		if err == nil || !strings.Contains(err.Error(), "invalid base name") {
			t.Errorf("CleanTemps(%s, %q) = %v; want invalid base name error", dir, base, err)
		}
	}
}

// TestReplaceLeavesNoTempAfterManyWrites replaces one file many times and
// checks each result.
func TestReplaceLeavesNoTempAfterManyWrites(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tfa.json")
	for i := range 10 {
		data := bytes.Repeat([]byte{byte('a' + i)}, 1000*(i+1))
		if err := Replace(path, data, DefaultOptions(0o600)); err != nil {
			t.Fatalf("Replace #%d = %v; want nil", i, err)
		}
		checkFile(t, path, string(data), 0o600)
	}
	if got, want := listDir(t, dir), []string{"tfa.json"}; !slices.Equal(got, want) {
		t.Errorf("dir after Replace = %q; want %q", got, want)
	}
}
