package authority

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"gatehouse/acl"
	"gatehouse/authid"
	"gatehouse/params"
	"gatehouse/realm"
	"gatehouse/reply"
	"gatehouse/tfa"
	"gatehouse/tokenshadow"
	"gatehouse/users"
)

// readParams reads r's parameters and refuses any not in allowed.
func readParams(w http.ResponseWriter, r *http.Request, allowed ...string) (map[string]string, error) {
	r.Body = http.MaxBytesReader(w, r.Body, params.MaxBody)
	p, err := params.Read(r)
	if err != nil {
		return nil, err
	}
	return p, params.Only(p, allowed...)
}

// userJSON is a user as PBS's API shows it.
type userJSON struct {
	Userid    string      `json:"userid"`
	Enable    bool        `json:"enable"`
	Expire    int64       `json:"expire"`
	Comment   string      `json:"comment,omitempty"`
	Email     string      `json:"email,omitempty"`
	Firstname string      `json:"firstname,omitempty"`
	Lastname  string      `json:"lastname,omitempty"`
	Tokens    []tokenJSON `json:"tokens,omitempty"`
	// TFA lock state, as PBS lists it.
	TOTPLocked     bool  `json:"totp-locked,omitempty"`
	TFALockedUntil int64 `json:"tfa-locked-until,omitempty"`
}

type tokenJSON struct {
	Tokenid string `json:"tokenid"`
	Enable  bool   `json:"enable"`
	Expire  int64  `json:"expire"`
	Comment string `json:"comment,omitempty"`
	// Secret is Gatehouse's, not PBS's: "missing" when token.shadow holds no secret for the
	// token (it cannot be used until rotated), "unreadable" when token.shadow cannot be read;
	// absent when the secret is there.
	Secret string `json:"secret,omitempty"`
}

func showUser(u users.User) userJSON {
	return userJSON{Userid: u.ID, Enable: u.Enable, Expire: u.Expire, Comment: u.Comment, Email: u.Email, Firstname: u.Firstname, Lastname: u.Lastname}
}

// lockState adds the user's TFA lock state from tc.
func (j *userJSON) lockState(tc *tfa.Config, now time.Time) {
	sum := tc.Summary(j.Userid, now)
	j.TOTPLocked, j.TFALockedUntil = sum.TOTPLocked, sum.TFALockedUntil
}

// showToken is t as the API shows it, with the state of its secret in token.shadow.
func (s *Server) showToken(t users.Token) tokenJSON {
	j := tokenJSON{Tokenid: t.ID, Enable: t.Enable, Expire: t.Expire, Comment: t.Comment}
	switch ok, err := s.o.Tokens.Has(t.ID); {
	case err != nil:
		j.Secret = "unreadable"
	case !ok:
		j.Secret = "missing"
	}
	return j
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request, c who) {
	p, err := readParams(w, r, "include_tokens")
	if err != nil {
		reply.Invalid(w, err)
		return
	}
	withTokens, err := params.Bool(p, "include_tokens")
	if err != nil {
		reply.Invalid(w, err)
		return
	}
	cfg, err := s.o.Users.Config()
	if err != nil {
		s.internal(w, err, "reading users")
		return
	}
	tc, err := s.o.TFA.Config()
	if err != nil {
		s.internal(w, err, "reading tfa config")
		return
	}
	now := s.o.Now()
	out := []userJSON{}
	for _, u := range cfg.Users() {
		if !c.superuser() && u.ID != c.userid() {
			continue
		}
		j := showUser(u)
		j.lockState(tc, now)
		if withTokens {
			for _, t := range cfg.Tokens(u.ID) {
				j.Tokens = append(j.Tokens, s.showToken(t))
			}
		}
		out = append(out, j)
	}
	reply.Data(w, out)
}

