package tokenshadow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"gatehouse/authid"
)

// File limits.
const (
	MaxFileSize = 64 << 20 // token.shadow larger than this is refused (100 000 tokens are about 10 MB)
)

// Errors about the file itself. Each is wrapped with the path.
var (
	ErrCorrupt     = errors.New("token shadow is corrupt")
	ErrPermissions = errors.New("token shadow has unsafe permissions")
)

// fileID identifies one version of the file: a writer's rename changes the inode, an editor's
// in-place write changes size or times. The zero value means "no file".
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds
}

func idOf(fi fs.FileInfo) fileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	}
	return fileID{
		dev: uint64(st.Dev), ino: st.Ino, size: st.Size,
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(),
	}
}

// table is token.shadow parsed: token id -> crypt hash. Immutable once built.
type table struct {
	gen    uint64 // generation it was read at
	fid    fileID
	hashes map[string]string
}

// statFile returns the identity of the file at path, zero if it does not exist.
func statFile(path string) (fileID, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fileID{}, nil
	}
	if err != nil {
		return fileID{}, fmt.Errorf("checking token shadow %s: %w", path, err)
	}
	return idOf(fi), nil
}

// readTable reads and parses token.shadow. A missing file is an empty table; an empty, truncated,
// non-JSON, oversized, non-regular or group-writable/world-accessible file is an error.
func readTable(path string) (*table, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return &table{hashes: map[string]string{}}, nil
	}
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("opening token shadow %s: is a symbolic link: %w", path, ErrPermissions)
		}
		return nil, fmt.Errorf("opening token shadow %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading token shadow %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("reading token shadow %s: not a regular file (%s): %w", path, fi.Mode().Type(), ErrCorrupt)
	}
	if perm := fi.Mode().Perm(); perm&0o027 != 0 {
		return nil, fmt.Errorf("reading token shadow %s: mode %04o; want no group write and no access for others (0600 or 0640): %w", path, perm, ErrPermissions)
	}
	if fi.Size() > MaxFileSize {
		return nil, fmt.Errorf("reading token shadow %s: %d bytes, more than %d: %w", path, fi.Size(), MaxFileSize, ErrCorrupt)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading token shadow %s: %w", path, err)
	}
	hashes, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("parsing token shadow %s: %w", path, err)
	}
	return &table{fid: idOf(fi), hashes: hashes}, nil
}

// parse decodes PBS's token.shadow JSON object {"user@realm!name": "<crypt hash>", ...}.
// Every key must be a valid token id and every value a non-empty string.
func parse(data []byte) (map[string]string, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("file is empty (want a JSON object, {} for no tokens): %w", ErrCorrupt)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%d bytes, more than %d: %w", len(data), MaxFileSize, ErrCorrupt)
	}
	var m map[string]string
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("not a JSON object of strings: %v: %w", err, ErrCorrupt)
	}
	if m == nil {
		return nil, fmt.Errorf("null instead of a JSON object: %w", ErrCorrupt)
	}
	for id, h := range m {
		if _, err := authid.ParseToken(id); err != nil {
			return nil, fmt.Errorf("%v: %w", err, ErrCorrupt)
		}
		if h == "" {
			return nil, fmt.Errorf("token %s has an empty hash: %w", id, ErrCorrupt)
		}
	}
	return m, nil
}

// encode writes the table as PBS does: a pretty-printed JSON object, keys sorted.
func encode(m map[string]string) ([]byte, error) {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}
