package authority

import (
	"errors"
	"net/http"
	"time"

	"gatehouse/authid"
	"gatehouse/forward"
	"gatehouse/params"
	"gatehouse/realm"
	"gatehouse/reply"
	"gatehouse/tfa"
	"gatehouse/users"
)

// TFA management, at PBS's paths:
//
//	GET    /access/tfa                     every user's entries and lock state (root), else the caller's
//	GET    /access/tfa/{userid}            a user's entries
//	GET    /access/tfa/{userid}/{id}       one entry
//	POST   /access/tfa/{userid}            add: type=totp (totp, value), recovery, webauthn (two calls)
//	PUT    /access/tfa/{userid}/{id}       description, enable
//	DELETE /access/tfa/{userid}/{id}
//	PUT    /access/users/{userid}/unlock-tfa   administrators only; answers whether the user was locked
//	GET|PUT /config/access/tfa/webauthn    the relying party (administrators)
//
// A user manages their own factors and administrators everyone's; API tokens manage none. Every
// write by anyone but root@pam needs the caller's current password ("password"), as in PBS,
// so that a stolen session cannot replace the second factor; a wrong one answers 401 and is
// logged as an authentication failure.

// tfaAllowed answers 403 unless c may manage target's factors.
func tfaAllowed(w http.ResponseWriter, c who, target string) bool {
	if c.authid.IsToken() || !c.may(target) {
		reply.Error(w, http.StatusForbidden, "permission check failed")
		return false
	}
	return true
}

// tfaTarget reads {userid} and checks the caller may manage it.
func (s *Server) tfaTarget(w http.ResponseWriter, r *http.Request, c who) (string, bool) {
	id := r.PathValue("userid")
	if _, err := authid.ParseUserid(id); err != nil {
		reply.Error(w, http.StatusBadRequest, "invalid userid")
		return "", false
	}
	return id, tfaAllowed(w, c, id)
}

// reauth checks the caller's own current password for a change (a TFA or password change;
// root@pam needs none). It answers 401 and returns false when the change must not go ahead.
func (s *Server) reauth(w http.ResponseWriter, r *http.Request, c who, password, change string) bool {
	if c.rootPam() {
		return true // as PBS: only root@pam changes factors without a password
	}
	if password == "" {
		s.authFail(w, r, c.userid(), change+" without the current password")
		return false
	}
	if err := s.o.Realms.Check(c.userid(), password); err != nil {
		if errors.Is(err, realm.ErrBadPassword) || errors.Is(err, realm.ErrNoRealm) {
			s.authFail(w, r, c.userid(), "wrong password for "+change)
			return false
		}
		s.internal(w, err, "checking password")
		return false
	}
	return true
}

// authFail answers 401 and hands proxyd the reason for its auth log.
func (s *Server) authFail(w http.ResponseWriter, r *http.Request, userid, reason string) {
	forward.SetValue(w.Header(), forward.Failure, reason)
	forward.SetValue(w.Header(), forward.FailUser, userid)
	s.o.Log.Info("authentication failure", "user", userid, "rhost", r.Header.Get(forward.Rhost), "msg", reason)
	reply.Error(w, http.StatusUnauthorized, "authentication failure")
}

// tfaError answers err from the tfa package with its status.
func (s *Server) tfaError(w http.ResponseWriter, err error, doing string) {
	switch {
	case errors.Is(err, tfa.ErrNotFound):
		reply.Error(w, http.StatusNotFound, err.Error())
	case errors.Is(err, tfa.ErrInvalid), errors.Is(err, tfa.ErrExists):
		reply.Error(w, http.StatusBadRequest, err.Error())
	default:
		s.internal(w, err, doing)
	}
}

func (s *Server) listTFA(w http.ResponseWriter, r *http.Request, c who) {
	if _, err := readParams(w, r); err != nil {
		reply.Invalid(w, err)
		return
	}
	if c.authid.IsToken() {
		reply.Error(w, http.StatusForbidden, "permission check failed")
		return
	}
	cfg, err := s.o.TFA.Config()
	if err != nil {
		s.internal(w, err, "reading tfa config")
		return
	}
	now := s.o.Now()
	out := []tfa.UserSummary{}
	for _, id := range cfg.Userids() {
		if c.superuser() || id == c.userid() {
			out = append(out, cfg.Summary(id, now))
		}
	}
	reply.Data(w, out)
}

// userEntries answers for a read of {userid}'s entries: it returns them, or false when it has
// answered with an error.
func (s *Server) userEntries(w http.ResponseWriter, r *http.Request, c who) ([]tfa.TypedInfo, bool) {
	target, ok := s.tfaTarget(w, r, c)
	if !ok {
		return nil, false
	}
	cfg, err := s.o.TFA.Config()
	if err != nil {
		s.internal(w, err, "reading tfa config")
		return nil, false
	}
	return cfg.Users[target].Entries(), true
}

