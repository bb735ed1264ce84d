// Package ticket signs and verifies Proxmox Backup Server (PBS) authentication tickets and CSRF
// prevention tokens, byte for byte as proxmox-auth-api does, and caches verified tickets for
// proxyd.
//
// # Ticket format
//
//	<prefix>:<data>:<HEXTIME>::<signature>
//
// The fields:
//   - prefix: the product ("PBS", "PVE", ...); data: the user id ("alice@pbs") of a full ticket,
//     or "!tfa!<challenge JSON>" for a half-authenticated TFA ticket. Both are percent-encoded
//     with PBS's set: the bytes 0x00-0x1F and 0x7F (the CONTROLS set of the percent-encoding
//     crate), ':' and every byte >= 0x80, each as "%" and two upper-case hex digits. '%' itself
//     is not encoded (as in PBS), so data containing '%' and two hex digits would not survive a
//     round trip: Sign refuses it.
//   - HEXTIME: the issue time in seconds since the Unix epoch, upper-case hex, at least 8 digits
//     ("{:08X}").
//   - signature: unpadded standard base64 (RFC 4648 section 4, no '=') of the signature over the
//     bytes "<prefix>:<data>:<HEXTIME>", followed by ":<aad>" when there is associated data (a
//     TFA ticket's aad is the user id; full tickets have none). Empty aad means none.
//
// Parsing splits at the first three ':' bytes; what follows the third must start with ':' and
// the rest is the signature. Verification is stricter than PBS, never looser: prefix, data and
// time must be in the exact form Sign writes (PBS re-encodes what it decoded and would accept,
// say, lower-case hex), the signature must decode strictly, and a ticket is at most
// MaxTicketLen (16 KiB) bytes. Every ticket PBS issues passes these checks, except for data
// with a '%' and two hex digits (a user name like "a%41b"), which PBS itself decodes into
// something else ("aAb"): refused here rather than read as another user.
//
// Checks, in order: syntax (ErrMalformed), kind (ErrKind: a TFA ticket where a full one is
// wanted, or the reverse; decided before any signature work), prefix (ErrPrefix), signature
// (ErrSignature), then the time window: with age = now - issued, in whole seconds,
//
//	full ticket:  -300 <= age <= 7200   (FullMaxFuture, FullLifetime: 5 min ahead, 2 h)
//	TFA ticket:    -60 <= age <= 600    (TFAMaxFuture, TFALifetime: 1 min ahead, 10 min)
//
// else ErrFuture or ErrExpired, both bounds inclusive as in PBS. The signature is checked before
// the time so that ErrExpired and ErrFuture only ever describe genuine tickets. Every error
// returned wraps exactly one of these sentinels and never contains a signature, a key or the
// ticket's data.
//
// Info returns a ticket without its signature, "<prefix>:<data>:<HEXTIME>::", which the
// HttpOnly login flow returns as "ticket-info" (the exact form PBS returns could not be checked
// against its source; this is the literal "ticket without its signature").
//
// # Keys
//
// authkey.key holds the private key in PEM: Ed25519 as PKCS#8 ("PRIVATE KEY", what PBS and
// GenerateKeys write); RSA as PKCS#1 ("RSA PRIVATE KEY", older PBS) or PKCS#8; ECDSA (P-256,
// P-384, P-521) as SEC 1 ("EC PRIVATE KEY") or PKCS#8. authkey.pub holds the public key as
// SPKI ("PUBLIC KEY"; PKCS#1 "RSA PUBLIC KEY" is accepted too). Signature algorithms, as
// openssl computes them for proxmox-auth-api: Ed25519 pure (no pre-hash, 64 bytes); RSA
// PKCS #1 v1.5 over SHA-256 (at least 2048-bit keys); ECDSA over SHA-256 with an ASN.1 DER
// signature. GenerateKeys writes a new Ed25519 pair: authkey.key 0600, authkey.pub 0640
// root:<gid>, each through lockfile.Replace, and refuses to overwrite either file.
// LoadSigner refuses a key file that group or others may access (mode & 0077), LoadVerifier a
// public key file that group or others may write (mode & 0022). Key files are regular files of
// at most 64 KiB.
//
// RotateKeys replaces the pair with a new Ed25519 one and keeps the old public key in
// authkey.retired (0640), so that tickets it signed stay valid until they expire (2 h): a
// retired key verifies only tickets issued no later than its retirement, at most
// MaxRetiredKeys (8) are kept, and authkey.pub still holds exactly one key, as PBS has it.
// LoadKeyRing and LoadSignerRing load a key with its live retired keys; EnsurePublic repairs an
// authkey.pub that does not match authkey.key (a crash in the middle of a rotation).
//
// # CSRF prevention tokens
//
//	<HEXTIME>:<base64(HMAC-SHA3-256(key, "<HEXTIME>:<userid>:"))>
//
// with unpadded standard base64 (43 characters). Check also accepts the legacy form of older
// PBS, base64(SHA-256("<HEXTIME>:<userid>:" || key)), compares in constant time, and accepts
// -300 <= now - time <= 7200 (seconds, inclusive). Its errors wrap ErrCSRF, and ErrExpired or
// ErrFuture when only the time is wrong.
//
// csrf.key, as PBS writes it: the unpadded standard base64 of 32 random bytes, no newline,
// mode 0640 root:<gid>. A file that is not exactly such base64 (older PBS stored a PEM RSA key
// there) is a legacy key whose bytes are used as they are, as PBS does. LoadCSRFKey refuses a
// file group may write or others may access (mode & 0027), or a key under 16 bytes.
//
// # Verified-ticket cache
//
// A Cache sits in front of a Verifier for proxyd: it remembers full tickets whose signature
// verified, keyed by the ticket string, so that a request pays a map lookup under a read lock
// (35-60 ns on the 2-core VM, no allocation) instead of a signature verification (45-50 us for
// Ed25519, 30-40 us for RSA-2048). Invariants:
//
//   - a hit requires the same ticket string, the same prefix and the same keys generation
//     (the caller's uint64 from the shared generation counters) as when the ticket was
//     verified, and no SetVerifier since;
//   - the time window is checked on every call with the caller's now, so a cached ticket
//     expires on time;
//   - a call with another keys generation than that of the entries drops them all, and so does
//     SetVerifier (the caller loads the new authkey.pub when the generation changes); a
//     verification that raced with either is not stored;
//   - only successful VerifyUser results of tickets up to 1 KiB are stored, as copies;
//   - at most size entries (DefaultCacheSize, 10 000, when size <= 0): when full, the cache is
//     emptied whole rather than tracking age.
package ticket

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"gatehouse/authid"
)

