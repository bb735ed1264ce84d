package tfa

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"

	"github.com/go-webauthn/webauthn/webauthn"

	"gatehouse/authid"
)

// MaxFileSize bounds tfa.json (about 20 000 users with a few factors each).
const MaxFileSize = 16 << 20

// ErrSyntax is wrapped when tfa.json (or a part of it) cannot be parsed; writers then refuse
// to overwrite the file, so nothing is lost.
var ErrSyntax = errors.New("invalid tfa.json")

// Config is tfa.json, in PBS's layout (proxmox-tfa's TfaConfig).
type Config struct {
	U2F      json.RawMessage      `json:"u2f,omitempty"` // kept as read; U2F is not supported
	Webauthn *WebauthnConfig      `json:"webauthn,omitempty"`
	Users    map[string]*UserData `json:"users,omitempty"`
}

// WebauthnConfig is the relying party: PBS's "webauthn" section, set with
// PUT /config/access/tfa/webauthn. Without it WebAuthn cannot be registered nor used.
type WebauthnConfig struct {
	RP              string `json:"rp"`                         // relying party name, shown by the browser
	Origin          string `json:"origin,omitempty"`           // e.g. "https://gate.example.com:8007"; required here
	ID              string `json:"id"`                         // relying party id: the host name, e.g. "gate.example.com"
	AllowSubdomains *bool  `json:"allow-subdomains,omitempty"` // kept; Gatehouse accepts the origin alone
}

// UserData is one user's second factors and lock state (proxmox-tfa's TfaUserData).
type UserData struct {
	TOTP     []Entry   `json:"totp,omitempty"`     // entry: "otpauth://totp/..." or {"totp": uri, "last-count": n}
	U2F      []Entry   `json:"u2f,omitempty"`      // kept; not supported for login
	Webauthn []Entry   `json:"webauthn,omitempty"` // entry: a go-webauthn credential (PBS's webauthn-rs entries are kept, unusable)
	Recovery *Recovery `json:"recovery,omitempty"`
	Yubico   []Entry   `json:"yubico,omitempty"` // kept; not supported for login

	// TOTPLocked is set after TOTPFailureLimit consecutive TOTP failures; a recovery code or
	// an administrator's unlock clears it.
	TOTPLocked bool `json:"totp-locked,omitempty"`
	// TFALockedUntil (unix seconds) blocks every second factor after TFAFailureLimit
	// consecutive failures.
	TFALockedUntil int64 `json:"tfa-locked-until,omitempty"`
}

// Info describes one entry (proxmox-tfa's TfaInfo): a missing "enable" means enabled.
type Info struct {
	ID          string `json:"id"`
	Description string `json:"description,omitempty"`
	Created     int64  `json:"created"`
	Enable      *bool  `json:"enable,omitempty"`
}

// Enabled reports whether the entry may be used.
func (i Info) Enabled() bool { return i.Enable == nil || *i.Enable }

// SetEnabled records e the way PBS writes it (omitted when true).
func (i *Info) SetEnabled(e bool) {
	if e {
		i.Enable = nil
		return
	}
	i.Enable = &e
}

// Entry is one registered factor: its Info, flattened, and the factor's data.
type Entry struct {
	Info
	Entry json.RawMessage `json:"entry"`
}

// Recovery is a user's set of recovery codes: HMAC-SHA256 of each code, keyed with Secret (a
// hex string used as the key's bytes), in hex; a used code becomes null, keeping the indices.
type Recovery struct {
	Secret  string    `json:"secret"`
	Entries []*string `json:"entries"`
	Created int64     `json:"created"`
}

// totpEntry is the object form of a TOTP entry, written once a code has been used.
type totpEntry struct {
	TOTP      string `json:"totp"`
	LastCount *int64 `json:"last-count,omitempty"`
}

// NoCount is the last-count of a TOTP entry never used (PBS: i64::MIN).
const NoCount = math.MinInt64

// TOTP returns the entry's otpauth URI and the time step of its last accepted code (NoCount
// when none).
func (e Entry) TOTP() (uri string, last int64, err error) {
	d := json.NewDecoder(bytes.NewReader(e.Entry))
	d.DisallowUnknownFields()
	if len(e.Entry) > 0 && e.Entry[0] == '"' {
		if err := d.Decode(&uri); err != nil {
			return "", 0, fmt.Errorf("reading totp entry %s: %w", e.ID, ErrSyntax)
		}
		return uri, NoCount, nil
	}
	var t totpEntry
	if err := d.Decode(&t); err != nil || t.TOTP == "" {
		return "", 0, fmt.Errorf("reading totp entry %s: %w", e.ID, ErrSyntax)
	}
	if t.LastCount == nil {
		return t.TOTP, NoCount, nil
	}
	return t.TOTP, *t.LastCount, nil
}

// setTOTP stores uri and last (NoCount: the plain string form).
func (e *Entry) setTOTP(uri string, last int64) {
	var b []byte
	if last == NoCount {
		b, _ = json.Marshal(uri)
	} else {
		b, _ = json.Marshal(totpEntry{TOTP: uri, LastCount: &last})
	}
	e.Entry = b
}

// Credential returns the entry's WebAuthn credential. An entry written by PBS (webauthn-rs's
// format, which has no "publicKey") is refused with ErrUnsupported: it is kept, not usable.
func (e Entry) Credential() (*webauthn.Credential, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(e.Entry, &probe); err != nil {
		return nil, fmt.Errorf("reading webauthn entry %s: %w", e.ID, ErrSyntax)
	}
	if _, ok := probe["publicKey"]; !ok {
		return nil, fmt.Errorf("webauthn entry %s was registered by PBS (webauthn-rs format): %w", e.ID, ErrUnsupported)
	}
	var c webauthn.Credential
	if err := json.Unmarshal(e.Entry, &c); err != nil || len(c.ID) == 0 || len(c.PublicKey) == 0 {
		return nil, fmt.Errorf("reading webauthn entry %s: %w", e.ID, ErrSyntax)
	}
	return &c, nil
}

