// Package tfa keeps users' second factors (tfa.json, in PBS's layout) and checks them: TOTP,
// WebAuthn and recovery codes, with PBS's lockout. apid alone uses it.
//
// # Files
//
//   - tfa.json (config dir, 0600 root): the relying party ("webauthn") and, per user, the
//     lists "totp", "webauthn", "recovery", plus "u2f" and "yubico" entries, which are kept
//     when read and never usable for login (a user whose only enabled factors are of those
//     kinds cannot log in, rather than logging in without a second factor), and the lock
//     state "totp-locked" and "tfa-locked-until". Every write happens under the lock file
//     (lockfile, 10 s), atomically, and bumps the TFA generation (shmem).
//   - <run dir>/tfa/<userid>.json (0600): the WebAuthn challenges handed out and not yet
//     answered (2 minutes, each usable once) and the consecutive failure counts.
//
// # Factors
//
//   - TOTP: otpauth://totp URIs (github.com/pquerna/otp), SHA1/SHA256/SHA512, 6-8 digits,
//     30 s by default; a code matches at the current time step or one step either side, and
//     a step at or before the entry's last accepted one ("last-count") is refused, so a code
//     is accepted at most once. Adding an entry needs a current code, and that code's step
//     becomes its last-count.
//   - Recovery: 10 codes of 64 random bits ("0a1b-2c3d-4e5f-6a7b"), shown once, stored as
//     HMAC-SHA256 under a per-set secret; each works once. One set per user.
//   - WebAuthn (github.com/go-webauthn/webauthn): registration and login ceremonies against
//     the configured relying party id and origin; the user handle is the user id.
//
// # Two-step login and lockout
//
// Challenge returns the JSON that proxmox-tfa's TfaChallenge would ({"totp":true,
// "recovery":[indices],"webauthn":{"publicKey":...}}), which apid signs into a "!tfa!"
// ticket; Verify checks the answer ("totp:123456", "recovery:...", "webauthn:{json}").
// Failures are counted per user: TOTPFailureLimit (8) consecutive TOTP failures set
// totp-locked until an administrator unlocks it or a recovery code is used;
// TFAFailureLimit (100) consecutive failures of any kind block every second factor for
// LockTime (12 h); when the block runs out the count starts again from 0. A success resets the
// counts (a WebAuthn or recovery success leaves the TOTP count, as in PBS, except that a
// recovery code clears the TOTP lock and its count).
package tfa

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"

	"gatehouse/lockfile"
	"gatehouse/shmem"
)

// Limits (PBS's defaults).
const (
	TOTPFailureLimit = 8
	TFAFailureLimit  = 100
	LockTime         = 12 * time.Hour
	ChallengeTimeout = 2 * time.Minute
)

// Errors, for the API's status codes.
var (
	ErrInvalid     = errors.New("invalid request")                               // 400
	ErrNotFound    = errors.New("no such entry")                                 // 404
	ErrExists      = errors.New("already exists")                                // 400
	ErrFailed      = errors.New("second factor verification failed")             // 401
	ErrLocked      = errors.New("second factor is locked")                       // 401
	ErrUnsupported = errors.New("second factor of a kind that is not supported") // 401 at login
)

// Options configure a Manager.
type Options struct {
	Path             string        // tfa.json
	StateDir         string        // runtime state; created 0700 if missing
	LockPath         string        // default "<dir of Path>/.tfa.lck"
	Generations      *shmem.Cache  // required
	LockTimeout      time.Duration // default lockfile.DefaultTimeout
	TOTPFailureLimit int           // default TOTPFailureLimit
	TFAFailureLimit  int           // default TFAFailureLimit
	LockTime         time.Duration // default LockTime
	ChallengeTimeout time.Duration // default ChallengeTimeout
	Log              *slog.Logger
}

// Manager reads and changes tfa.json and the runtime state. Every method runs under one
// process mutex and the file lock, so concurrent logins of a user cannot both use one code.
type Manager struct {
	o  Options
	mu sync.Mutex
}

// Open checks o and creates the state directory.
func Open(o Options) (*Manager, error) {
	if o.Path == "" || o.StateDir == "" || o.Generations == nil {
		return nil, errors.New("opening tfa config: path, state directory and generations are required")
	}
	if o.LockPath == "" {
		o.LockPath = filepath.Join(filepath.Dir(o.Path), ".tfa.lck")
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = lockfile.DefaultTimeout
	}
	if o.TOTPFailureLimit <= 0 {
		o.TOTPFailureLimit = TOTPFailureLimit
	}
	if o.TFAFailureLimit <= 0 {
		o.TFAFailureLimit = TFAFailureLimit
	}
	if o.LockTime <= 0 {
		o.LockTime = LockTime
	}
	if o.ChallengeTimeout <= 0 {
		o.ChallengeTimeout = ChallengeTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating tfa state directory %s: %w", o.StateDir, err)
	}
	return &Manager{o: o}, nil
}