// Sources the formats were checked against (reference only, no code copied), all in the public
// GitHub repositories proxmox/proxmox-rs and proxmox/proxmox-backup:
//   - proxmox-rs proxmox-auth-api/src/ticket.rs: TICKET_ASCIISET (CONTROLS + ':'), ticket_data
//     ("{}:{}:{:08X}"), verification_data (":" + aad), "::" + base64 STANDARD_NO_PAD, splitn(4),
//     the -300..TICKET_LIFETIME window;
//   - proxmox-auth-api/src/auth_key.rs: Ed25519 signs without digest, other keys with SHA-256;
//   - proxmox-auth-api/src/api/mod.rs (http_check_auth: -300..7200 for tickets and CSRF tokens),
//     src/api/access.rs (TFA window -60..600 with aad = user id; assemble_csrf_prevention_token,
//     verify_csrf_prevention_token with HMAC SHA3-256 and the legacy SHA-256 fallback),
//     src/api/ticket.rs ("!tfa!" + challenge JSON);
//   - proxmox-backup src/auth_helpers.rs: csrf.key (HMACKey::generate().to_base64(), 0640
//     root:backup; legacy fallback to the raw file bytes), authkey.key 0600, authkey.pub 0640,
//     Ed25519 keys from generate_ec; older versions: RSA 4096 "RSA PRIVATE KEY", csrf.key an RSA
//     2048 PEM and the SHA-256(data || key) digest.

// Lifetimes, as in proxmox-auth-api (TICKET_LIFETIME, and the -300 and -60..600 windows in
// src/api/mod.rs and src/api/access.rs).
const (
	FullLifetime  = 2 * time.Hour
	FullMaxFuture = 300 * time.Second
	TFALifetime   = 10 * time.Minute
	TFAMaxFuture  = 60 * time.Second
)

// Limits.
const (
	MaxTicketLen = 16 << 10 // longer tickets are refused before any parsing
	tfaMarker    = "!tfa!"  // data prefix of a half-authenticated ticket
	hexTimeLen   = 8        // minimum digits of HEXTIME
)

