package realm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"time"
	"unicode/utf8"

	"gatehouse/authid"
	"gatehouse/crypthash"
	"gatehouse/lockfile"
)

// Limits of shadow.json.
const (
	MaxFileSize = 16 << 20 // larger files are refused (100 000 users take about 8 MB)
	FileMode    = 0o600    // mode of the written file; group and other bits are refused on read
)

// dummyHash is checked when a user has no entry, so that a missing user costs what a wrong
// password costs. It is a $5$ hash with the default 5000 rounds, a 16-character salt and a
// 43-character key, the shape crypthash.Hash makes, of a random secret that was thrown away
// (`openssl passwd -5 -salt Gh.dummy.salt.16 <random>`). Its result is never used: a missing
// user fails whatever the password.
const dummyHash = "$5$Gh.dummy.salt.16$.SuEz0y1ujKRvv/cSSO2IkOOQeBNBJmEcybSySfk7X1"

// PasswordOptions configure Passwords.
type PasswordOptions struct {
	Path        string        // shadow.json
	LockPath    string        // lock file; default "<dir of Path>/.shadow.json.lck"
	LockTimeout time.Duration // default lockfile.DefaultTimeout (10 s)
}

// Passwords is the pbs realm: the password hashes in one shadow.json. It is immutable after
// OpenPasswords and safe for concurrent use; writers in any process exclude each other through
// the lock file.
type Passwords struct {
	path, lockPath string
	lockTimeout    time.Duration
	hasher         *crypthash.Hasher
	check          func(hash, password string) (bool, error) // hasher.Check; replaced by tests
}

// OpenPasswords returns Passwords for o.Path. It does not read the file: every Check does.
func OpenPasswords(o PasswordOptions) (*Passwords, error) {
	if o.Path == "" {
		return nil, errors.New("opening password file: no path given")
	}
	h, err := crypthash.New()
	if err != nil {
		return nil, fmt.Errorf("opening password file %s: %w", o.Path, err)
	}
	p := &Passwords{
		path:        o.Path,
		lockPath:    o.LockPath,
		lockTimeout: o.LockTimeout,
		hasher:      h,
		check:       h.Check,
	}
	if p.lockPath == "" {
		p.lockPath = filepath.Join(filepath.Dir(o.Path), ".shadow.json.lck")
	}
	if p.lockTimeout <= 0 {
		p.lockTimeout = lockfile.DefaultTimeout
	}
	return p, nil
}

// Path returns the shadow.json path.
func (p *Passwords) Path() string { return p.path }

// Check checks password for userid ("name@pbs"). It returns nil when it matches; an error
// wrapping ErrBadPassword when it does not, when the user has no entry (after the same amount
// of work, see the package comment) or when the password does not fit PBS's schema (then also
// ErrInvalidPassword); ErrWrongRealm or authid.ErrSyntax for another realm or a malformed id;
// and other errors, naming the file, when shadow.json or the user's hash cannot be used.
func (p *Passwords) Check(userid, password string) error {
	name, err := pbsName(userid)
	if err != nil {
		return fmt.Errorf("checking password: %w", err)
	}
	if err := CheckPassword(password); err != nil {
		return fmt.Errorf("checking password of %s: %w: %w", userid, err, ErrBadPassword)
	}
	m, err := readShadow(p.path)
	if err != nil {
		return err
	}
	hash, found := m[name]
	if !found {
		hash = dummyHash
	}
	match, err := p.check(hash, password)
	if err != nil && found {
		return fmt.Errorf("checking password of %s in %s: %w", userid, p.path, err)
	}
	if !found || !match {
		return fmt.Errorf("checking password of %s: %w", userid, ErrBadPassword)
	}
	return nil
}

// Set stores password for userid ("name@pbs"), replacing any previous one. The password is
// hashed ($5$, 5000 rounds) before the lock is taken.
func (p *Passwords) Set(userid, password string) error {
	name, err := pbsName(userid)
	if err != nil {
		return fmt.Errorf("setting password: %w", err)
	}
	if err := CheckPassword(password); err != nil {
		return fmt.Errorf("setting password of %s: %w", userid, err)
	}
	h, err := p.hasher.Hash(password)
	if err != nil {
		return fmt.Errorf("setting password of %s: %w", userid, err)
	}
	return p.update("setting password of "+userid, func(m map[string]string) error {
		m[name] = h
		return nil
	})
}

// Delete removes the password of userid ("name@pbs"). It fails with an error wrapping
// ErrNoPassword, leaving the file untouched, when there is none (PBS's remove_password
// succeeds then: a caller deleting a user ignores that error).
func (p *Passwords) Delete(userid string) error {
	name, err := pbsName(userid)
	if err != nil {
		return fmt.Errorf("deleting password: %w", err)
	}
	return p.update("deleting password of "+userid, func(m map[string]string) error {
		if _, ok := m[name]; !ok {
			return ErrNoPassword
		}
		delete(m, name)
		return nil
	})
}

