package tfa

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

// waUser is a user as go-webauthn sees it: the handle is the user id's bytes, as PBS uses.
type waUser struct {
	id    string
	creds []webauthn.Credential
}

func (u *waUser) WebAuthnID() []byte                         { return []byte(u.id) }
func (u *waUser) WebAuthnName() string                       { return u.id }
func (u *waUser) WebAuthnDisplayName() string                { return u.id }
func (u *waUser) WebAuthnCredentials() []webauthn.Credential { return u.creds }

// check validates a relying-party configuration: a name, an https origin (http only for
// localhost) and an id that is the origin's host or a parent domain of it.
func (c *WebauthnConfig) check() error {
	if c.RP == "" || c.ID == "" || c.Origin == "" {
		return fmt.Errorf("webauthn needs rp, id and origin: %w", ErrInvalid)
	}
	u, err := url.Parse(c.Origin)
	if err != nil || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
		return fmt.Errorf("webauthn origin %q is not scheme://host[:port]: %w", c.Origin, ErrInvalid)
	}
	host := u.Hostname()
	if u.Scheme != "https" && !(u.Scheme == "http" && host == "localhost") {
		return fmt.Errorf("webauthn origin %q must use https: %w", c.Origin, ErrInvalid)
	}
	if host != c.ID && !(len(host) > len(c.ID) && host[len(host)-len(c.ID)-1:] == "."+c.ID) {
		return fmt.Errorf("webauthn id %q is not the origin's host %q nor a parent domain of it: %w", c.ID, host, ErrInvalid)
	}
	return nil
}

// relyingParty returns the go-webauthn instance for c, or ErrInvalid when there is none.
func relyingParty(c *WebauthnConfig) (*webauthn.WebAuthn, error) {
	if c == nil {
		return nil, fmt.Errorf("no webauthn configuration available: %w", ErrInvalid)
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	wa, err := webauthn.New(&webauthn.Config{RPID: c.ID, RPDisplayName: c.RP, RPOrigins: []string{c.Origin}})
	if err != nil {
		return nil, fmt.Errorf("webauthn configuration: %w: %w", ErrInvalid, err)
	}
	return wa, nil
}

// credentials returns u's enabled, usable WebAuthn credentials and how many enabled entries
// cannot be used (PBS's webauthn-rs format).
func (u *UserData) credentials(enabledOnly bool) (creds []webauthn.Credential, unusable int) {
	for _, e := range u.Webauthn {
		if enabledOnly && !e.Enabled() {
			continue
		}
		c, err := e.Credential()
		if err != nil {
			unusable++
			continue
		}
		creds = append(creds, *c)
	}
	return creds, unusable
}

// beginLogin makes a login challenge for userid's credentials and records it in st.
func beginLogin(wa *webauthn.WebAuthn, userid string, creds []webauthn.Credential, st *state, now time.Time) (*protocol.CredentialAssertion, error) {
	assertion, session, err := wa.BeginLogin(&waUser{id: userid, creds: creds},
		webauthn.WithUserVerification(protocol.VerificationDiscouraged))
	if err != nil {
		return nil, fmt.Errorf("making webauthn challenge for %s: %w", userid, err)
	}
	st.WebauthnAuths = append(st.WebauthnAuths, pending{Challenge: session.Challenge, Created: now.Unix(), Session: *session})
	return assertion, nil
}

// splitChallenge takes the "challenge" member out of a WebAuthn response object, as PBS's
// clients send it ({"challenge": "...", "id": ..., "rawId": ..., "response": {...}}).
func splitChallenge(value string) (challenge string, rest []byte, err error) {
	var obj map[string]json.RawMessage
	d := json.NewDecoder(bytes.NewReader([]byte(value)))
	d.UseNumber()
	if err := d.Decode(&obj); err != nil || obj == nil {
		return "", nil, fmt.Errorf("webauthn response is not a JSON object: %w", ErrInvalid)
	}
	raw, ok := obj["challenge"]
	if !ok || json.Unmarshal(raw, &challenge) != nil || challenge == "" {
		return "", nil, fmt.Errorf("webauthn response has no challenge: %w", ErrInvalid)
	}
	delete(obj, "challenge")
	rest, err = json.Marshal(obj)
	if err != nil {
		return "", nil, fmt.Errorf("webauthn response: %w", ErrInvalid)
	}
	return challenge, rest, nil
}

// finishLogin checks a login response: the pending challenge it names is consumed first (so a
// response is never tried twice), then the assertion is verified against u's credentials. On
// success the used credential's entry is updated (sign count).
func finishLogin(wa *webauthn.WebAuthn, userid string, u *UserData, want string, st *state, value string) error {
	challenge, rest, err := splitChallenge(value)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrFailed, err)
	}
	p, ok := take(&st.WebauthnAuths, challenge)
	if !ok || (want != "" && challenge != want) {
		return fmt.Errorf("no such webauthn challenge (unknown, used or expired): %w", ErrFailed)
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(rest)
	if err != nil {
		return fmt.Errorf("parsing webauthn response: %w: %w", ErrFailed, err)
	}
	creds, _ := u.credentials(true)
	cred, err := wa.ValidateLogin(&waUser{id: userid, creds: creds}, p.Session, parsed)
	if err != nil {
		return fmt.Errorf("webauthn verification: %w: %w", ErrFailed, err)
	}
	if cred.Authenticator.CloneWarning {
		return fmt.Errorf("webauthn signature counter went backwards (cloned authenticator?): %w", ErrFailed)
	}
	for i := range u.Webauthn {
		if c, err := u.Webauthn[i].Credential(); err == nil && bytes.Equal(c.ID, cred.ID) {
			b, err := json.Marshal(cred)
			if err != nil {
				return fmt.Errorf("encoding webauthn credential: %w", err)
			}
			u.Webauthn[i].Entry = b
		}
	}
	return nil
}