// Verification results: every error returned by the verification functions wraps exactly one
// of these.
var (
	ErrMalformed = errors.New("malformed ticket")
	ErrPrefix    = errors.New("wrong ticket prefix")
	ErrKind      = errors.New("wrong kind of ticket")
	ErrSignature = errors.New("invalid ticket signature")
	ErrExpired   = errors.New("expired")
	ErrFuture    = errors.New("issued in the future")
)

// b64 is PBS's base64::STANDARD_NO_PAD, strict: no padding, no non-zero trailing bits.
var b64 = base64.RawStdEncoding.Strict()

// Sign returns a ticket for data under prefix, issued at now, signed over the ticket text and,
// when aad is not empty, ":" and aad. It fails (wrapping ErrMalformed) when prefix or data
// would not survive the percent-encoding round trip (a '%' followed by two hex digits) or is
// not valid UTF-8, or when the ticket would be longer than MaxTicketLen.
func (s *Signer) Sign(prefix, data, aad string, now time.Time) (string, error) {
	if err := checkEncodable(prefix); err != nil {
		return "", fmt.Errorf("signing ticket: prefix: %w", err)
	}
	if err := checkEncodable(data); err != nil {
		return "", fmt.Errorf("signing ticket: data: %w", err)
	}
	var b strings.Builder
	b.Grow(len(prefix) + len(data) + 24 + s.pub.sigLen*4/3 + 4)
	b.WriteString(encode(prefix))
	b.WriteByte(':')
	b.WriteString(encode(data))
	b.WriteByte(':')
	writeHexTime(&b, now.Unix())
	text := b.String()
	sig, err := s.sign(signedMessage(text, aad))
	if err != nil {
		return "", fmt.Errorf("signing ticket: %w", err)
	}
	b.WriteString("::")
	b.WriteString(b64.EncodeToString(sig))
	if b.Len() > MaxTicketLen {
		return "", fmt.Errorf("signing ticket: %d bytes, at most %d: %w", b.Len(), MaxTicketLen, ErrMalformed)
	}
	return b.String(), nil
}

// SignUser returns a full ticket for userid, which must be a valid user id (not a token id).
func (s *Signer) SignUser(prefix, userid string, now time.Time) (string, error) {
	if _, err := authid.ParseUserid(userid); err != nil {
		return "", fmt.Errorf("signing ticket: %w: %w", ErrMalformed, err)
	}
	return s.Sign(prefix, userid, "", now)
}

// SignTFA returns a half-authenticated ticket: data "!tfa!" + challenge, associated data userid.
func (s *Signer) SignTFA(prefix, userid, challenge string, now time.Time) (string, error) {
	if _, err := authid.ParseUserid(userid); err != nil {
		return "", fmt.Errorf("signing TFA ticket: %w: %w", ErrMalformed, err)
	}
	return s.Sign(prefix, tfaMarker+challenge, userid, now)
}

// Info returns the ticket without its signature, "<prefix>:<data>:<HEXTIME>::", or "" when
// ticket has no "::" after its third field.
func Info(ticket string) string {
	p, err := parse(ticket)
	if err != nil {
		return ""
	}
	return ticket[:len(p.text)+2]
}

// IsTFA reports whether ticket is well-formed and half-authenticated (data "!tfa!..."). It
// does not verify the signature.
func IsTFA(ticket string) bool {
	p, err := parse(ticket)
	return err == nil && strings.HasPrefix(p.data, tfaMarker)
}

// parsed is a ticket split into its fields; every string is a substring of the ticket or, for
// percent-encoded fields, its decoding.
type parsed struct {
	text   string // "<prefix>:<data>:<HEXTIME>", the signed part without aad
	prefix string // decoded
	data   string // decoded
	rawDat string // data as in the ticket
	issued int64
	sig    string // base64, not yet decoded
}