// Path returns the tfa.json path.
func (m *Manager) Path() string { return m.o.Path }

var readOptions = lockfile.ReadOptions{MaxSize: MaxFileSize, Forbidden: 0o077, TrustedOwner: true}

// read reads and parses tfa.json; a missing file is an empty config.
func (m *Manager) read() (*Config, []byte, error) {
	raw, _, err := lockfile.ReadFile(m.o.Path, readOptions)
	if errors.Is(err, fs.ErrNotExist) {
		return &Config{}, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading tfa config %s: %w", m.o.Path, err)
	}
	c, err := Parse(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("reading tfa config %s: %w", m.o.Path, err)
	}
	return c, raw, nil
}

// Config returns a private copy of the current tfa.json.
func (m *Manager) Config() (*Config, error) {
	c, _, err := m.read()
	return c, err
}

// modify runs fn on tfa.json under the locks; when fn asks to commit and the file changed, it
// is replaced atomically and the TFA generation bumped. fn's error is returned after that.
func (m *Manager) modify(what string, fn func(c *Config) (commit bool, err error)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	lk, err := lockfile.Exclusive(m.o.LockPath, m.o.LockTimeout)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer lk.Unlock()
	c, raw, err := m.read()
	if err != nil {
		return fmt.Errorf("%s: refusing to overwrite: %w", what, err)
	}
	commit, ferr := fn(c)
	if commit {
		for id, u := range c.Users {
			if u.Empty() {
				delete(c.Users, id)
			}
		}
		data, err := c.Encode()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if !bytes.Equal(data, raw) {
			// Never write what Parse would refuse (e.g. a user id that is not name@realm):
			// every later read, and so every later change, would fail.
			if _, err := Parse(data); err != nil {
				return fmt.Errorf("%s: %w: %w", what, ErrInvalid, err)
			}
			dir, base := filepath.Split(m.o.Path)
			if err := lockfile.CleanTemps(filepath.Clean(dir), base); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			if err := lockfile.Replace(m.o.Path, data, lockfile.DefaultOptions(0o600)); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			m.o.Generations.Bump(shmem.TFA)
		}
	}
	return ferr
}

// Challenge is what a user may answer at the second login step (proxmox-tfa's TfaChallenge).
type Challenge struct {
	TOTP     bool                          `json:"totp,omitempty"`
	Recovery *[]int                        `json:"recovery,omitempty"` // unused code indices; [] when all are used
	Webauthn *protocol.CredentialAssertion `json:"webauthn,omitempty"`
}

// Challenge returns userid's login challenge as JSON, or "" when the user has no enabled
// second factor (the login then needs none, as in PBS). A user whose enabled factors are all
// of unsupported kinds gets ErrUnsupported, and the login must fail.
func (m *Manager) Challenge(userid string, now time.Time) (string, error) {
	var out string
	err := m.modify("making tfa challenge for "+userid, func(c *Config) (bool, error) {
		u := c.Users[userid]
		if u == nil || u.Empty() {
			return false, nil
		}
		ch := Challenge{}
		for _, e := range u.TOTP {
			ch.TOTP = ch.TOTP || e.Enabled()
		}
		if u.Recovery != nil {
			a := u.Recovery.Available()
			ch.Recovery = &a
		}
		unsupported := 0
		for _, l := range [][]Entry{u.U2F, u.Yubico} {
			for _, e := range l {
				if e.Enabled() {
					unsupported++
				}
			}
		}
		creds, unusable := u.credentials(true)
		unsupported += unusable
		if len(creds) > 0 {
			wa, err := relyingParty(c.Webauthn)
			if err != nil {
				m.o.Log.Error("webauthn credentials exist but cannot be challenged", "user", userid, "err", err)
				unsupported += len(creds)
			} else {
				st, err := m.loadState(userid, now)
				if err != nil {
					return false, err
				}
				if ch.Webauthn, err = beginLogin(wa, userid, creds, st, now); err != nil {
					return false, err
				}
				if err := m.saveState(userid, st); err != nil {
					return false, err
				}
			}
		}
		if !ch.TOTP && ch.Recovery == nil && ch.Webauthn == nil {
			if unsupported > 0 {
				return false, fmt.Errorf("user %s has only u2f, yubico or PBS-format webauthn factors: %w", userid, ErrUnsupported)
			}
			return false, nil
		}
		b, err := json.Marshal(ch)
		if err != nil {
			return false, fmt.Errorf("encoding tfa challenge: %w", err)
		}
		out = string(b)
		return false, nil
	})
	return out, err
}

