// Package users reads and writes PBS's user.cfg, the list of users and API token entries, and
// answers the per-request question "may this user or token authenticate now?" from a cached,
// immutable parse that is invalidated through the shared user generation counter.
//
// # File
//
// user.cfg is a section config file (package sectionconfig) as PBS writes it
// (pbs-config/src/user.rs; types in pbs-api-types/src/user.rs):
//
//	user: root@pam
//		comment Superuser
//		email root@example.com
//		enable true
//		expire 0
//
//	token: root@pam!backup
//		comment nightly backup
//		enable true
//		expire 1767225600
//
// Section types:
//   - "user: <userid>" (authid.ParseUserid). Properties, all optional: comment (one line, no
//     control characters), email, firstname, lastname (2..64 characters each, PBS's
//     EMAIL_SCHEMA / FIRST_NAME_SCHEMA / LAST_NAME_SCHEMA), enable (boolean, default true),
//     expire (integer >= 0, seconds since the epoch, 0 = never; default 0).
//   - "token: <userid>!<tokenname>" (authid.ParseToken). Properties: comment, enable, expire,
//     as for users. The token's user must have a "user" section. Token secrets are not here
//     but in token.shadow (package tokenshadow).
//
// Booleans are read as PBS's proxmox-schema parse_boolean does: 1, on, yes, true / 0, off,
// no, false, in any letter case; integers as Rust's i64 parser: optional '+', decimal digits.
// They are written as PBS writes them: "true"/"false" and plain decimal.
//
// Parse refuses, naming the line and the key: unknown section types, unknown or repeated
// properties (PBS's schemas are strict, and refusing loses nothing: writers never overwrite a
// file they cannot parse), invalid ids, bad values, duplicate ids and tokens whose user has no
// section. Every Parse error wraps ErrSyntax.
//
// As PBS does (pbs-config user::config), a file without "user: root@pam" reads as if it ended
// with that section holding only "comment Superuser"; the next write puts it in the file.
// A missing file is therefore a config with root@pam alone; Store.Bootstrap writes it.
//
// Writes keep the file's order of sections, properties and comments, and the spelling of
// values that did not change ("enable 1" stays "enable 1" unless enable changes). New
// sections go at the end, new properties in PBS's (alphabetical) order, and a property is
// only added when its value differs from the default.
//
// # Activity
//
// Config.Active(id, now) implements PBS's CachedUserInfo::is_active_auth_id: the user exists,
// is enabled and not expired; for a token, the token entry also exists, is enabled and not
// expired. Something expires at its expire time: expired when expire > 0 && now >= expire
// (PBS: expire > 0 && expire <= now, in whole seconds). On success Active does not allocate.
//
// # Store and cache
//
// A Store holds one parsed Config per process behind an atomic pointer, stamped with the
// user generation of the shared ConfigVersionCache (shmem.User) read before the file was,
// and with the file's identity (device, inode, size, mtime, ctime).
//   - Store.Config, fast path: one atomic load of the generation, one of the snapshot; equal
//     generations return the cached Config (no system call, no allocation; Config plus a
//     successful Active take about 19 ns on the 2-core VM, BenchmarkConfigActive).
//   - Otherwise it re-reads and parses the file under a mutex and caches the result, or the
//     error if the file is invalid (unparsable or unsafe), until the generation or the file
//     changes; other errors (I/O) are not cached.
//   - Update: exclusive lock (lockfile, 10 s default), read and parse the file (refusing to
//     overwrite a file it cannot parse), change that private copy, encode, and unless the
//     bytes are unchanged replace the file atomically (mode 0640 by default, temp + fsync +
//     rename + fsync dir), bump shmem.User, unlock. Bootstrap does the same, but only writes
//     when the file does not exist. Once Update has returned, every Store.Config that starts afterwards,
//     in any process sharing the generation file, sees the change.
//   - Manual edits bump no generation: Watch calls CheckFile every 250 ms, which drops the
//     cached Config when the file's identity changed, so edits take effect within 1 s.
//
// The file must be a regular file, not a symbolic link, not group- or world-writable (0640
// root:gatehouse as written; 0644 is accepted), at most 16 MiB (sectionconfig.MaxFileSize).
// A Config returned by Store.Config is shared by every caller: never modify it (Clone it).
package users

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gatehouse/authid"
	"gatehouse/sectionconfig"
)

// Names and limits, as in PBS.
const (
	Root        = "root@pam"  // the superuser, always present (see the package comment)
	RootComment = "Superuser" // comment PBS gives root@pam
	MinNameLen  = 2           // characters in email, firstname, lastname
	MaxNameLen  = 64
)