// parse splits and checks the syntax of a ticket. Errors wrap ErrMalformed.
func parse(ticket string) (parsed, error) {
	var p parsed
	if len(ticket) > MaxTicketLen {
		return p, fmt.Errorf("ticket is %d bytes, at most %d: %w", len(ticket), MaxTicketLen, ErrMalformed)
	}
	rawPrefix, rest, ok := strings.Cut(ticket, ":")
	if !ok {
		return p, fmt.Errorf("no data field: %w", ErrMalformed)
	}
	rawData, rest, ok := strings.Cut(rest, ":")
	if !ok {
		return p, fmt.Errorf("no time field: %w", ErrMalformed)
	}
	rawTime, rest, ok := strings.Cut(rest, ":")
	if !ok {
		return p, fmt.Errorf("no signature field: %w", ErrMalformed)
	}
	sig, ok := strings.CutPrefix(rest, ":")
	if !ok {
		return p, fmt.Errorf("no \"::\" before the signature: %w", ErrMalformed)
	}
	issued, ok := parseHexTime(rawTime)
	if !ok {
		return p, fmt.Errorf("time field is not %d or more upper-case hex digits without extra leading zeros: %w", hexTimeLen, ErrMalformed)
	}
	prefix, ok := decode(rawPrefix)
	if !ok {
		return p, fmt.Errorf("prefix field is not canonically percent-encoded UTF-8: %w", ErrMalformed)
	}
	data, ok := decode(rawData)
	if !ok {
		return p, fmt.Errorf("data field is not canonically percent-encoded UTF-8: %w", ErrMalformed)
	}
	if sig == "" {
		return p, fmt.Errorf("empty signature: %w", ErrMalformed)
	}
	p.text = ticket[:len(rawPrefix)+1+len(rawData)+1+len(rawTime)]
	p.prefix, p.data, p.rawDat, p.issued, p.sig = prefix, data, rawData, issued, sig
	return p, nil
}

// Verify checks a ticket's syntax, prefix, signature (with aad, empty for none) and time
// window: the issue time must lie in [now-lifetime, now+maxFuture], in whole seconds. It
// returns the decoded data and the issue time.
func (v *Verifier) Verify(ticket, prefix, aad string, lifetime, maxFuture time.Duration, now time.Time) (data string, issued time.Time, err error) {
	p, err := parse(ticket)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("verifying ticket: %w", err)
	}
	if err := v.verifyParsed(&p, prefix, aad, lifetime, maxFuture, now); err != nil {
		return "", time.Time{}, err
	}
	return p.data, time.Unix(p.issued, 0), nil
}

// VerifyUser verifies a full ticket (no aad, FullLifetime, FullMaxFuture) and returns its user
// id, which must be valid (authid.ParseUserid). A TFA ticket is refused with ErrKind.
func (v *Verifier) VerifyUser(ticket, prefix string, now time.Time) (userid string, issued time.Time, err error) {
	p, err := parse(ticket)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("verifying ticket: %w", err)
	}
	if strings.HasPrefix(p.data, tfaMarker) {
		return "", time.Time{}, fmt.Errorf("verifying ticket: half-authenticated (TFA) ticket, second factor required: %w", ErrKind)
	}
	if err := v.verifyParsed(&p, prefix, "", FullLifetime, FullMaxFuture, now); err != nil {
		return "", time.Time{}, err
	}
	if _, err := authid.ParseUserid(p.data); err != nil {
		// Signed by us, so only a signer bug gets here; do not echo the data.
		return "", time.Time{}, fmt.Errorf("verifying ticket: data is not a valid user id: %w", ErrMalformed)
	}
	return p.data, time.Unix(p.issued, 0), nil
}

// VerifyTFA verifies a half-authenticated ticket made by SignTFA for userid (the aad;
// TFALifetime, TFAMaxFuture) and returns its challenge. A full ticket is refused with ErrKind.
func (v *Verifier) VerifyTFA(ticket, prefix, userid string, now time.Time) (challenge string, issued time.Time, err error) {
	if userid == "" {
		return "", time.Time{}, fmt.Errorf("verifying TFA ticket: no user id given: %w", ErrMalformed)
	}
	p, err := parse(ticket)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("verifying TFA ticket: %w", err)
	}
	challenge, ok := strings.CutPrefix(p.data, tfaMarker)
	if !ok {
		return "", time.Time{}, fmt.Errorf("verifying TFA ticket: not a half-authenticated ticket: %w", ErrKind)
	}
	if err := v.verifyParsed(&p, prefix, userid, TFALifetime, TFAMaxFuture, now); err != nil {
		return "", time.Time{}, err
	}
	return challenge, time.Unix(p.issued, 0), nil
}