func (s *Server) listUserTFA(w http.ResponseWriter, r *http.Request, c who) {
	if entries, ok := s.userEntries(w, r, c); ok {
		reply.Data(w, entries)
	}
}

func (s *Server) getTFA(w http.ResponseWriter, r *http.Request, c who) {
	entries, ok := s.userEntries(w, r, c)
	if !ok {
		return
	}
	for _, e := range entries {
		if e.ID == r.PathValue("id") {
			reply.Data(w, e)
			return
		}
	}
	reply.Error(w, http.StatusNotFound, "no such entry")
}

// tfaUpdateInfo is the answer of POST /access/tfa/{userid} (proxmox-tfa's TfaUpdateInfo).
type tfaUpdateInfo struct {
	ID        string   `json:"id,omitempty"`
	Challenge string   `json:"challenge,omitempty"`
	Recovery  []string `json:"recovery,omitempty"`
}

func (s *Server) addTFA(w http.ResponseWriter, r *http.Request, c who) {
	target, ok := s.tfaTarget(w, r, c)
	if !ok {
		return
	}
	p, err := readParams(w, r, "type", "description", "totp", "value", "challenge", "password")
	if err != nil {
		reply.Invalid(w, err)
		return
	}
	if !s.reauth(w, r, c, p["password"], "tfa change") || !s.userExists(w, target) {
		return
	}
	now := s.o.Now()
	var info tfaUpdateInfo
	switch p["type"] {
	case "totp":
		if p["challenge"] != "" {
			reply.Invalid(w, params.Error{"challenge": "'challenge' parameter is invalid for 'totp' entries"})
			return
		}
		if p["description"] == "" || p["totp"] == "" || p["value"] == "" {
			reply.Invalid(w, params.Error{"totp": "'totp' type requires 'description', 'totp' and 'value'"})
			return
		}
		info.ID, err = s.o.TFA.AddTOTP(target, p["description"], p["totp"], p["value"], now)
	case "recovery":
		if p["totp"] != "" || p["value"] != "" || p["challenge"] != "" {
			reply.Invalid(w, params.Error{"type": "generating recovery keys does not allow additional parameters"})
			return
		}
		info.ID = "recovery"
		info.Recovery, err = s.o.TFA.AddRecovery(target, now)
	case "webauthn":
		if p["totp"] != "" {
			reply.Invalid(w, params.Error{"totp": "'totp' parameter is invalid for 'webauthn' entries"})
			return
		}
		switch {
		case p["challenge"] == "" && p["description"] == "":
			reply.Invalid(w, params.Error{"description": "'description' is required for new entries"})
			return
		case p["challenge"] == "":
			info.Challenge, err = s.o.TFA.BeginRegistration(target, p["description"], now)
		case p["value"] == "":
			reply.Invalid(w, params.Error{"value": "missing 'value' parameter (webauthn challenge response missing)"})
			return
		default:
			info.ID, err = s.o.TFA.FinishRegistration(target, p["challenge"], p["value"], now)
		}
	case "u2f", "yubico":
		reply.Error(w, http.StatusBadRequest, p["type"]+" second factors are not supported by Gatehouse; use totp, webauthn or recovery")
		return
	default:
		reply.Invalid(w, params.Error{"type": "value must be one of totp, webauthn, recovery"})
		return
	}
	if err != nil {
		s.tfaError(w, err, "adding tfa entry")
		return
	}
	s.o.Log.Info("tfa entry added", "user", target, "type", p["type"], "id", info.ID, "by", c.authid.String())
	reply.Data(w, info)
}

// userExists answers 404 unless target is a user in user.cfg.
func (s *Server) userExists(w http.ResponseWriter, target string) bool {
	cfg, err := s.o.Users.Config()
	if err != nil {
		s.internal(w, err, "reading users")
		return false
	}
	if _, ok := cfg.User(target); !ok {
		reply.Error(w, http.StatusNotFound, users.ErrNoUser.Error())
		return false
	}
	return true
}

func (s *Server) updateTFA(w http.ResponseWriter, r *http.Request, c who) {
	target, ok := s.tfaTarget(w, r, c)
	if !ok {
		return
	}
	p, err := readParams(w, r, "description", "enable", "password")
	if err != nil {
		reply.Invalid(w, err)
		return
	}
	var desc *string
	var enable *bool
	if d, ok := p["description"]; ok {
		desc = &d
	}
	if _, ok := p["enable"]; ok {
		e, err := params.Bool(p, "enable")
		if err != nil {
			reply.Invalid(w, err)
			return
		}
		enable = &e
	}
	if !s.reauth(w, r, c, p["password"], "tfa change") {
		return
	}
	if err := s.o.TFA.Update(target, r.PathValue("id"), desc, enable); err != nil {
		s.tfaError(w, err, "updating tfa entry")
		return
	}
	reply.Data(w, nil)
}