// ParseResponse splits a second-step answer ("totp:123456", "recovery:<code>",
// "webauthn:<json>", "u2f:<json>", "yubico:<otp>") into its kind and value.
func ParseResponse(s string) (kind, value string, err error) {
	kind, value, ok := strings.Cut(s, ":")
	switch {
	case !ok || value == "":
		return "", "", fmt.Errorf("tfa response is not <type>:<value>: %w", ErrInvalid)
	case kind == "totp", kind == "recovery", kind == "webauthn", kind == "u2f", kind == "yubico":
		return kind, value, nil
	}
	return "", "", fmt.Errorf("unknown tfa response type %q: %w", kind, ErrInvalid)
}

// Verify checks response against challenge (the JSON Challenge returned, from the signed
// ticket) for userid at now. It returns nil on success; otherwise an error wrapping ErrFailed,
// ErrLocked or ErrInvalid whose text may go to the auth log (it holds no secret). Failures
// are counted and may lock the user; see the package comment.
func (m *Manager) Verify(userid, challenge, response string, now time.Time) error {
	kind, value, err := ParseResponse(response)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrFailed, err)
	}
	var ch Challenge
	if err := json.Unmarshal([]byte(challenge), &ch); err != nil {
		return fmt.Errorf("tfa challenge: %w: %w", ErrFailed, err)
	}
	return m.modify("verifying second factor of "+userid, func(c *Config) (bool, error) {
		u := c.Users[userid]
		if u == nil {
			return false, fmt.Errorf("user %s has no second factor: %w", userid, ErrFailed)
		}
		if u.TFALockedUntil > now.Unix() {
			return false, fmt.Errorf("every second factor of %s is locked until %s: %w", userid, time.Unix(u.TFALockedUntil, 0).UTC().Format(time.RFC3339), ErrLocked)
		}
		if kind == "totp" && u.TOTPLocked {
			return false, fmt.Errorf("totp of %s is locked after too many failures: %w", userid, ErrLocked)
		}
		st, err := m.loadState(userid, now)
		if err != nil {
			return false, err
		}
		if u.TFALockedUntil != 0 {
			// A block that ran out starts a fresh count: one more failure must not block again.
			u.TFALockedUntil, st.TFAFailures = 0, 0
		}
		var verr error
		switch kind {
		case "totp":
			verr = u.verifyTOTP(value, now)
		case "recovery":
			if u.Recovery == nil || !u.Recovery.use(value) {
				verr = fmt.Errorf("recovery code not valid: %w", ErrFailed)
			} else {
				u.TOTPLocked = false
				st.TOTPFailures = 0
			}
		case "webauthn":
			want := ""
			if ch.Webauthn != nil {
				want = ch.Webauthn.Response.Challenge.String()
			}
			if ch.Webauthn == nil {
				verr = fmt.Errorf("challenge offered no webauthn: %w", ErrFailed)
			} else if wa, err := relyingParty(c.Webauthn); err != nil {
				verr = fmt.Errorf("%w: %w", ErrFailed, err)
			} else {
				verr = finishLogin(wa, userid, u, want, st, value)
			}
		default:
			verr = fmt.Errorf("%s is not supported: %w", kind, ErrFailed)
		}
		if verr == nil {
			st.TFAFailures = 0
			if kind == "totp" {
				st.TOTPFailures = 0
			}
			return true, m.saveState(userid, st)
		}
		st.TFAFailures++
		if kind == "totp" {
			st.TOTPFailures++
			if st.TOTPFailures >= m.o.TOTPFailureLimit {
				u.TOTPLocked = true
				verr = fmt.Errorf("%w; totp is now locked", verr)
			}
		}
		if st.TFAFailures >= m.o.TFAFailureLimit {
			u.TFALockedUntil = now.Add(m.o.LockTime).Unix()
			verr = fmt.Errorf("%w; every second factor is now locked for %s", verr, m.o.LockTime)
		}
		if err := m.saveState(userid, st); err != nil {
			m.o.Log.Error("saving tfa failure count", "user", userid, "err", err)
		}
		return true, verr
	})
}