// userFields applies the optional user properties in p to u.
func userFields(p map[string]string, u *users.User) error {
	bad := params.Error{}
	if _, ok := p["enable"]; ok {
		b, err := params.Bool(p, "enable")
		if err != nil {
			bad["enable"] = "not a boolean"
		}
		u.Enable = b
	}
	if v, ok := p["expire"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			bad["expire"] = "not a unix time (0 = never)"
		}
		u.Expire = n
	}
	for k, dst := range map[string]*string{"comment": &u.Comment, "email": &u.Email, "firstname": &u.Firstname, "lastname": &u.Lastname} {
		if v, ok := p[k]; ok {
			*dst = v
		}
	}
	if len(bad) > 0 {
		return bad
	}
	return nil
}

var userParams = []string{"comment", "email", "enable", "expire", "firstname", "lastname"}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, c who) {
	if !c.superuser() {
		reply.Error(w, http.StatusForbidden, "permission check failed")
		return
	}
	p, err := readParams(w, r, append(userParams, "userid", "password")...)
	if err != nil {
		reply.Invalid(w, err)
		return
	}
	a, err := authid.ParseUserid(p["userid"])
	if err != nil {
		reply.Invalid(w, params.Error{"userid": "invalid user id"})
		return
	}
	u := users.User{ID: a.Userid(), Enable: true}
	if err := userFields(p, &u); err != nil {
		reply.Invalid(w, err)
		return
	}
	pw := p["password"]
	if pw != "" && c.authid.IsToken() {
		reply.Error(w, http.StatusForbidden, "API tokens cannot set passwords")
		return
	}
	if pw != "" && a.Realm != "pbs" {
		reply.Invalid(w, params.Error{"password": "only pbs-realm passwords are stored by Gatehouse"})
		return
	}
	// Under user.cfg's lock: the entry is checked before the password is stored, so that a
	// refused creation never changes an existing user's password.
	err = s.o.Users.Update(func(cfg *users.Config) error {
		if _, ok := cfg.User(u.ID); ok {
			return errExists
		}
		if err := cfg.SetUser(u); err != nil {
			return err
		}
		if pw != "" {
			return s.o.Realms.Passwords.Set(u.ID, pw)
		}
		return nil
	})
	if errors.Is(err, errExists) {
		reply.Error(w, http.StatusBadRequest, "user "+u.ID+" already exists")
		return
	}
	if err == nil {
		err = s.endEarlierSessions(u.ID)
	}
	s.answerUpdate(w, err, "creating user "+u.ID)
}

var errExists = errors.New("already exists")

// endEarlierSessions revokes, once more, the tickets of an earlier user of id, made again just
// now: deleteUser revoked them, but a login of that user in flight while it was deleted may
// have signed one afterwards. An id with no revocation record had no such user (deletion
// records one), and nothing is written for it.
func (s *Server) endEarlierSessions(id string) error {
	earlier, err := s.o.Revocations.Recorded(id)
	if err != nil || !earlier {
		return err
	}
	return s.o.Revocations.Revoke(id, s.o.Now())
}

// target reads the {userid} path value and checks that c may act on it.
func (s *Server) target(w http.ResponseWriter, r *http.Request, c who) (string, bool) {
	a, err := authid.ParseUserid(r.PathValue("userid"))
	if err != nil {
		reply.Invalid(w, params.Error{"userid": "invalid user id"})
		return "", false
	}
	if !c.superuser() && c.userid() != a.Userid() {
		reply.Error(w, http.StatusForbidden, "permission check failed")
		return "", false
	}
	return a.Userid(), true
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request, c who) {
	id, ok := s.target(w, r, c)
	if !ok {
		return
	}
	cfg, err := s.o.Users.Config()
	if err != nil {
		s.internal(w, err, "reading users")
		return
	}
	u, ok := cfg.User(id)
	if !ok {
		reply.Error(w, http.StatusNotFound, "no such user "+id)
		return
	}
	j := showUser(u)
	tc, err := s.o.TFA.Config()
	if err != nil {
		s.internal(w, err, "reading tfa config")
		return
	}
	j.lockState(tc, s.o.Now())
	reply.Data(w, j)
}

