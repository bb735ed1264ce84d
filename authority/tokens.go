package authority

import (
	"errors"
	"net/http"

	"gatehouse/acl"
	"gatehouse/authid"
	"gatehouse/params"
	"gatehouse/reply"
	"gatehouse/tokenshadow"
	"gatehouse/users"
)

var tokenParams = []string{"comment", "enable", "expire"}

// tokenTarget reads {userid} and {name}; only the user (not one of their tokens) or root may
// manage tokens, and anyone allowed to see the user may list them.
func (s *Server) tokenTarget(w http.ResponseWriter, r *http.Request, c who, manage bool) (userid, tokenid string, ok bool) {
	userid, ok = s.target(w, r, c)
	if !ok {
		return "", "", false
	}
	if manage && c.authid.IsToken() {
		reply.Error(w, http.StatusForbidden, "API tokens cannot manage tokens")
		return "", "", false
	}
	if name := r.PathValue("name"); name != "" {
		// The name is checked alone first, so that the error names what is wrong with it. It
		// must be the whole token part: a name holding "@" and "!" would otherwise make the id
		// of another user's token ("eve@pbs" + "!" + "x@pbs!ci").
		if err := authid.CheckTokenName(name); err != nil {
			reply.Invalid(w, params.Error{"token-name": err.Error()})
			return "", "", false
		}
		a, err := authid.ParseToken(userid + "!" + name)
		if err == nil && (a.Token != name || a.Userid() != userid) {
			err = errors.New("token name is not a safe id")
		}
		if err != nil {
			reply.Invalid(w, params.Error{"token-name": "invalid token name"})
			return "", "", false
		}
		tokenid = a.String()
	}
	return userid, tokenid, true
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request, c who) {
	userid, _, ok := s.tokenTarget(w, r, c, false)
	if !ok {
		return
	}
	cfg, err := s.o.Users.Config()
	if err != nil {
		s.internal(w, err, "reading users")
		return
	}
	out := []tokenJSON{}
	for _, t := range cfg.Tokens(userid) {
		out = append(out, s.showToken(t))
	}
	reply.Data(w, out)
}

func (s *Server) getToken(w http.ResponseWriter, r *http.Request, c who) {
	_, tokenid, ok := s.tokenTarget(w, r, c, false)
	if !ok {
		return
	}
	cfg, err := s.o.Users.Config()
	if err != nil {
		s.internal(w, err, "reading users")
		return
	}
	t, ok := cfg.Token(tokenid)
	if !ok {
		reply.Error(w, http.StatusNotFound, "no such token "+tokenid)
		return
	}
	reply.Data(w, s.showToken(t))
}

// tokenFields applies the optional token properties in p to t.
func tokenFields(p map[string]string, t *users.Token) error {
	u := users.User{Enable: t.Enable, Expire: t.Expire, Comment: t.Comment}
	if err := userFields(p, &u); err != nil {
		return err
	}
	t.Enable, t.Expire, t.Comment = u.Enable, u.Expire, u.Comment
	return nil
}

// createToken is POST .../token/{name}: the entry in user.cfg, then a new secret, shown once
// as {"tokenid", "value"} (PBS's answer).
func (s *Server) createToken(w http.ResponseWriter, r *http.Request, c who) {
	_, tokenid, ok := s.tokenTarget(w, r, c, true)
	if !ok {
		return
	}
	p, err := readParams(w, r, tokenParams...)
	if err != nil {
		reply.Invalid(w, err)
		return
	}
	t := users.Token{ID: tokenid, Enable: true}
	if err := tokenFields(p, &t); err != nil {
		reply.Invalid(w, err)
		return
	}
	err = s.o.Users.Update(func(cfg *users.Config) error {
		if _, ok := cfg.Token(tokenid); ok {
			return errExists
		}
		return cfg.SetToken(t)
	})
	if errors.Is(err, errExists) {
		reply.Error(w, http.StatusBadRequest, "token "+tokenid+" already exists")
		return
	}
	if err != nil {
		s.answerUpdate(w, err, "creating token "+tokenid)
		return
	}
	secret, err := s.o.Tokens.Generate(tokenid)
	if err != nil {
		s.internal(w, err, "generating secret for "+tokenid)
		return
	}
	reply.Data(w, map[string]string{"tokenid": tokenid, "value": secret})
}

