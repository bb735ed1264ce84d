package ticket

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"strings"
	"time"
	"unicode/utf8"
)

// CSRF token window and key files.
const (
	CSRFMaxAge       = 7200 * time.Second // a token is as old as the ticket it came with, at most
	CSRFMaxFuture    = 300 * time.Second
	CSRFKeyFileMode  = 0o640 // csrf.key, root:gatehouse
	CSRFKeySize      = 32    // random bytes in a new csrf.key
	MinCSRFKeySize   = 16    // shorter keys (either form) are refused
	csrfKeyForbidden = 0o027 // no writing by group, no access by others
	csrfMACSize      = 32    // HMAC-SHA3-256 and SHA-256 both
	maxCSRFTokenLen  = 17 + 1 + 44
)

// ErrCSRF is wrapped by every error Check returns.
var ErrCSRF = errors.New("invalid CSRF prevention token")

// CSRFKey is the secret behind CSRF prevention tokens. It is immutable and safe for concurrent
// use.
type CSRFKey struct {
	key []byte
}

// GenerateCSRFKey writes a new csrf.key to path as PBS does: the unpadded standard base64 of
// 32 random bytes, no newline, mode 0640, group gid when gid > 0, with lockfile.Replace. It
// refuses, wrapping fs.ErrExist, when path exists.
func GenerateCSRFKey(path string, gid int) error {
	if err := refuseExisting(path); err != nil {
		return fmt.Errorf("generating CSRF key: %w", err)
	}
	var key [CSRFKeySize]byte
	if _, err := rand.Read(key[:]); err != nil {
		return fmt.Errorf("generating CSRF key: %w", err)
	}
	if err := replaceFile(path, []byte(b64.EncodeToString(key[:])), CSRFKeyFileMode, gid); err != nil {
		return fmt.Errorf("generating CSRF key: %w", err)
	}
	return nil
}

// LoadCSRFKey reads csrf.key from path. The file must be a regular file (not a symbolic link)
// that group may not write and others may not access.
func LoadCSRFKey(path string) (*CSRFKey, error) {
	data, err := readKeyFile(path, csrfKeyForbidden)
	if err != nil {
		return nil, fmt.Errorf("loading CSRF key %s: %w", path, err)
	}
	k, err := ParseCSRFKey(data)
	if err != nil {
		return nil, fmt.Errorf("loading CSRF key %s: %w", path, err)
	}
	return k, nil
}

// ParseCSRFKey returns the key in a csrf.key file's contents: the decoded bytes when the
// contents are exactly unpadded standard base64 (what PBS writes), else the contents themselves
// (a legacy key, e.g. the PEM RSA key older PBS versions stored), as PBS's csrf_secret does.
func ParseCSRFKey(data []byte) (*CSRFKey, error) {
	key := data
	if utf8.Valid(data) && !strings.ContainsAny(string(data), "\r\n") {
		if dec, err := b64.DecodeString(string(data)); err == nil && len(dec) > 0 {
			key = dec
		}
	}
	if len(key) < MinCSRFKeySize {
		return nil, fmt.Errorf("CSRF key of %d bytes, at least %d: %w", len(key), MinCSRFKeySize, ErrBadKey)
	}
	return &CSRFKey{key: append([]byte(nil), key...)}, nil
}

func newSHA3() hash.Hash { return sha3.New256() }

// csrfData returns "<HEXTIME>:<userid>:".
func csrfData(t int64, userid string) []byte {
	var b strings.Builder
	b.Grow(17 + len(userid) + 1)
	writeHexTime(&b, t)
	b.WriteByte(':')
	b.WriteString(userid)
	b.WriteByte(':')
	return []byte(b.String())
}

// Equal reports, in constant time, whether k and o hold the same key.
func (k *CSRFKey) Equal(o *CSRFKey) bool {
	return o != nil && hmac.Equal(k.key, o.key)
}

// mac returns HMAC-SHA3-256(key, data).
func (k *CSRFKey) mac(data []byte) []byte {
	m := hmac.New(newSHA3, k.key)
	m.Write(data)
	return m.Sum(nil)
}

// legacyDigest returns SHA-256(data || key), the token digest of older PBS versions.
func (k *CSRFKey) legacyDigest(data []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(data)
	h.Write(k.key)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// Token returns a CSRF prevention token for userid issued at now:
// "<HEXTIME>:<base64(HMAC-SHA3-256(key, "<HEXTIME>:<userid>:"))>".
func (k *CSRFKey) Token(userid string, now time.Time) string {
	t := now.Unix()
	var b strings.Builder
	writeHexTime(&b, t)
	b.WriteByte(':')
	b.WriteString(b64.EncodeToString(k.mac(csrfData(t, userid))))
	return b.String()
}

// Check verifies a CSRF prevention token for userid: either form of digest (HMAC-SHA3-256, or
// the legacy SHA-256), compared in constant time, issued at most CSRFMaxFuture ahead of now and
// at most CSRFMaxAge before it (seconds, both inclusive). Every error wraps ErrCSRF, and also
// ErrExpired or ErrFuture when only the time is wrong; none contains the token.
func (k *CSRFKey) Check(token, userid string, now time.Time) error {
	if len(token) > maxCSRFTokenLen {
		return fmt.Errorf("checking CSRF token: %d bytes, at most %d: %w", len(token), maxCSRFTokenLen, ErrCSRF)
	}
	ts, sig, ok := strings.Cut(token, ":")
	if !ok || strings.Contains(sig, ":") {
		return fmt.Errorf("checking CSRF token: want exactly one ':': %w", ErrCSRF)
	}
	t, ok := parseHexTime(ts)
	if !ok {
		return fmt.Errorf("checking CSRF token: time is not %d or more upper-case hex digits: %w", hexTimeLen, ErrCSRF)
	}
	var got [csrfMACSize]byte
	if strings.ContainsAny(sig, "\r\n") || b64.DecodedLen(len(sig)) != csrfMACSize {
		return fmt.Errorf("checking CSRF token: digest is not %d bytes of unpadded base64: %w", csrfMACSize, ErrCSRF)
	}
	if n, err := b64.Decode(got[:], []byte(sig)); err != nil || n != csrfMACSize {
		return fmt.Errorf("checking CSRF token: digest is not %d bytes of unpadded base64: %w", csrfMACSize, ErrCSRF)
	}
	data := csrfData(t, userid)
	if !hmac.Equal(k.mac(data), got[:]) {
		legacy := k.legacyDigest(data)
		if subtle.ConstantTimeCompare(legacy[:], got[:]) != 1 {
			return fmt.Errorf("checking CSRF token: digest does not match: %w", ErrCSRF)
		}
	}
	age := now.Unix() - t
	switch {
	case age > int64(CSRFMaxAge/time.Second):
		return fmt.Errorf("checking CSRF token: issued %d s ago, at most %v: %w: %w", age, CSRFMaxAge, ErrCSRF, ErrExpired)
	case age < -int64(CSRFMaxFuture/time.Second):
		return fmt.Errorf("checking CSRF token: issued %d s in the future, at most %v: %w: %w", -age, CSRFMaxFuture, ErrCSRF, ErrFuture)
	}
	return nil
}