func (s *Server) updateUser(w http.ResponseWriter, r *http.Request, c who) {
	id, ok := s.target(w, r, c)
	if !ok {
		return
	}
	p, err := readParams(w, r, userParams...)
	if err != nil {
		reply.Invalid(w, err)
		return
	}
	if !c.superuser() {
		if _, ok := p["enable"]; ok {
			reply.Error(w, http.StatusForbidden, "only root@pam enables or disables users")
			return
		}
		if _, ok := p["expire"]; ok {
			reply.Error(w, http.StatusForbidden, "only root@pam sets expiry")
			return
		}
	}
	now := s.o.Now()
	endSessions := false
	err = s.o.Users.Update(func(cfg *users.Config) error {
		u, ok := cfg.User(id)
		if !ok {
			return users.ErrNoUser
		}
		wasActive := cfg.Active(id, now) == nil
		if err := userFields(p, &u); err != nil {
			return err
		}
		if err := cfg.SetUser(u); err != nil {
			return err
		}
		// Disabling (or expiring) a user ends its sessions for good, and so does enabling one
		// that was not active: a ticket from before never works again.
		_, enable := p["enable"]
		_, expire := p["expire"]
		endSessions = (enable || expire) && (!wasActive || cfg.Active(id, now) != nil)
		return nil
	})
	if err == nil && endSessions {
		err = s.o.Revocations.Revoke(id, now)
	}
	s.answerUpdate(w, err, "updating user "+id)
}

func (s *Server) answerUpdate(w http.ResponseWriter, err error, doing string) {
	var pe params.Error
	switch {
	case err == nil:
		reply.Data(w, nil)
	case errors.As(err, &pe):
		reply.Invalid(w, err)
	case errors.Is(err, users.ErrNoUser), errors.Is(err, users.ErrNoToken), errors.Is(err, tokenshadow.ErrNoToken):
		reply.Error(w, http.StatusNotFound, doing+": not found")
	case errors.Is(err, realm.ErrInvalidPassword):
		reply.Invalid(w, params.Error{"password": "password does not meet the requirements"})
	case errors.Is(err, users.ErrInvalid):
		reply.Error(w, http.StatusBadRequest, doing+": "+err.Error())
	default:
		s.internal(w, err, doing)
	}
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request, c who) {
	if !c.superuser() {
		reply.Error(w, http.StatusForbidden, "permission check failed")
		return
	}
	id, ok := s.target(w, r, c)
	if !ok {
		return
	}
	if id == Superuser {
		reply.Error(w, http.StatusBadRequest, "root@pam cannot be deleted")
		return
	}
	cfg, err := s.o.Users.Config()
	if err != nil {
		s.internal(w, err, "reading users")
		return
	}
	if _, ok := cfg.User(id); !ok {
		reply.Error(w, http.StatusNotFound, "deleting user "+id+": not found")
		return
	}
	// Sessions first, for good: the revocation time outlives the user, so a user created again
	// under this id never gets these tickets back.
	if err := s.o.Revocations.Revoke(id, s.o.Now()); err != nil {
		s.internal(w, err, "revoking tickets of "+id)
		return
	}
	// Then secrets: a token stops working before its entry goes.
	for _, t := range cfg.Tokens(id) {
		if err := s.o.Tokens.Delete(t.ID); err != nil && !errors.Is(err, tokenshadow.ErrNoToken) {
			s.internal(w, err, "deleting token "+t.ID)
			return
		}
	}
	err = s.o.Users.Update(func(cfg *users.Config) error {
		if _, ok := cfg.User(id); !ok {
			return users.ErrNoUser
		}
		cfg.DeleteUser(id)
		return nil
	})
	if err == nil {
		// After user.cfg: see updateACL.
		err = s.o.ACL.Update(func(a *acl.Config) error { a.RemoveUser(id); return nil })
	}
	if err == nil && s.o.Realms.Passwords != nil {
		if a, _ := authid.ParseUserid(id); a.Realm == "pbs" {
			if err = s.o.Realms.Passwords.Delete(id); errors.Is(err, realm.ErrNoPassword) {
				err = nil // a pbs user made without a password
			}
		}
	}
	if err == nil {
		err = s.o.TFA.RemoveUser(id)
	}
	s.answerUpdate(w, err, "deleting user "+id)
}