// Section types and property keys of user.cfg.
const (
	typeUser  = "user"
	typeToken = "token"

	keyComment   = "comment"
	keyEmail     = "email"
	keyEnable    = "enable"
	keyExpire    = "expire"
	keyFirstname = "firstname"
	keyLastname  = "lastname"
)

// Errors. Parse errors wrap ErrSyntax; Active's wrap ErrNoUser, ErrNoToken, ErrDisabled or
// ErrExpired; the Set methods' validation errors wrap ErrInvalid.
var (
	ErrSyntax      = sectionconfig.ErrSyntax
	ErrNoUser      = errors.New("no such user")
	ErrNoToken     = errors.New("no such API token")
	ErrDisabled    = errors.New("account disabled")
	ErrExpired     = errors.New("account expired")
	ErrInvalid     = errors.New("invalid user or token")
	ErrRootUser    = errors.New("root@pam cannot be deleted")
	ErrPermissions = errors.New("user config has unsafe permissions")
)

// User is one "user" section.
type User struct {
	ID                                  string // userid, name@realm
	Enable                              bool   // default true
	Expire                              int64  // unix seconds; 0 = never
	Comment, Email, Firstname, Lastname string // empty = not set
}

// Token is one "token" section: an API token's metadata (its secret is in token.shadow).
type Token struct {
	ID      string // user@realm!name
	Enable  bool   // default true
	Expire  int64  // unix seconds; 0 = never
	Comment string // empty = not set
}

// Config is a parsed user.cfg. The zero value is not usable; use Parse.
type Config struct {
	secs   []sectionconfig.Section // file order
	pos    map[string]int          // section id -> index in secs
	users  map[string]User
	tokens map[string]Token
}

// Parse parses user.cfg. Errors wrap ErrSyntax and name the line.
func Parse(data []byte) (*Config, error) {
	secs, err := sectionconfig.Parse(data)
	if err != nil {
		return nil, err
	}
	c := &Config{
		secs:   secs,
		pos:    make(map[string]int, len(secs)+1),
		users:  make(map[string]User, len(secs)+1),
		tokens: map[string]Token{},
	}
	for i := range secs {
		s := &secs[i]
		c.pos[s.ID] = i
		switch s.Type {
		case typeUser:
			u, err := parseUser(s)
			if err != nil {
				return nil, err
			}
			c.users[u.ID] = u
		case typeToken:
			t, err := parseToken(s)
			if err != nil {
				return nil, err
			}
			c.tokens[t.ID] = t
		default:
			return nil, lineErr(s.Line, "unknown section type %q (want %q or %q)", s.Type, typeUser, typeToken)
		}
	}
	if _, ok := c.users[Root]; !ok {
		c.pos[Root] = len(c.secs)
		c.secs = append(c.secs, sectionconfig.Section{Type: typeUser, ID: Root,
			Props: []sectionconfig.Prop{{Key: keyComment, Value: RootComment}}})
		c.users[Root] = User{ID: Root, Enable: true, Comment: RootComment}
	}
	for i := range c.secs {
		s := &c.secs[i]
		if s.Type != typeToken {
			continue
		}
		if u := userOf(s.ID); !c.hasUser(u) {
			return nil, lineErr(s.Line, "token %s: its user %s has no \"user: %s\" section", s.ID, u, u)
		}
	}
	return c, nil
}

func lineErr(n int, format string, args ...any) error {
	return fmt.Errorf("line %d: %s: %w", n, fmt.Sprintf(format, args...), ErrSyntax)
}

func parseUser(s *sectionconfig.Section) (User, error) {
	if _, err := authid.ParseUserid(s.ID); err != nil {
		return User{}, lineErr(s.Line, "user: %v", err)
	}
	u := User{ID: s.ID, Enable: true}
	var seen props
	for i := range s.Props {
		p := &s.Props[i]
		if err := seen.add(p, typeUser, s.ID); err != nil {
			return User{}, err
		}
		var err error
		switch p.Key {
		case keyComment:
			u.Comment = p.Value
		case keyEnable:
			u.Enable, err = parseBool(p.Value)
		case keyExpire:
			u.Expire, err = parseExpire(p.Value)
		case keyEmail:
			u.Email, err = p.Value, checkName(p.Value)
		case keyFirstname:
			u.Firstname, err = p.Value, checkName(p.Value)
		case keyLastname:
			u.Lastname, err = p.Value, checkName(p.Value)
		default:
			err = fmt.Errorf("unknown property (a user has %s, %s, %s, %s, %s, %s)",
				keyComment, keyEmail, keyEnable, keyExpire, keyFirstname, keyLastname)
		}
		if err != nil {
			return User{}, lineErr(p.Line, "user %s: %s: %v", s.ID, clip(p.Key), err)
		}
	}
	return u, nil
}