// verifyParsed checks prefix, signature and time window of a parsed ticket.
func (v *Verifier) verifyParsed(p *parsed, prefix, aad string, lifetime, maxFuture time.Duration, now time.Time) error {
	if p.prefix != prefix {
		return fmt.Errorf("verifying ticket: want prefix %q: %w", prefix, ErrPrefix)
	}
	if err := v.verifyAny(p, aad); err != nil {
		return fmt.Errorf("verifying ticket: %w", err)
	}
	return checkWindow("verifying ticket", p.issued, lifetime, maxFuture, now)
}

// checkWindow checks -maxFuture <= now-issued <= lifetime in whole seconds.
func checkWindow(what string, issued int64, lifetime, maxFuture time.Duration, now time.Time) error {
	age := now.Unix() - issued
	switch {
	case age > int64(lifetime/time.Second):
		return fmt.Errorf("%s: issued %d s ago, lifetime %v: %w", what, age, lifetime, ErrExpired)
	case age < -int64(maxFuture/time.Second):
		return fmt.Errorf("%s: issued %d s in the future, at most %v: %w", what, -age, maxFuture, ErrFuture)
	}
	return nil
}

// signedMessage returns the bytes a signature covers: text, then ":" and aad when aad is set.
func signedMessage(text, aad string) []byte {
	n := len(text)
	if aad != "" {
		n += 1 + len(aad)
	}
	m := make([]byte, 0, n)
	m = append(m, text...)
	if aad != "" {
		m = append(m, ':')
		m = append(m, aad...)
	}
	return m
}

// needsEncoding reports whether PBS's TICKET_ASCIISET (percent_encoding::CONTROLS plus ':')
// encodes c; the percent-encoding crate always encodes non-ASCII bytes.
func needsEncoding(c byte) bool {
	return c < 0x20 || c == 0x7f || c == ':' || c >= 0x80
}

const upperHex = "0123456789ABCDEF"

// encode percent-encodes s as PBS does; it returns s itself when nothing needs encoding.
func encode(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if needsEncoding(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		if c := s[i]; needsEncoding(c) {
			b = append(b, '%', upperHex[c>>4], upperHex[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// decode reverses encode, accepting only what encode produces: a "%XX" escape must be
// upper-case and stand for a byte that needs encoding, no byte that needs encoding may appear
// raw, and the result must be valid UTF-8. Without escapes it returns raw itself.
func decode(raw string) (string, bool) {
	if !strings.Contains(raw, "%") {
		for i := 0; i < len(raw); i++ {
			if needsEncoding(raw[i]) {
				return "", false
			}
		}
		return raw, true
	}
	b := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if needsEncoding(c) {
			return "", false
		}
		if c == '%' && i+2 < len(raw) {
			hi, ok1 := unhex(raw[i+1])
			lo, ok2 := unhex(raw[i+2])
			if ok1 && ok2 {
				d := hi<<4 | lo
				if !needsEncoding(d) || raw[i+1] != upperHex[hi] || raw[i+2] != upperHex[lo] {
					return "", false // PBS would decode it, encode would not have written it
				}
				b = append(b, d)
				i += 2
				continue
			}
		}
		b = append(b, c)
	}
	if !utf8.Valid(b) {
		return "", false
	}
	return string(b), true
}

// checkEncodable fails for a string that decode(encode(s)) would not give back: invalid UTF-8,
// or a '%' followed by two hex digits.
func checkEncodable(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("not valid UTF-8: %w", ErrMalformed)
	}
	for i := 0; i+2 < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		if _, ok := unhex(s[i+1]); ok {
			if _, ok := unhex(s[i+2]); ok {
				return fmt.Errorf("'%%' followed by two hex digits at byte %d does not survive percent-decoding: %w", i, ErrMalformed)
			}
		}
	}
	return nil
}

// writeHexTime writes t as PBS's "{:08X}" does (two's complement for negative t).
func writeHexTime(b *strings.Builder, t int64) {
	var buf [16]byte
	u := uint64(t)
	i := len(buf)
	for u != 0 || len(buf)-i < hexTimeLen {
		i--
		buf[i] = upperHex[u&15]
		u >>= 4
	}
	b.Write(buf[i:])
}

// parseHexTime parses HEXTIME in the exact form writeHexTime produces.
func parseHexTime(s string) (int64, bool) {
	if len(s) < hexTimeLen || len(s) > 16 || (len(s) > hexTimeLen && s[0] == '0') {
		return 0, false
	}
	var u uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		u = u<<4 | uint64(d)
	}
	return int64(u), true
}
