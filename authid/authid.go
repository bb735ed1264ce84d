// Package authid parses and validates Proxmox user and API token identifiers.
//
// Syntax, as in Proxmox Backup Server (pbs-api-types, proxmox-auth-api):
//
//	Userid  = <name> "@" <realm>           e.g. root@pam, alice@pbs
//	Authid  = <Userid> [ "!" <tokenname> ] e.g. alice@pbs!backup
//
// The parts:
//   - name: 1 or more bytes, none of them white space, ':', '/' or a control character;
//   - realm and tokenname: a "safe id", [A-Za-z0-9_][A-Za-z0-9._-]*; realm 2..32 bytes,
//     tokenname 2..64 bytes;
//   - a Userid is 3..64 bytes; an Authid (with its token part) is at most 64+1+64 bytes.
//
// The realm is found at the last '@' and the token name at the last '!', so a name may itself
// contain '@' or '!' (PBS allows it; neither can appear in a realm or token name).
// Parsing never allocates beyond the returned strings, which are substrings of the input.
package authid

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits, as in PBS.
const (
	MaxUseridLen    = 64
	MinUseridLen    = 3
	MinRealmLen     = 2
	MaxRealmLen     = 32
	MinTokenNameLen = 2
	MaxTokenNameLen = 64
	MaxAuthidLen    = MaxUseridLen + 1 + MaxTokenNameLen
)

// ErrSyntax is wrapped by every error returned for a malformed identifier.
var ErrSyntax = errors.New("invalid identifier")

// Authid is a parsed user or token identifier. The zero value is not valid.
type Authid struct {
	Name  string // user name, before the '@'
	Realm string // realm, after the '@'
	Token string // token name after the '!', empty for a user
}

// Userid returns "name@realm".
func (a Authid) Userid() string { return a.Name + "@" + a.Realm }

// IsToken reports whether a names an API token.
func (a Authid) IsToken() bool { return a.Token != "" }

// String returns the identifier in PBS syntax.
func (a Authid) String() string {
	if a.Token == "" {
		return a.Userid()
	}
	return a.Name + "@" + a.Realm + "!" + a.Token
}

// Parse parses a user id or a token id.
func Parse(s string) (Authid, error) {
	if len(s) > MaxAuthidLen {
		return Authid{}, syntaxErr(s, fmt.Sprintf("%d bytes, at most %d", len(s), MaxAuthidLen))
	}
	var a Authid
	user := s
	if i := strings.LastIndexByte(s, '!'); i >= 0 && strings.LastIndexByte(s, '@') < i {
		user, a.Token = s[:i], s[i+1:]
		if err := checkSafeID(a.Token, "token name", MinTokenNameLen, MaxTokenNameLen); err != nil {
			return Authid{}, syntaxErr(s, err.Error())
		}
	}
	u, err := ParseUserid(user)
	if err != nil {
		return Authid{}, err
	}
	a.Name, a.Realm = u.Name, u.Realm
	return a, nil
}

// ParseToken parses a token id and fails for a plain user id.
func ParseToken(s string) (Authid, error) {
	a, err := Parse(s)
	if err != nil {
		return Authid{}, err
	}
	if !a.IsToken() {
		return Authid{}, syntaxErr(s, "no token name (want user@realm!name)")
	}
	return a, nil
}

// CheckTokenName checks a token name alone, the part after the '!': 2..64 bytes of
// A-Za-z0-9_.- not starting with '.' or '-'. Check a name given apart from its user with it
// before joining them: a '!' or '@' in the name would otherwise move where Parse splits the
// joined id, and its error would name another part ("a@pbs!a!b" has the name "b", 1 byte).
func CheckTokenName(name string) error {
	if err := checkSafeID(name, "token name", MinTokenNameLen, MaxTokenNameLen); err != nil {
		return fmt.Errorf("%v: %w", err, ErrSyntax)
	}
	return nil
}

// ParseUserid parses "name@realm" and fails for a token id.
func ParseUserid(s string) (Authid, error) {
	if len(s) < MinUseridLen || len(s) > MaxUseridLen {
		return Authid{}, syntaxErr(s, fmt.Sprintf("user id is %d bytes, want %d..%d", len(s), MinUseridLen, MaxUseridLen))
	}
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return Authid{}, syntaxErr(s, "no realm (want name@realm)")
	}
	name, realm := s[:i], s[i+1:]
	if name == "" {
		return Authid{}, syntaxErr(s, "empty user name")
	}
	if !utf8.ValidString(name) {
		return Authid{}, syntaxErr(s, "user name is not valid UTF-8")
	}
	for _, r := range name {
		if r == ':' || r == '/' || r <= ' ' || r == 0x7f || (r >= 0x80 && r <= 0x9f) || isSpace(r) {
			return Authid{}, syntaxErr(s, fmt.Sprintf("user name contains %q", r))
		}
	}
	if err := checkSafeID(realm, "realm", MinRealmLen, MaxRealmLen); err != nil {
		return Authid{}, syntaxErr(s, err.Error())
	}
	return Authid{Name: name, Realm: realm}, nil
}

func isSpace(r rune) bool {
	switch r {
	case '\u0085', '\u00a0', '\u1680', '\u2028', '\u2029', '\u202f', '\u205f', '\u3000':
		return true
	}
	return r >= '\u2000' && r <= '\u200a'
}

// checkSafeID checks PBS's safe id syntax [A-Za-z0-9_][A-Za-z0-9._-]* and a length range.
func checkSafeID(s, what string, minLen, maxLen int) error {
	if len(s) < minLen || len(s) > maxLen {
		return fmt.Errorf("%s is %d bytes, want %d..%d", what, len(s), minLen, maxLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
		if i > 0 {
			ok = ok || c == '.' || c == '-'
		}
		if !ok {
			return fmt.Errorf("%s has %q at byte %d (allowed: A-Z a-z 0-9 _ and, after the first, . -)", what, c, i)
		}
	}
	return nil
}

func syntaxErr(s, why string) error {
	return fmt.Errorf("parsing id %q: %s: %w", clip(s), why, ErrSyntax)
}

// clip shortens very long input in error messages.
func clip(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