func parseToken(s *sectionconfig.Section) (Token, error) {
	if _, err := authid.ParseToken(s.ID); err != nil {
		return Token{}, lineErr(s.Line, "token: %v", err)
	}
	t := Token{ID: s.ID, Enable: true}
	var seen props
	for i := range s.Props {
		p := &s.Props[i]
		if err := seen.add(p, typeToken, s.ID); err != nil {
			return Token{}, err
		}
		var err error
		switch p.Key {
		case keyComment:
			t.Comment = p.Value
		case keyEnable:
			t.Enable, err = parseBool(p.Value)
		case keyExpire:
			t.Expire, err = parseExpire(p.Value)
		default:
			err = fmt.Errorf("unknown property (a token has %s, %s, %s)", keyComment, keyEnable, keyExpire)
		}
		if err != nil {
			return Token{}, lineErr(p.Line, "token %s: %s: %v", s.ID, clip(p.Key), err)
		}
	}
	return t, nil
}

// props finds repeated keys among the (few) known ones: the line each was first seen at.
type props struct {
	lines [6]int
}

func (ps *props) add(p *sectionconfig.Prop, typ, id string) error {
	i := 0
	switch p.Key {
	case keyComment:
		i = 0
	case keyEnable:
		i = 1
	case keyExpire:
		i = 2
	case keyEmail:
		i = 3
	case keyFirstname:
		i = 4
	case keyLastname:
		i = 5
	default:
		return nil // reported by the caller
	}
	if first := ps.lines[i]; first != 0 {
		return lineErr(p.Line, "%s %s: duplicate property %s (first at line %d)", typ, id, p.Key, first)
	}
	ps.lines[i] = max(p.Line, 1)
	return nil
}

// parseBool reads a boolean as proxmox-schema's parse_boolean (the value is lowercased, as
// Rust's str::to_lowercase does, then compared).
func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "1", "on", "yes", "true":
		return true, nil
	case "0", "off", "no", "false":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (want true/false, 1/0, yes/no or on/off)", clip(v))
}

func formatBool(b bool) string { return strconv.FormatBool(b) }

// parseExpire reads a non-negative decimal integer as Rust's i64 parser (optional '+').
func parseExpire(v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not an integer (want unix seconds, 0 for never)", clip(v))
	}
	if n < 0 {
		return 0, fmt.Errorf("%d is negative (want unix seconds, 0 for never)", n)
	}
	return n, nil
}

// checkName checks email, firstname and lastname: 2..64 characters, as PBS's schemas.
func checkName(v string) error {
	if n := utf8.RuneCountInString(v); n < MinNameLen || n > MaxNameLen {
		return fmt.Errorf("%d characters, want %d..%d", n, MinNameLen, MaxNameLen)
	}
	return nil
}

// userOf returns the user part of a token id, or id itself when it has no token part. It
// does not allocate.
func userOf(id string) string {
	if i := strings.LastIndexByte(id, '!'); i >= 0 && i > strings.LastIndexByte(id, '@') {
		return id[:i]
	}
	return id
}

// Encode returns the file contents. It fails (wrapping ErrSyntax) only if the Config holds a
// value that cannot be written, which the Set methods do not let in.
func (c *Config) Encode() ([]byte, error) {
	return sectionconfig.Encode(c.secs)
}

// Clone returns a deep copy that can be modified without affecting c.
func (c *Config) Clone() *Config {
	d := &Config{
		secs:   make([]sectionconfig.Section, len(c.secs)),
		pos:    make(map[string]int, len(c.pos)),
		users:  make(map[string]User, len(c.users)),
		tokens: make(map[string]Token, len(c.tokens)),
	}
	for i := range c.secs {
		d.secs[i] = c.secs[i].Clone()
	}
	for k, v := range c.pos {
		d.pos[k] = v
	}
	for k, v := range c.users {
		d.users[k] = v
	}
	for k, v := range c.tokens {
		d.tokens[k] = v
	}
	return d
}

// User returns the user with the given userid.
func (c *Config) User(id string) (User, bool) {
	u, ok := c.users[id]
	return u, ok
}

func (c *Config) hasUser(id string) bool {
	_, ok := c.users[id]
	return ok
}

// Users returns every user, in file order.
func (c *Config) Users() []User {
	out := make([]User, 0, len(c.users))
	for i := range c.secs {
		if c.secs[i].Type == typeUser {
			out = append(out, c.users[c.secs[i].ID])
		}
	}
	return out
}

