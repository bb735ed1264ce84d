package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"gatehouse/authfail"
	"gatehouse/forward"
	"gatehouse/params"
	"gatehouse/reply"
	"gatehouse/ticket"
)

// ticketParams are the parameters PBS's POST /access/ticket takes. path, privs and port ask
// PBS for a permission check alongside the login; Gatehouse accepts and ignores them. otp is
// Proxmox VE's: a TOTP code sent with the password, answering the second step in one call.
var ticketParams = []string{"username", "password", "realm", "path", "privs", "port", "tfa-challenge", "http-only", "otp"}

// createTicket is POST /access/ticket: login with a password, renewal with a ticket as the
// password, or the second TFA step. apid decides; proxyd validates, limits (a failure reserved
// before apid checks, kept when apid refuses) and logs.
func (s *Server) createTicket(w http.ResponseWriter, r *http.Request) {
	now := s.o.Now()
	client, _ := authfail.ClientAddr(r, s.o.Trusted)
	if crossSite(r) {
		// Login CSRF: another site's form must not sign the browser in to the attacker's
		// account (the HttpOnly flow sets the session cookie) nor renew a session.
		s.o.Log.Info("refused a cross-site ticket request", "client", client.String(), "origin", r.Header.Get("Origin"))
		reply.Error(w, http.StatusForbidden, "cross-site ticket requests are refused")
		return
	}
	// The failure is reserved before apid checks anything and given back unless apid refuses
	// the credentials, so that parallel guesses get no more checks than the allowance.
	res, ok := s.o.Guard.Reserve(r.Context(), client.Addr(), now)
	if !ok {
		s.o.Metrics.ticketRateLimited(s.o.Prefix, r)
		s.tooMany(w, client, now)
		return
	}
	failed := false
	defer func() {
		if !failed {
			res.Release()
		}
	}()
	p, err := params.Read(r)
	if err == nil {
		err = params.Only(p, ticketParams...)
	}
	httpOnly := false
	if err == nil {
		httpOnly, err = params.Bool(p, "http-only")
	}
	if err == nil {
		missing := params.Error{}
		for _, k := range []string{"username", "password"} {
			if p[k] == "" {
				missing[k] = "property is missing and it is not optional"
			}
		}
		if len(missing) > 0 {
			err = missing
		}
	}
	if err != nil {
		reply.Invalid(w, err)
		return
	}
	body, _ := json.Marshal(map[string]string{
		"username": p["username"], "password": p["password"], "realm": p["realm"], "tfa-challenge": p["tfa-challenge"],
		"otp": p["otp"],
	})
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, "http://apid/api2/json/access/ticket", bytes.NewReader(body))
	if err != nil {
		s.apidFailed(w, r, &apidError{reason: apidBroken, err: err})
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(forward.Rhost, client.String())
	resp, err := s.apid.Do(req) // bounded by the apid transport (apid.go)
	if err != nil {
		s.apidFailed(w, r, err)
		return
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, params.MaxBody))
	if err != nil {
		s.apidFailed(w, r, err)
		return
	}
	s.o.Metrics.ticketAnswer(ticketCallMethod(s.o.Prefix, p), resp.StatusCode)
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		failed = true
		if lerr := res.Fail(client, p["username"], forward.Value(resp.Header, forward.Failure), now); lerr != nil {
			s.o.Log.Error("writing auth log", "err", lerr)
		}
		if s.o.Guard.Wait(r.Context()) != nil {
			return
		}
		reply.Error(w, http.StatusUnauthorized, "authentication failure")
		return
	default:
		forward.Strip(resp.Header)
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		w.Write(answer)
		return
	}
	var out struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(answer, &out); err != nil || out.Data == nil {
		s.apidFailed(w, r, &apidError{reason: apidInvalid, err: errors.New("the ticket answer is not {\"data\": {...}}")})
		return
	}
	// A half-authenticated ("!tfa!") ticket stays in the body, as PBS does: it is the
	// tfa-challenge parameter of the second call, not a session.
	if tk, _ := out.Data["ticket"].(string); httpOnly && tk != "" && !ticket.IsTFA(tk) {
		http.SetCookie(w, s.ticketCookieFor(s.cookie, tk))
		delete(out.Data, "ticket")
		out.Data["ticket-info"] = ticket.Info(tk)
	}
	reply.Data(w, out.Data)
}

// clearsCookies reports whether apid's answer to r ends the session: a logout apid accepted.
// Only then does proxyd clear the ticket cookies (fromApid), so a failed logout never looks
// like a successful one.
func clearsCookies(r *http.Request, status int) bool {
	return r.Method == http.MethodDelete && r.URL.Path == "/api2/json/access/ticket" && status == http.StatusOK
}