// verifyTOTP checks code against u's enabled TOTP entries and records the step used.
func (u *UserData) verifyTOTP(code string, now time.Time) error {
	for i := range u.TOTP {
		e := &u.TOTP[i]
		if !e.Enabled() {
			continue
		}
		uri, last, err := e.TOTP()
		if err != nil {
			continue
		}
		k, err := parseTOTP(uri)
		if err != nil {
			continue
		}
		step, ok := k.match(code, now)
		if !ok {
			continue
		}
		if step <= last {
			return fmt.Errorf("totp code was already used: %w", ErrFailed)
		}
		e.setTOTP(uri, step)
		return nil
	}
	return fmt.Errorf("totp code not valid: %w", ErrFailed)
}

// UserSummary is one user's TFA as GET /access/tfa lists it (proxmox-tfa's TfaUser).
type UserSummary struct {
	Userid         string      `json:"userid"`
	Entries        []TypedInfo `json:"entries"`
	TOTPLocked     bool        `json:"totp-locked,omitempty"`
	TFALockedUntil int64       `json:"tfa-locked-until,omitempty"`
}

// Summary returns userid's entries and lock state at now.
func (c *Config) Summary(userid string, now time.Time) UserSummary {
	u := c.Users[userid]
	s := UserSummary{Userid: userid, Entries: u.Entries()}
	if u != nil {
		s.TOTPLocked = u.TOTPLocked
		if u.TFALockedUntil > now.Unix() {
			s.TFALockedUntil = u.TFALockedUntil
		}
	}
	return s
}

// AddTOTP adds a TOTP entry for userid after checking code against it (PBS: "value"), and
// returns its id. The secret must be at least 80 bits.
func (m *Manager) AddTOTP(userid, description, uri, code string, now time.Time) (string, error) {
	if err := validDescription(description); err != nil {
		return "", err
	}
	k, err := parseTOTP(uri)
	if err != nil {
		return "", err
	}
	if len(k.raw) < minSecretBytes {
		return "", fmt.Errorf("totp secret has %d bits, fewer than %d: %w", 8*len(k.raw), 8*minSecretBytes, ErrInvalid)
	}
	step, ok := k.match(code, now)
	if !ok {
		return "", fmt.Errorf("failed to verify TOTP challenge: %w", ErrInvalid)
	}
	e := Entry{Info: newInfo(description, now)}
	e.setTOTP(uri, step)
	err = m.modify("adding totp for "+userid, func(c *Config) (bool, error) {
		u := c.user(userid, true)
		u.TOTP = append(u.TOTP, e)
		return true, nil
	})
	return e.ID, err
}

func newInfo(description string, now time.Time) Info {
	return Info{ID: uuid.NewString(), Description: description, Created: now.Unix()}
}

// AddRecovery makes userid's set of recovery codes and returns the codes, to be shown once.
// A user who has a set gets ErrExists: delete it first.
func (m *Manager) AddRecovery(userid string, now time.Time) ([]string, error) {
	var codes []string
	err := m.modify("adding recovery codes for "+userid, func(c *Config) (bool, error) {
		u := c.user(userid, true)
		if u.Recovery != nil {
			return false, fmt.Errorf("user already has recovery keys: %w", ErrExists)
		}
		r, cs, err := newRecovery(now)
		if err != nil {
			return false, err
		}
		u.Recovery, codes = r, cs
		return true, nil
	})
	return codes, err
}

// BeginRegistration starts a WebAuthn registration and returns the options for
// navigator.credentials.create ({"publicKey": ...}) as JSON.
func (m *Manager) BeginRegistration(userid, description string, now time.Time) (string, error) {
	if err := validDescription(description); err != nil {
		return "", err
	}
	var out string
	err := m.modify("starting webauthn registration for "+userid, func(c *Config) (bool, error) {
		wa, err := relyingParty(c.Webauthn)
		if err != nil {
			return false, err
		}
		var existing []webauthn.Credential
		if u := c.Users[userid]; u != nil {
			existing, _ = u.credentials(false)
		}
		user := &waUser{id: userid, creds: existing}
		creation, session, err := wa.BeginRegistration(user,
			webauthn.WithExclusions(webauthn.Credentials(existing).CredentialDescriptors()),
			webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{UserVerification: protocol.VerificationDiscouraged}))
		if err != nil {
			return false, fmt.Errorf("making webauthn registration challenge: %w", err)
		}
		st, err := m.loadState(userid, now)
		if err != nil {
			return false, err
		}
		st.WebauthnRegs = append(st.WebauthnRegs, pending{Challenge: session.Challenge, Created: now.Unix(), Description: description, Session: *session})
		if err := m.saveState(userid, st); err != nil {
			return false, err
		}
		b, err := json.Marshal(creation)
		if err != nil {
			return false, fmt.Errorf("encoding webauthn registration challenge: %w", err)
		}
		out = string(b)
		return false, nil
	})
	return out, err
}