// Token returns the token entry with the given id (user@realm!name).
func (c *Config) Token(id string) (Token, bool) {
	t, ok := c.tokens[id]
	return t, ok
}

// Tokens returns the token entries of the user, in file order.
func (c *Config) Tokens(userid string) []Token {
	var out []Token
	for i := range c.secs {
		s := &c.secs[i]
		if s.Type == typeToken && userOf(s.ID) == userid {
			out = append(out, c.tokens[s.ID])
		}
	}
	return out
}

// Active reports whether id, a userid or a token id, may authenticate at now: nil, or an
// error wrapping ErrNoUser, ErrNoToken, ErrDisabled or ErrExpired that names the id. See the
// package comment for the rules.
func (c *Config) Active(id string, now time.Time) error {
	t := now.Unix()
	userid := userOf(id)
	u, ok := c.users[userid]
	switch {
	case !ok:
		return activeErr(id, userid, "", ErrNoUser)
	case !u.Enable:
		return activeErr(id, userid, "", ErrDisabled)
	case expired(u.Expire, t):
		return activeErr(id, userid, expiredAt(u.Expire), ErrExpired)
	case userid == id:
		return nil
	}
	tok, ok := c.tokens[id]
	switch {
	case !ok:
		return activeErr(id, "", "", ErrNoToken)
	case !tok.Enable:
		return activeErr(id, "", "", ErrDisabled)
	case expired(tok.Expire, t):
		return activeErr(id, "", expiredAt(tok.Expire), ErrExpired)
	}
	return nil
}

func expired(expire, now int64) bool { return expire > 0 && now >= expire }

func expiredAt(expire int64) string {
	return " at " + time.Unix(expire, 0).UTC().Format(time.RFC3339)
}

// activeErr builds Active's error: "user alice@pbs: account disabled", "token
// alice@pbs!ci: user alice@pbs: account expired at 2026-01-01T00:00:00Z".
func activeErr(id, userid, detail string, sentinel error) error {
	var b strings.Builder
	if userid != id {
		b.WriteString("token ")
		b.WriteString(strconv.Quote(clip(id)))
		b.WriteString(": ")
	}
	if userid != "" {
		b.WriteString("user ")
		b.WriteString(strconv.Quote(clip(userid)))
		b.WriteString(": ")
	}
	return fmt.Errorf("%s%w%s", b.String(), sentinel, detail)
}

// SetUser creates the user or updates it in place. It fails, wrapping ErrInvalid, when u
// cannot be stored (bad userid, expire < 0, a name outside 2..64 characters, a value with
// control characters or leading or trailing white space).
func (c *Config) SetUser(u User) error {
	if _, err := authid.ParseUserid(u.ID); err != nil {
		return fmt.Errorf("setting user: %v: %w", err, ErrInvalid)
	}
	if err := checkUser(u); err != nil {
		return fmt.Errorf("setting user %s: %v: %w", u.ID, err, ErrInvalid)
	}
	s, err := c.section(typeUser, u.ID)
	if err != nil {
		return err
	}
	old, ok := c.users[u.ID]
	if !ok {
		old = User{Enable: true}
	}
	setString(s, keyComment, old.Comment, u.Comment)
	setString(s, keyEmail, old.Email, u.Email)
	setValue(s, keyEnable, old.Enable != u.Enable, u.Enable, formatBool(u.Enable))
	setValue(s, keyExpire, old.Expire != u.Expire, u.Expire == 0, strconv.FormatInt(u.Expire, 10))
	setString(s, keyFirstname, old.Firstname, u.Firstname)
	setString(s, keyLastname, old.Lastname, u.Lastname)
	c.users[u.ID] = u
	return nil
}

func checkUser(u User) error {
	if u.Expire < 0 {
		return fmt.Errorf("expire %d is negative", u.Expire)
	}
	if err := sectionconfig.CheckProp(keyComment, u.Comment); err != nil {
		return err
	}
	for _, f := range []struct{ key, v string }{{keyEmail, u.Email}, {keyFirstname, u.Firstname}, {keyLastname, u.Lastname}} {
		if f.v == "" {
			continue
		}
		if err := checkName(f.v); err != nil {
			return fmt.Errorf("%s: %v", f.key, err)
		}
		if err := sectionconfig.CheckProp(f.key, f.v); err != nil {
			return err
		}
	}
	return nil
}

