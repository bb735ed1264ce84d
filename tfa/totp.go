package tfa

import (
	"crypto/subtle"
	"encoding/base32"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
)

// TOTP limits. A code is checked against the time steps now-1, now and now+1 (one step of
// skew each way), and a step at or before the entry's last accepted one is refused.
const (
	TOTPSkew        = 1
	minSecretBytes  = 10 // 80 bits, RFC 4226's minimum; enforced when an entry is added
	maxTOTPPeriod   = 3600
	DefaultPeriod   = 30
	DefaultDigits   = 6
	maxSecretLength = 1024
)

// totpKey is a parsed otpauth://totp URI.
type totpKey struct {
	secret string // base32 of raw, padded: what hotp decodes (the URI's spelling may not be)
	raw    []byte // decoded secret
	period uint64
	opts   hotp.ValidateOpts
}

// parseTOTP parses and checks an otpauth://totp URI: a base32 secret, algorithm SHA1 (the
// default), SHA256 or SHA512 (any case, as PBS), 6 to 8 digits (default 6), a period of 1 to
// 3600 s (default 30).
func parseTOTP(uri string) (*totpKey, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" {
		return nil, fmt.Errorf("not an otpauth://totp/ URI: %w", ErrInvalid)
	}
	q := u.Query()
	k := &totpKey{period: DefaultPeriod, opts: hotp.ValidateOpts{Digits: DefaultDigits, Algorithm: otp.AlgorithmSHA1}}
	k.secret = q.Get("secret")
	if k.secret == "" || len(k.secret) > maxSecretLength {
		return nil, fmt.Errorf("totp URI has no usable secret: %w", ErrInvalid)
	}
	norm := strings.ToUpper(strings.TrimRight(k.secret, "="))
	if k.raw, err = base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(norm); err != nil || len(k.raw) == 0 {
		return nil, fmt.Errorf("totp secret is not base32: %w", ErrInvalid)
	}
	k.secret = base32.StdEncoding.EncodeToString(k.raw)
	switch a := strings.ToLower(q.Get("algorithm")); a {
	case "", "sha1":
	case "sha256":
		k.opts.Algorithm = otp.AlgorithmSHA256
	case "sha512":
		k.opts.Algorithm = otp.AlgorithmSHA512
	default:
		return nil, fmt.Errorf("totp algorithm %q is not SHA1, SHA256 or SHA512: %w", a, ErrInvalid)
	}
	if d := q.Get("digits"); d != "" {
		n, err := strconv.Atoi(d)
		if err != nil || n < 6 || n > 8 {
			return nil, fmt.Errorf("totp digits %q is not 6, 7 or 8: %w", d, ErrInvalid)
		}
		k.opts.Digits = otp.Digits(n)
	}
	if p := q.Get("period"); p != "" {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil || n < 1 || n > maxTOTPPeriod {
			return nil, fmt.Errorf("totp period %q is not 1 to %d seconds: %w", p, maxTOTPPeriod, ErrInvalid)
		}
		k.period = n
	}
	return k, nil
}

// step is the time step of t.
func (k *totpKey) step(t time.Time) int64 { return t.Unix() / int64(k.period) }

// code returns the code of time step s.
func (k *totpKey) code(s int64) (string, error) {
	return hotp.GenerateCodeCustom(k.secret, uint64(s), k.opts)
}

// match returns the time step within the skew whose code is code, or false. Each candidate is
// compared in constant time, and all are computed whatever matches.
func (k *totpKey) match(code string, now time.Time) (int64, bool) {
	if len(code) != k.opts.Digits.Length() {
		return 0, false
	}
	var found int64
	ok := 0
	cur := k.step(now)
	for s := cur - TOTPSkew; s <= cur+TOTPSkew; s++ {
		want, err := k.code(s)
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && ok == 0 {
			found, ok = s, 1
		}
	}
	return found, ok == 1
}

// Code returns the TOTP code of uri at time t, for gatectl and tests.
func Code(uri string, t time.Time) (string, error) {
	k, err := parseTOTP(uri)
	if err != nil {
		return "", err
	}
	return k.code(k.step(t))
}