// FinishRegistration completes the registration whose challenge (the base64url challenge
// string of BeginRegistration's options) is challenge, with the browser's response JSON, and
// returns the new entry's id. Each challenge can be used once, within ChallengeTimeout.
func (m *Manager) FinishRegistration(userid, challenge, response string, now time.Time) (string, error) {
	var id string
	err := m.modify("finishing webauthn registration for "+userid, func(c *Config) (bool, error) {
		wa, err := relyingParty(c.Webauthn)
		if err != nil {
			return false, err
		}
		st, err := m.loadState(userid, now)
		if err != nil {
			return false, err
		}
		p, ok := take(&st.WebauthnRegs, challenge)
		if err := m.saveState(userid, st); err != nil {
			return false, err
		}
		if !ok {
			return false, fmt.Errorf("no such webauthn registration challenge (unknown, used or expired): %w", ErrInvalid)
		}
		parsed, err := protocol.ParseCredentialCreationResponseBytes([]byte(response))
		if err != nil {
			return false, fmt.Errorf("parsing webauthn registration: %w: %w", ErrInvalid, err)
		}
		u := c.user(userid, true)
		existing, _ := u.credentials(false)
		cred, err := wa.CreateCredential(&waUser{id: userid, creds: existing}, p.Session, parsed)
		if err != nil {
			return false, fmt.Errorf("webauthn registration: %w: %w", ErrInvalid, err)
		}
		for _, e := range existing {
			if bytes.Equal(e.ID, cred.ID) {
				return false, fmt.Errorf("webauthn credential is already registered: %w", ErrExists)
			}
		}
		b, err := json.Marshal(cred)
		if err != nil {
			return false, fmt.Errorf("encoding webauthn credential: %w", err)
		}
		e := Entry{Info: newInfo(p.Description, now), Entry: b}
		u.Webauthn = append(u.Webauthn, e)
		id = e.ID
		return true, nil
	})
	return id, err
}

// Update changes an entry's description and/or enable flag (nil: unchanged). The recovery
// set cannot be updated, only deleted.
func (m *Manager) Update(userid, id string, description *string, enable *bool) error {
	if description != nil {
		if err := validDescription(*description); err != nil {
			return err
		}
	}
	return m.modify("updating tfa entry "+id+" of "+userid, func(c *Config) (bool, error) {
		u := c.Users[userid]
		if u == nil {
			return false, fmt.Errorf("user %s has no tfa entry %s: %w", userid, id, ErrNotFound)
		}
		e, _ := u.find(id)
		if e == nil {
			return false, fmt.Errorf("user %s has no tfa entry %s: %w", userid, id, ErrNotFound)
		}
		if description != nil {
			e.Description = *description
		}
		if enable != nil {
			e.SetEnabled(*enable)
		}
		return true, nil
	})
}

// Delete removes an entry ("recovery" for the recovery set).
func (m *Manager) Delete(userid, id string) error {
	return m.modify("deleting tfa entry "+id+" of "+userid, func(c *Config) (bool, error) {
		u := c.Users[userid]
		if u == nil || !u.remove(id) {
			return false, fmt.Errorf("user %s has no tfa entry %s: %w", userid, id, ErrNotFound)
		}
		return true, nil
	})
}

// Unlock clears userid's TOTP lock and TFA block and resets the failure counts; it reports
// whether anything was locked.
func (m *Manager) Unlock(userid string, now time.Time) (bool, error) {
	was := false
	err := m.modify("unlocking tfa of "+userid, func(c *Config) (bool, error) {
		if u := c.Users[userid]; u != nil {
			was = u.TOTPLocked || u.TFALockedUntil > now.Unix()
			u.TOTPLocked, u.TFALockedUntil = false, 0
		}
		st, err := m.loadState(userid, now)
		if err != nil {
			return false, err
		}
		st.TOTPFailures, st.TFAFailures = 0, 0
		return true, m.saveState(userid, st)
	})
	return was, err
}

// RemoveUser drops all of userid's TFA data (when the user is deleted).
func (m *Manager) RemoveUser(userid string) error {
	return m.modify("removing tfa data of "+userid, func(c *Config) (bool, error) {
		delete(c.Users, userid)
		if err := os.Remove(m.statePath(userid)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return true, fmt.Errorf("removing tfa state of %s: %w", userid, err)
		}
		return true, nil
	})
}

// SetWebauthn replaces the relying-party configuration after checking it.
func (m *Manager) SetWebauthn(wc WebauthnConfig) error {
	if err := wc.check(); err != nil {
		return err
	}
	return m.modify("setting webauthn configuration", func(c *Config) (bool, error) {
		c.Webauthn = &wc
		return true, nil
	})
}
