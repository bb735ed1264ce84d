package tfa

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"time"
)

// RecoveryCodes is the number of codes in a set; each is 16 hex digits in four groups
// ("0a1b-2c3d-4e5f-6a7b"), 64 random bits.
const RecoveryCodes = 10

// newRecovery makes a set of recovery codes: it returns the stored form and the codes, which
// are shown once and never stored.
func newRecovery(now time.Time) (*Recovery, []string, error) {
	var secret [8]byte
	var keys [RecoveryCodes * 8]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, nil, fmt.Errorf("generating recovery codes: %w", err)
	}
	if _, err := rand.Read(keys[:]); err != nil {
		return nil, nil, fmt.Errorf("generating recovery codes: %w", err)
	}
	r := &Recovery{Secret: hex.EncodeToString(secret[:]), Created: now.Unix()}
	codes := make([]string, 0, RecoveryCodes)
	for i := 0; i < len(keys); i += 8 {
		b := keys[i : i+8]
		code := fmt.Sprintf("%02x%02x-%02x%02x-%02x%02x-%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7])
		h := r.hash(code)
		r.Entries = append(r.Entries, &h)
		codes = append(codes, code)
	}
	return r, codes, nil
}

// hash is PBS's: hex HMAC-SHA256 of the code, keyed with the secret's hex text.
func (r *Recovery) hash(code string) string {
	m := hmac.New(sha256.New, []byte(r.Secret))
	m.Write([]byte(code))
	return hex.EncodeToString(m.Sum(nil))
}

// use marks code as used and reports whether it was an unused code of the set. Every entry
// is compared, in constant time.
func (r *Recovery) use(code string) bool {
	h := []byte(r.hash(code))
	hit := -1
	for i, e := range r.Entries {
		if e != nil && subtle.ConstantTimeCompare([]byte(*e), h) == 1 && hit < 0 {
			hit = i
		}
	}
	if hit < 0 {
		return false
	}
	r.Entries[hit] = nil
	return true
}

// Available returns the indices of the unused codes (PBS's RecoveryState).
func (r *Recovery) Available() []int {
	out := []int{}
	for i, e := range r.Entries {
		if e != nil {
			out = append(out, i)
		}
	}
	return out
}
