package ticket

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"time"
)

// Key rotation.
//
// A rotation replaces authkey.key and authkey.pub with a new Ed25519 pair and appends the old
// public key to authkey.retired (PEM "PUBLIC KEY" blocks, each with a "Retired: <unix time>"
// header; mode 0640 like authkey.pub). authkey.pub keeps holding exactly one key, so PBS tools
// that read it still work. A retired key verifies only tickets issued no later than its
// retirement; those tickets all expire within FullLifetime (2 h) of it, after which the key
// verifies nothing and the next rotation drops it. That bounds, but does not stop, what a
// stolen old key can do: whoever holds it can sign tickets backdated to before the retirement,
// which verify until the retirement + 2 h. So the signer accepts only tickets of its current
// key where a ticket becomes a new one (renewal, the second TFA step: Verifier.Current), and a
// rotation with revokeSessions keeps no retired key at all, ending every earlier ticket at
// once. At most MaxRetiredKeys are kept (the oldest go first), which bounds the work a forged
// ticket can cause to MaxRetiredKeys+1 signature checks.

// MaxRetiredKeys is how many retired public keys authkey.retired keeps.
const MaxRetiredKeys = 8

// retiredHeader is the PEM header with the retirement time in seconds since the epoch.
const retiredHeader = "Retired"

// RetiredKey is a public key replaced by a rotation at Retired.
type RetiredKey struct {
	Verifier *Verifier
	Retired  time.Time
}

// ValidUntil is when the last ticket the key may have signed expires.
func (k RetiredKey) ValidUntil() time.Time { return k.Retired.Add(FullLifetime) }

// WithRetired returns a copy of v that also accepts tickets signed by the given retired keys,
// each only for tickets issued no later than its retirement time.
func (v *Verifier) WithRetired(keys []RetiredKey) *Verifier {
	c := *v
	c.retired = append([]RetiredKey(nil), keys...)
	return &c
}

// Current returns a copy of v that accepts tickets of its current key only, none of the
// retired keys: for the checks that turn a ticket into a new one (renewal, the second TFA
// step), so that a retired key, perhaps stolen, never mints a ticket of the current key.
func (v *Verifier) Current() *Verifier { return v.WithRetired(nil) }

// Retired returns the retired keys v accepts.
func (v *Verifier) Retired() []RetiredKey { return append([]RetiredKey(nil), v.retired...) }

// verifyAny checks the signature with v's key, then with each retired key that was still in
// use when the ticket was issued.
func (v *Verifier) verifyAny(p *parsed, aad string) error {
	err := v.verifySig(p.text, aad, p.sig)
	if !errors.Is(err, ErrSignature) {
		return err
	}
	for _, k := range v.retired {
		if p.issued <= k.Retired.Unix() && k.Verifier.verifySig(p.text, aad, p.sig) == nil {
			return nil
		}
	}
	return err
}

// ParseRetired parses authkey.retired: zero or more PEM "PUBLIC KEY" blocks, each with exactly
// one header, "Retired: <decimal unix time>", and nothing else in the file but white space.
func ParseRetired(data []byte) ([]RetiredKey, error) {
	var keys []RetiredKey
	rest := data
	for len(bytes.TrimSpace(rest)) > 0 {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("retired key %d: not a PEM block: %w", len(keys)+1, ErrBadKey)
		}
		if b.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("retired key %d: PEM block %q, want \"PUBLIC KEY\": %w", len(keys)+1, b.Type, ErrBadKey)
		}
		at, ok := b.Headers[retiredHeader]
		if !ok || len(b.Headers) != 1 {
			return nil, fmt.Errorf("retired key %d: want exactly the header %q: %w", len(keys)+1, retiredHeader, ErrBadKey)
		}
		sec, err := strconv.ParseInt(at, 10, 64)
		if err != nil || sec < 0 || strconv.FormatInt(sec, 10) != at {
			return nil, fmt.Errorf("retired key %d: %s header %q is not a unix time: %w", len(keys)+1, retiredHeader, at, ErrBadKey)
		}
		pub, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("retired key %d: %w: %w", len(keys)+1, ErrBadKey, err)
		}
		v, err := newVerifier(pub)
		if err != nil {
			return nil, fmt.Errorf("retired key %d: %w", len(keys)+1, err)
		}
		keys = append(keys, RetiredKey{Verifier: v, Retired: time.Unix(sec, 0)})
		if len(keys) > MaxRetiredKeys {
			return nil, fmt.Errorf("more than %d retired keys: %w", MaxRetiredKeys, ErrBadKey)
		}
	}
	return keys, nil
}