func (s *Server) deleteTFA(w http.ResponseWriter, r *http.Request, c who) {
	target, ok := s.tfaTarget(w, r, c)
	if !ok {
		return
	}
	p, err := readParams(w, r, "password")
	if err != nil {
		reply.Invalid(w, err)
		return
	}
	if !s.reauth(w, r, c, p["password"], "tfa change") {
		return
	}
	if err := s.o.TFA.Delete(target, r.PathValue("id")); err != nil {
		s.tfaError(w, err, "deleting tfa entry")
		return
	}
	s.o.Log.Info("tfa entry deleted", "user", target, "id", r.PathValue("id"), "by", c.authid.String())
	reply.Data(w, nil)
}

func (s *Server) unlockTFA(w http.ResponseWriter, r *http.Request, c who) {
	if !c.adminUser() {
		reply.Error(w, http.StatusForbidden, "permission check failed")
		return
	}
	target, ok := s.target(w, r, c)
	if !ok {
		return
	}
	was, err := s.o.TFA.Unlock(target, s.o.Now())
	if err != nil {
		s.tfaError(w, err, "unlocking tfa")
		return
	}
	s.o.Log.Info("tfa unlocked", "user", target, "was_locked", was)
	reply.Data(w, was)
}

func (s *Server) getWebauthnConfig(w http.ResponseWriter, r *http.Request, c who) {
	if !c.superuser() {
		reply.Error(w, http.StatusForbidden, "permission check failed")
		return
	}
	cfg, err := s.o.TFA.Config()
	if err != nil {
		s.internal(w, err, "reading tfa config")
		return
	}
	reply.Data(w, cfg.Webauthn)
}

func (s *Server) setWebauthnConfig(w http.ResponseWriter, r *http.Request, c who) {
	if !c.adminUser() {
		reply.Error(w, http.StatusForbidden, "permission check failed")
		return
	}
	p, err := readParams(w, r, "rp", "origin", "id", "allow-subdomains")
	if err != nil {
		reply.Invalid(w, err)
		return
	}
	cfg, err := s.o.TFA.Config()
	if err != nil {
		s.internal(w, err, "reading tfa config")
		return
	}
	wc := tfa.WebauthnConfig{}
	if cfg.Webauthn != nil {
		wc = *cfg.Webauthn
	}
	for k, dst := range map[string]*string{"rp": &wc.RP, "origin": &wc.Origin, "id": &wc.ID} {
		if v, ok := p[k]; ok {
			*dst = v
		}
	}
	if _, ok := p["allow-subdomains"]; ok {
		b, err := params.Bool(p, "allow-subdomains")
		if err != nil {
			reply.Invalid(w, err)
			return
		}
		wc.AllowSubdomains = &b
	}
	if err := s.o.TFA.SetWebauthn(wc); err != nil {
		s.tfaError(w, err, "setting webauthn configuration")
		return
	}
	reply.Data(w, nil)
}

// secondStep is the second call of a TFA login: tfaTicket is the "!tfa!" ticket of the first
// call, answer the password parameter ("totp:123456", ...). It returns the failure reason
// for the auth log, or "" when the user passed.
func (s *Server) secondStep(w http.ResponseWriter, userid, tfaTicket, answer string, now time.Time) (reason string, ok bool) {
	// The current key only, as for renewal: a "!tfa!" ticket stands for a checked password.
	challenge, issued, err := s.verifier().Current().VerifyTFA(tfaTicket, s.o.Prefix, userid, now)
	if err != nil {
		if _, _, rerr := s.verifier().VerifyTFA(tfaTicket, s.o.Prefix, userid, now); rerr == nil {
			return "tfa challenge ticket of a retired signing key", false
		}
		return "invalid tfa challenge ticket", false
	}
	revoked, err := s.o.Revocations.Revoked(userid, issued)
	if err != nil {
		s.internal(w, err, "checking revocation")
		return "", false
	}
	if revoked {
		return "tfa challenge ticket was revoked", false
	}
	return s.verifyFactor(w, userid, challenge, answer, now)
}

// verifyFactor checks answer against challenge: it returns the failure reason for the auth
// log, or "" with false when it has answered an internal error, or true.
func (s *Server) verifyFactor(w http.ResponseWriter, userid, challenge, answer string, now time.Time) (reason string, ok bool) {
	if err := s.o.TFA.Verify(userid, challenge, answer, now); err != nil {
		if errors.Is(err, tfa.ErrFailed) || errors.Is(err, tfa.ErrLocked) || errors.Is(err, tfa.ErrInvalid) {
			return err.Error(), false
		}
		s.internal(w, err, "verifying second factor")
		return "", false
	}
	return "", true
}