// SetToken creates the token entry or updates it in place. Its user must exist (ErrNoUser);
// invalid values are refused as by SetUser (ErrInvalid).
func (c *Config) SetToken(t Token) error {
	if _, err := authid.ParseToken(t.ID); err != nil {
		return fmt.Errorf("setting token: %v: %w", err, ErrInvalid)
	}
	if t.Expire < 0 {
		return fmt.Errorf("setting token %s: expire %d is negative: %w", t.ID, t.Expire, ErrInvalid)
	}
	if err := sectionconfig.CheckProp(keyComment, t.Comment); err != nil {
		return fmt.Errorf("setting token %s: %v: %w", t.ID, err, ErrInvalid)
	}
	if u := userOf(t.ID); !c.hasUser(u) {
		return fmt.Errorf("setting token %s: user %s: %w", t.ID, u, ErrNoUser)
	}
	s, err := c.section(typeToken, t.ID)
	if err != nil {
		return err
	}
	old, ok := c.tokens[t.ID]
	if !ok {
		old = Token{Enable: true}
	}
	setString(s, keyComment, old.Comment, t.Comment)
	setValue(s, keyEnable, old.Enable != t.Enable, t.Enable, formatBool(t.Enable))
	setValue(s, keyExpire, old.Expire != t.Expire, t.Expire == 0, strconv.FormatInt(t.Expire, 10))
	c.tokens[t.ID] = t
	return nil
}

// section returns the section of the given type and id, appending a new one if there is none.
func (c *Config) section(typ, id string) (*sectionconfig.Section, error) {
	if i, ok := c.pos[id]; ok {
		s := &c.secs[i]
		if s.Type != typ {
			return nil, fmt.Errorf("setting %s %s: the id belongs to a %s section: %w", typ, id, s.Type, ErrInvalid)
		}
		return s, nil
	}
	c.pos[id] = len(c.secs)
	c.secs = append(c.secs, sectionconfig.Section{Type: typ, ID: id})
	return &c.secs[len(c.secs)-1], nil
}

// setString sets a string property: removed when the new value is empty, untouched when it
// did not change.
func setString(s *sectionconfig.Section, key, old, v string) {
	if _, present := s.Get(key); present && old == v {
		return
	}
	if v == "" {
		s.Delete(key)
		return
	}
	setValue(s, key, true, false, v)
}

// setValue writes text as the value of key if the value changed, keeping the property's place;
// a missing property whose new value is the default is not added.
func setValue(s *sectionconfig.Section, key string, changed, isDefault bool, text string) {
	_, present := s.Get(key)
	switch {
	case present && !changed, !present && isDefault:
		return
	case present:
		s.Set(key, text)
		return
	}
	// Insert in PBS's alphabetical order (PBS writes serde_json's sorted object keys).
	i := 0
	for i < len(s.Props) && s.Props[i].Key < key {
		i++
	}
	s.Props = append(s.Props, sectionconfig.Prop{})
	copy(s.Props[i+1:], s.Props[i:])
	s.Props[i] = sectionconfig.Prop{Key: key, Value: text}
}

// DeleteUser removes the user and its token entries (their secrets in token.shadow are the
// caller's to delete). It fails with ErrNoUser when there is no such user, and with
// ErrRootUser for root@pam, which PBS would re-create on the next read.
func (c *Config) DeleteUser(id string) error {
	if id == Root {
		return fmt.Errorf("deleting user %s: %w", id, ErrRootUser)
	}
	if _, ok := c.users[id]; !ok {
		return fmt.Errorf("deleting user %q: %w", clip(id), ErrNoUser)
	}
	c.remove(func(s *sectionconfig.Section) bool {
		return s.ID == id || s.Type == typeToken && userOf(s.ID) == id
	})
	delete(c.users, id)
	for tid := range c.tokens {
		if userOf(tid) == id {
			delete(c.tokens, tid)
		}
	}
	return nil
}

// DeleteToken removes the token entry. It fails with ErrNoToken when there is none.
func (c *Config) DeleteToken(id string) error {
	if _, ok := c.tokens[id]; !ok {
		return fmt.Errorf("deleting token %q: %w", clip(id), ErrNoToken)
	}
	c.remove(func(s *sectionconfig.Section) bool { return s.ID == id })
	delete(c.tokens, id)
	return nil
}

// remove drops the sections drop selects and re-indexes the rest.
func (c *Config) remove(drop func(*sectionconfig.Section) bool) {
	kept := c.secs[:0]
	for i := range c.secs {
		if !drop(&c.secs[i]) {
			kept = append(kept, c.secs[i])
		}
	}
	clear(c.secs[len(kept):])
	c.secs = kept
	clear(c.pos)
	for i := range c.secs {
		c.pos[c.secs[i].ID] = i
	}
}

// clip shortens long input in error messages.
func clip(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}