// formatRetired is the inverse of ParseRetired.
func formatRetired(keys []RetiredKey) ([]byte, error) {
	var buf bytes.Buffer
	for _, k := range keys {
		der, err := x509.MarshalPKIXPublicKey(k.Verifier.public())
		if err != nil {
			return nil, fmt.Errorf("encoding retired key %s: %w", k.Verifier.fp, err)
		}
		b := &pem.Block{Type: "PUBLIC KEY", Headers: map[string]string{retiredHeader: strconv.FormatInt(k.Retired.Unix(), 10)}, Bytes: der}
		if err := pem.Encode(&buf, b); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// public returns the key v wraps.
func (v *Verifier) public() any {
	switch {
	case v.ed != nil:
		return v.ed
	case v.rsa != nil:
		return v.rsa
	default:
		return v.ec
	}
}

// LoadRetired reads authkey.retired; a missing file means no retired keys. Like authkey.pub,
// it must be a regular file that neither group nor others may write.
func LoadRetired(path string) ([]RetiredKey, error) {
	data, err := readKeyFile(path, pubForbidden)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading retired auth keys %s: %w", path, err)
	}
	keys, err := ParseRetired(data)
	if err != nil {
		return nil, fmt.Errorf("loading retired auth keys %s: %w", path, err)
	}
	return keys, nil
}

// live returns the keys that may still verify an unexpired ticket at now.
func live(keys []RetiredKey, now time.Time) []RetiredKey {
	var out []RetiredKey
	for _, k := range keys {
		if !now.After(k.ValidUntil()) {
			out = append(out, k)
		}
	}
	return out
}

// LoadKeyRing reads authkey.pub and authkey.retired and returns a Verifier that accepts the
// current key and the retired keys still live at now.
func LoadKeyRing(pubPath, retiredPath string, now time.Time) (*Verifier, error) {
	v, err := LoadVerifier(pubPath)
	if err != nil {
		return nil, err
	}
	keys, err := LoadRetired(retiredPath)
	if err != nil {
		return nil, err
	}
	return v.WithRetired(live(keys, now)), nil
}

// LoadSignerRing is LoadSigner whose public side also accepts the live retired keys, for the
// process that signs tickets and verifies them again (renewal, the second TFA step).
func LoadSignerRing(keyPath, retiredPath string, now time.Time) (*Signer, error) {
	s, err := LoadSigner(keyPath)
	if err != nil {
		return nil, err
	}
	keys, err := LoadRetired(retiredPath)
	if err != nil {
		return nil, err
	}
	s.pub = s.pub.WithRetired(live(keys, now))
	return s, nil
}

// RotateKeys replaces the key pair at keyPath/pubPath with a new Ed25519 pair, after adding the
// current public key (from pubPath) to the retired keys at retiredPath with retirement time
// now. Retired keys no longer live at now are dropped, and the oldest beyond MaxRetiredKeys.
// With revokeSessions, every retired key is dropped instead, the current one included, so
// that no ticket signed before the rotation verifies any more (authkey.retired is left empty).
// Order of writes, each atomic: authkey.retired, authkey.key, authkey.pub; a crash between the
// last two leaves a public key that does not match the private one, which EnsurePublic
// repairs. Callers serialize rotations and bump the keys generation afterwards. It returns the
// new Signer, whose public side accepts the retired keys.
func RotateKeys(keyPath, pubPath, retiredPath string, gid int, now time.Time, revokeSessions bool) (*Signer, error) {
	cur, err := LoadVerifier(pubPath)
	if err != nil {
		return nil, fmt.Errorf("rotating auth keys: %w", err)
	}
	old, err := LoadRetired(retiredPath)
	if err != nil {
		return nil, fmt.Errorf("rotating auth keys: %w", err)
	}
	keys := append(live(old, now), RetiredKey{Verifier: cur.WithRetired(nil), Retired: time.Unix(now.Unix(), 0)})
	if len(keys) > MaxRetiredKeys {
		keys = keys[len(keys)-MaxRetiredKeys:]
	}
	if revokeSessions {
		keys = nil
	}
	data, err := formatRetired(keys)
	if err != nil {
		return nil, fmt.Errorf("rotating auth keys: %w", err)
	}
	if err := replaceFile(retiredPath, data, PubFileMode, gid); err != nil {
		return nil, fmt.Errorf("rotating auth keys: %w", err)
	}
	s, err := writeKeyPair(keyPath, pubPath, gid)
	if err != nil {
		return nil, fmt.Errorf("rotating auth keys: %w", err)
	}
	s.pub = s.pub.WithRetired(keys)
	return s, nil
}

// EnsurePublic makes pubPath hold the public key of the signer at keyPath, rewriting it (mode
// 0640, group gid) when it is missing or holds another key. It reports whether it wrote.
func EnsurePublic(keyPath, pubPath string, gid int) (bool, error) {
	s, err := LoadSigner(keyPath)
	if err != nil {
		return false, err
	}
	if v, err := LoadVerifier(pubPath); err == nil && v.fp == s.pub.fp {
		return false, nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrBadKey) {
		return false, err
	}
	pemPub, err := encodePublic(s.pub.public())
	if err != nil {
		return false, fmt.Errorf("repairing public auth key %s: %w", pubPath, err)
	}
	if err := replaceFile(pubPath, pemPub, PubFileMode, gid); err != nil {
		return false, fmt.Errorf("repairing public auth key %s: %w", pubPath, err)
	}
	return true, nil
}

func encodePublic(key any) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// writeKeyPair writes a new Ed25519 pair over whatever is at keyPath and pubPath (private key
// first) and returns its Signer.
func writeKeyPair(keyPath, pubPath string, gid int) (*Signer, error) {
	if keyPath == pubPath {
		return nil, fmt.Errorf("key and public key path are both %s", keyPath)
	}
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	s, err := ParseSigner(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))
	if err != nil {
		return nil, err
	}
	pubPEM, err := encodePublic(priv.Public())
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	if err := replaceFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), KeyFileMode, 0); err != nil {
		return nil, err
	}
	if err := replaceFile(pubPath, pubPEM, PubFileMode, gid); err != nil {
		return nil, err
	}
	return s, nil
}