// pbsName returns the name of a pbs-realm user id, the key of shadow.json.
func pbsName(userid string) (string, error) {
	u, err := authid.ParseUserid(userid)
	if err != nil {
		return "", err
	}
	if u.Realm != RealmPBS {
		return "", fmt.Errorf("user id %s is in realm %s, not %s: %w", userid, u.Realm, RealmPBS, ErrWrongRealm)
	}
	return u.Name, nil
}

// update runs change on the file's contents under the exclusive lock and replaces the file
// with the result. A file that cannot be read is left alone.
func (p *Passwords) update(what string, change func(map[string]string) error) (err error) {
	lk, err := lockfile.Exclusive(p.lockPath, p.lockTimeout)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer func() {
		if uerr := lk.Unlock(); uerr != nil && err == nil {
			err = fmt.Errorf("%s: %w", what, uerr)
		}
	}()
	m, err := readShadow(p.path)
	if err != nil {
		return fmt.Errorf("%s: refusing to overwrite: %w", what, err)
	}
	if err := change(m); err != nil {
		return fmt.Errorf("%s in %s: %w", what, p.path, err)
	}
	data, err := encodeShadow(m)
	if err != nil {
		return fmt.Errorf("%s: encoding %s: %w", what, p.path, err)
	}
	dir, base := filepath.Split(p.path)
	if dir == "" {
		dir = "."
	}
	if err := lockfile.CleanTemps(filepath.Clean(dir), base); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := lockfile.Replace(p.path, data, lockfile.DefaultOptions(FileMode)); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// readOptions are the file rules of the package comment.
var readOptions = lockfile.ReadOptions{MaxSize: MaxFileSize, Forbidden: 0o077, TrustedOwner: true}

// readShadow reads and parses shadow.json; see the package comment for what it refuses.
// A missing file is an empty map.
func readShadow(path string) (map[string]string, error) {
	data, _, err := lockfile.ReadFile(path, readOptions)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return map[string]string{}, nil
	case errors.Is(err, lockfile.ErrNotRegular), errors.Is(err, lockfile.ErrPermissions):
		return nil, fmt.Errorf("reading password file %s: %w: %w", path, err, ErrUnsafeFile)
	case errors.Is(err, lockfile.ErrTooLarge):
		return nil, fmt.Errorf("reading password file %s: %w: %w", path, err, ErrCorrupt)
	case err != nil:
		return nil, fmt.Errorf("reading password file %s: %w", path, err)
	}
	m, err := parseShadow(data)
	if err != nil {
		return nil, fmt.Errorf("parsing password file %s: %w", path, err)
	}
	return m, nil
}

// parseShadow decodes PBS's shadow.json, {"<user name>": "<crypt hash>", ...}: exactly one JSON
// object of valid UTF-8, each key a user name valid in "<name>@pbs" and present once, each
// value a non-empty string. Every error wraps ErrCorrupt and holds no hash.
func parseShadow(data []byte) (map[string]string, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%d bytes, more than %d: %w", len(data), MaxFileSize, ErrCorrupt)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("file is empty (want a JSON object, {} for no passwords): %w", ErrCorrupt)
	}
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("not valid UTF-8: %w", ErrCorrupt)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("not JSON: %v: %w", err, ErrCorrupt)
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("top level is %s, want a JSON object: %w", describeToken(tok), ErrCorrupt)
	}
	m := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("malformed JSON after %d entries: %v: %w", len(m), err, ErrCorrupt)
		}
		name, ok := tok.(string)
		if !ok { // the decoder returns only strings as keys; be safe
			return nil, fmt.Errorf("object key is %s: %w", describeToken(tok), ErrCorrupt)
		}
		if _, err := authid.ParseUserid(name + "@" + RealmPBS); err != nil {
			return nil, fmt.Errorf("key is not a user name: %v: %w", err, ErrCorrupt)
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("user %q appears twice: %w", name, ErrCorrupt)
		}
		tok, err = dec.Token()
		if err != nil {
			return nil, fmt.Errorf("malformed JSON at the value of user %q: %v: %w", name, err, ErrCorrupt)
		}
		hash, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("value of user %q is %s, want a string: %w", name, describeToken(tok), ErrCorrupt)
		}
		if hash == "" {
			return nil, fmt.Errorf("user %q has an empty hash: %w", name, ErrCorrupt)
		}
		m[name] = hash
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, fmt.Errorf("truncated or malformed JSON object after %d entries: %w", len(m), ErrCorrupt)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after the JSON object: %w", ErrCorrupt)
	}
	return m, nil
}

// describeToken names a JSON token's kind for an error, without its value.
func describeToken(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '{' {
			return "an object"
		}
		if t == '[' {
			return "an array"
		}
		return fmt.Sprintf("%q", rune(t))
	case string:
		return "a string"
	case float64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", tok)
}

// encodeShadow writes the map as PBS does (serde_json::to_vec_pretty): a JSON object indented
// by two spaces, keys sorted, HTML characters not escaped; plus a final newline.
func encodeShadow(m map[string]string) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