// updateToken is PUT .../token/{name}: properties, and regenerate=1 rotates the secret at once
// in every process, answering {"tokenid", "secret"} like PBS. Only a token user.cfg lists is
// rotated (as token list shows them; a secret without an entry works nowhere); one whose
// secret is missing from token.shadow (removed by hand) gets a new one, answered with
// "repaired": true and logged, rather than 404 for a token that list shows.
func (s *Server) updateToken(w http.ResponseWriter, r *http.Request, c who) {
	_, tokenid, ok := s.tokenTarget(w, r, c, true)
	if !ok {
		return
	}
	p, err := readParams(w, r, append(tokenParams, "regenerate", "digest")...)
	if err != nil {
		reply.Invalid(w, err)
		return
	}
	regenerate, err := params.Bool(p, "regenerate")
	if err != nil {
		reply.Invalid(w, err)
		return
	}
	delete(p, "regenerate")
	delete(p, "digest")
	if len(p) > 0 {
		err = s.o.Users.Update(func(cfg *users.Config) error {
			t, ok := cfg.Token(tokenid)
			if !ok {
				return users.ErrNoToken
			}
			if err := tokenFields(p, &t); err != nil {
				return err
			}
			return cfg.SetToken(t)
		})
		if err != nil {
			s.answerUpdate(w, err, "updating token "+tokenid)
			return
		}
	}
	if !regenerate {
		reply.Data(w, nil)
		return
	}
	cfg, err := s.o.Users.Config()
	if err == nil {
		if _, ok := cfg.Token(tokenid); !ok {
			err = users.ErrNoToken
		}
	}
	if err != nil {
		s.answerUpdate(w, err, "regenerating token "+tokenid)
		return
	}
	secret, err := s.o.Tokens.Rotate(tokenid)
	repaired := errors.Is(err, tokenshadow.ErrNoToken)
	if repaired {
		// Listed, but its secret is gone. A removal racing this may leave a secret without an
		// entry, which authenticates nothing and a new token of that name replaces.
		secret, err = s.o.Tokens.Generate(tokenid)
	}
	if err != nil {
		s.answerUpdate(w, err, "regenerating token "+tokenid)
		return
	}
	if repaired {
		s.o.Log.Warn("token had no secret in token.shadow: made a new one", "tokenid", tokenid)
		reply.Data(w, map[string]any{"tokenid": tokenid, "secret": secret, "repaired": true})
		return
	}
	reply.Data(w, map[string]string{"tokenid": tokenid, "secret": secret})
}

func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request, c who) {
	_, tokenid, ok := s.tokenTarget(w, r, c, true)
	if !ok {
		return
	}
	if err := s.o.Tokens.Delete(tokenid); err != nil && !errors.Is(err, tokenshadow.ErrNoToken) {
		s.internal(w, err, "deleting secret of "+tokenid)
		return
	}
	err := s.o.Users.Update(func(cfg *users.Config) error {
		if _, ok := cfg.Token(tokenid); !ok {
			return users.ErrNoToken
		}
		cfg.DeleteToken(tokenid)
		return nil
	})
	if err == nil || errors.Is(err, users.ErrNoToken) {
		// A token made again under the same name must not inherit the old one's roles, also
		// when user.cfg had lost its entry.
		if aerr := s.o.ACL.Update(func(a *acl.Config) error { a.RemoveAuthid(tokenid); return nil }); aerr != nil {
			err = aerr
		}
	}
	s.answerUpdate(w, err, "deleting token "+tokenid)
}