// Parse parses tfa.json. Empty input is an empty config. Unknown fields, user ids that are
// not valid, duplicate or empty entry ids and TOTP entries that do not parse are refused with
// an error wrapping ErrSyntax that names the user and entry.
func Parse(data []byte) (*Config, error) {
	c := &Config{}
	if len(bytes.TrimSpace(data)) == 0 {
		return c, nil
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	// d.More would miss a stray "}" or "]": only io.EOF means nothing follows.
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrSyntax)
	}
	for id, u := range c.Users {
		if _, err := authid.ParseUserid(id); err != nil {
			return nil, fmt.Errorf("%w: user %q: %w", ErrSyntax, id, err)
		}
		if u == nil {
			return nil, fmt.Errorf("%w: user %s: null entry", ErrSyntax, id)
		}
		if err := u.check(); err != nil {
			return nil, fmt.Errorf("%w: user %s: %w", ErrSyntax, id, err)
		}
	}
	return c, nil
}

// check validates one user's entries.
func (u *UserData) check() error {
	seen := map[string]bool{"recovery": true}
	for _, list := range [][]Entry{u.TOTP, u.U2F, u.Webauthn, u.Yubico} {
		for _, e := range list {
			if e.ID == "" || seen[e.ID] {
				return fmt.Errorf("entry id %q is empty or used twice", e.ID)
			}
			seen[e.ID] = true
			if len(e.Entry) == 0 {
				return fmt.Errorf("entry %s has no data", e.ID)
			}
		}
	}
	for _, e := range u.TOTP {
		uri, _, err := e.TOTP()
		if err != nil {
			return err
		}
		if _, err := parseTOTP(uri); err != nil {
			return fmt.Errorf("totp entry %s: %w", e.ID, err)
		}
	}
	if r := u.Recovery; r != nil {
		if r.Secret == "" {
			return errors.New("recovery keys have no secret")
		}
		for i, h := range r.Entries {
			if h != nil && len(*h) != 64 {
				return fmt.Errorf("recovery key %d is not a hex HMAC-SHA256", i)
			}
		}
	}
	return nil
}

// Encode returns the file's bytes: JSON with sorted keys and a final newline.
func (c *Config) Encode() ([]byte, error) {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding tfa.json: %w", err)
	}
	return append(b, '\n'), nil
}

// user returns userid's data, creating it when create is set.
func (c *Config) user(userid string, create bool) *UserData {
	u := c.Users[userid]
	if u == nil && create {
		if c.Users == nil {
			c.Users = map[string]*UserData{}
		}
		u = &UserData{}
		c.Users[userid] = u
	}
	return u
}

// Empty reports whether u holds no factor at all (PBS then drops the user).
func (u *UserData) Empty() bool {
	return len(u.TOTP) == 0 && len(u.U2F) == 0 && len(u.Webauthn) == 0 && len(u.Yubico) == 0 && u.Recovery == nil
}

// Userids returns the users with TFA data, sorted.
func (c *Config) Userids() []string {
	ids := make([]string, 0, len(c.Users))
	for id := range c.Users {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// TypedInfo is an entry as the API shows it (proxmox-tfa's TypedTfaInfo).
type TypedInfo struct {
	Type string `json:"type"` // totp, u2f, webauthn, recovery, yubico
	Info
}

// Entries lists u's entries in PBS's order: recovery, totp, webauthn, u2f, yubico.
func (u *UserData) Entries() []TypedInfo {
	var out []TypedInfo
	if u == nil {
		return []TypedInfo{}
	}
	if u.Recovery != nil {
		out = append(out, TypedInfo{Type: "recovery", Info: Info{ID: "recovery", Created: u.Recovery.Created}})
	}
	for _, l := range []struct {
		typ  string
		list []Entry
	}{{"totp", u.TOTP}, {"webauthn", u.Webauthn}, {"u2f", u.U2F}, {"yubico", u.Yubico}} {
		for _, e := range l.list {
			out = append(out, TypedInfo{Type: l.typ, Info: e.Info})
		}
	}
	if out == nil {
		out = []TypedInfo{}
	}
	return out
}

// find returns a pointer to the entry with id and its type, or nil.
func (u *UserData) find(id string) (*Entry, string) {
	for _, l := range []struct {
		typ  string
		list []Entry
	}{{"totp", u.TOTP}, {"webauthn", u.Webauthn}, {"u2f", u.U2F}, {"yubico", u.Yubico}} {
		for i := range l.list {
			if l.list[i].ID == id {
				return &l.list[i], l.typ
			}
		}
	}
	return nil, ""
}

// remove deletes the entry with id ("recovery" for the recovery keys); false if none.
func (u *UserData) remove(id string) bool {
	if id == "recovery" {
		had := u.Recovery != nil
		u.Recovery = nil
		return had
	}
	for _, l := range []*[]Entry{&u.TOTP, &u.Webauthn, &u.U2F, &u.Yubico} {
		for i := range *l {
			if (*l)[i].ID == id {
				*l = append((*l)[:i:i], (*l)[i+1:]...)
				return true
			}
		}
	}
	return false
}

// validDescription is PBS's single-line comment rule, at most 255 bytes.
func validDescription(s string) error {
	if len(s) > 255 || strings.ContainsAny(s, "\r\n\x00") {
		return fmt.Errorf("description must be a single line of at most 255 bytes: %w", ErrInvalid)
	}
	return nil
}
