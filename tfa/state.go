package tfa

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"

	"gatehouse/lockfile"
)

// maxStateSize bounds one user's state file; pending challenges beyond maxPending are dropped,
// oldest first.
const (
	maxStateSize = 1 << 20
	maxPending   = 16
)

// state is one user's runtime TFA data (PBS's TfaUserChallenges), kept in the run directory,
// mode 0600: the WebAuthn challenges handed out and not yet answered, and the consecutive
// failure counts behind the lockout.
type state struct {
	WebauthnAuths []pending `json:"webauthn-auths,omitempty"`
	WebauthnRegs  []pending `json:"webauthn-registrations,omitempty"`
	TOTPFailures  int       `json:"totp-failures,omitempty"`
	TFAFailures   int       `json:"tfa-failures,omitempty"`
}

// pending is one WebAuthn ceremony in progress, found by its challenge and usable once.
type pending struct {
	Challenge   string               `json:"challenge"`
	Created     int64                `json:"created"`
	Description string               `json:"description,omitempty"` // registrations
	Session     webauthn.SessionData `json:"session"`
}

// statePath is userid's state file.
func (m *Manager) statePath(userid string) string {
	return filepath.Join(m.o.StateDir, url.PathEscape(userid)+".json")
}

// loadState reads userid's state, dropping challenges older than ChallengeTimeout. A missing
// or unreadable file is an empty state: it only holds short-lived data, and losing it costs a
// user one more login attempt, never access.
func (m *Manager) loadState(userid string, now time.Time) (*state, error) {
	st := &state{}
	raw, _, err := lockfile.ReadFile(m.statePath(userid), lockfile.ReadOptions{MaxSize: maxStateSize, Forbidden: 0o077, TrustedOwner: true})
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return st, nil
	case err != nil:
		return nil, fmt.Errorf("reading tfa state of %s: %w", userid, err)
	}
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(st); err != nil {
		m.o.Log.Warn("discarding unreadable tfa state", "user", userid, "err", err)
		return &state{}, nil
	}
	st.WebauthnAuths = m.fresh(st.WebauthnAuths, now)
	st.WebauthnRegs = m.fresh(st.WebauthnRegs, now)
	return st, nil
}

// fresh drops expired challenges.
func (m *Manager) fresh(list []pending, now time.Time) []pending {
	out := list[:0]
	for _, p := range list {
		if now.Unix()-p.Created < int64(m.o.ChallengeTimeout/time.Second) && p.Created <= now.Unix()+60 {
			out = append(out, p)
		}
	}
	return out
}

// saveState writes userid's state atomically (0600), or removes the file when it is empty.
func (m *Manager) saveState(userid string, st *state) error {
	path := m.statePath(userid)
	if len(st.WebauthnAuths) == 0 && len(st.WebauthnRegs) == 0 && st.TOTPFailures == 0 && st.TFAFailures == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing tfa state of %s: %w", userid, err)
		}
		return nil
	}
	if n := len(st.WebauthnAuths); n > maxPending {
		st.WebauthnAuths = st.WebauthnAuths[n-maxPending:]
	}
	if n := len(st.WebauthnRegs); n > maxPending {
		st.WebauthnRegs = st.WebauthnRegs[n-maxPending:]
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encoding tfa state of %s: %w", userid, err)
	}
	if err := lockfile.Replace(path, b, lockfile.DefaultOptions(0o600)); err != nil {
		return fmt.Errorf("writing tfa state of %s: %w", userid, err)
	}
	return nil
}

// take removes and returns the pending challenge ch from list.
func take(list *[]pending, ch string) (pending, bool) {
	for i, p := range *list {
		if p.Challenge == ch {
			*list = append((*list)[:i:i], (*list)[i+1:]...)
			return p, true
		}
	}
	return pending{}, false
}
