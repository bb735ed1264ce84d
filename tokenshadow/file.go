package tokenshadow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

	"gatehouse/authid"
	"gatehouse/lockfile"
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

// table is token.shadow parsed: token id -> crypt hash. Immutable once built.
type table struct {
	gen    uint64 // generation it was read at
	fid    lockfile.FileID
	hashes map[string]string
}

// readOptions are the file rules of the package comment.
var readOptions = lockfile.ReadOptions{MaxSize: MaxFileSize, Forbidden: 0o027}

// readTable reads and parses token.shadow. A missing file is an empty table; an empty, truncated,
// non-JSON, oversized, non-regular or group-writable/world-accessible file is an error, a
// *lockfile.VersionError naming the version read.
func readTable(path string) (*table, error) {
	data, fid, err := lockfile.ReadFile(path, readOptions)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &table{hashes: map[string]string{}}, nil
	case errors.Is(err, lockfile.ErrSymlink), errors.Is(err, lockfile.ErrPermissions):
		return nil, lockfile.Versioned(fid, fmt.Errorf("reading token shadow %s: %w: %w", path, err, ErrPermissions))
	case errors.Is(err, lockfile.ErrNotRegular), errors.Is(err, lockfile.ErrTooLarge):
		return nil, lockfile.Versioned(fid, fmt.Errorf("reading token shadow %s: %w: %w", path, err, ErrCorrupt))
	case err != nil:
		return nil, lockfile.Versioned(fid, fmt.Errorf("reading token shadow %s: %w", path, err))
	}
	hashes, err := parse(data)
	if err != nil {
		return nil, lockfile.Versioned(fid, fmt.Errorf("parsing token shadow %s: %w", path, err))
	}
	return &table{fid: fid, hashes: hashes}, nil
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
