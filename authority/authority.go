// Package authority is apid's HTTP handler: the privileged side of Gatehouse, served only on a
// unix socket to peers that SO_PEERCRED shows are proxyd or root (package peercred).
//
// It alone checks passwords (pbs realm: shadow.json; pam realm: PAM), signs tickets, writes
// user.cfg, token.shadow, shadow.json and revocations.json (each under its lock, atomically,
// bumping the matching generation). It verifies the credential of every call itself (package
// credential: the API token, or the ticket cookie and, unless the call is GET or HEAD, its CSRF
// token), with its own caches, as PBS's privileged daemon does, and believes no identity that
// proxyd names: a compromised proxyd can act only as users whose credentials it receives. A
// call with no credential from a peer running as root or as apid's own user that sends no
// client address (forward.Rhost, which proxyd always sets) is a local administrator (gatectl)
// and acts as root@pam; any other caller without a credential may only create a ticket, or ask
// GET /api2/json/ping, which reads nothing (proxyd's check that apid is alive, see gateway).
//
// # Permissions (minimal, as PBS's defaults)
//
//   - An administrator manages every user, token, password (of the pbs realm), second factor
//     and the ACL. Administrators are root@pam and every user or token holding role Admin on
//     "/" with propagate 1 in acl.cfg (package acl), checked on each request through the
//     cached parse (one generation load and a map lookup while nothing changed), so a grant
//     or a removal takes effect at the next request. A token is an administrator only through
//     its own entry: its user's Admin does not pass to it (PBS's privilege separation).
//   - A user reads and updates their own entry (comment, email, names), changes their own
//     password and manages their own tokens; only administrators create, enable or delete users.
//   - An API token acts as its user (or as an administrator, with its own Admin entry) but never
//     changes passwords nor manages tokens or second factors, so a leaked token cannot mint more.
//   - Deleting a user removes their ACL entries and their tokens'; deleting a token, its own.
//
// # ACL (acl.go)
//
//	GET /access/acl [path, exact]   administrators: [{path, ugid, ugid_type, roleid, propagate}]
//	PUT /access/acl                 administrators: path, role, auth-id or group, propagate
//	                                (default 1), delete (PBS: groups are not supported yet)
//
// # Tickets
//
// A login with a correct password, or a renewal (the password is a valid, unrevoked ticket of
// the same user, signed by the current key: a retired key's ticket works as a session until
// it expires but is never renewed), returns {"username", "ticket", "CSRFPreventionToken"} with a 2 h ticket,
// stamped no earlier than the user's revocation time + 1 s. Logout and a password change
// record a revocation time for the user, ending every older ticket in every process; a password
// change hands the calling session a new ticket (forward.NewTicket) so it survives.
// A failed login answers 401 with the reason in forward.Failure, for proxyd's auth log only.
//
// # Second factors
//
// A password login of a user with enabled second factors (package tfa) answers, as PBS, a
// half-authenticated "!tfa!" ticket (10 min, bound to the user, stamped after any revocation)
// whose data is the challenge, with CSRFPreventionToken "invalid". The second call sends it as
// tfa-challenge with password "totp:<code>", "recovery:<code>" or "webauthn:<json>" and gets the
// full ticket; a revocation (logout, password change) in between ends the half ticket too.
// Renewal with a full ticket needs no second factor. Proxmox VE's one-call otp parameter is
// accepted as a TOTP answer. Management of second factors: tfa.go.
package authority

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"gatehouse/acl"
	"gatehouse/authid"
	"gatehouse/credential"
	"gatehouse/forward"
	"gatehouse/lockfile"
	"gatehouse/peercred"
	"gatehouse/realm"
	"gatehouse/reply"
	"gatehouse/revocation"
	"gatehouse/shmem"
	"gatehouse/tfa"
	"gatehouse/ticket"
	"gatehouse/tokenshadow"
	"gatehouse/users"
)

// Superuser is the user who manages everyone.
const Superuser = "root@pam"

// Options configure a Server. Every field is required except KeyFiles, Log and Now; without
// KeyFiles, key rotation and Reload are refused.
type Options struct {
	Prefix      string // ticket prefix; default "PBS"
	Signer      *ticket.Signer
	CSRF        *ticket.CSRFKey
	KeyFiles    KeyFiles     // where Signer and CSRF came from, for rotation and Reload
	Generations *shmem.Cache // the shared counters: the ticket cache, status, the keys bump after a rotation
	Users       *users.Store
	Tokens      *tokenshadow.Store
	Realms      *realm.Realms
	Revocations *revocation.Store
	TFA         *tfa.Manager
	ACL         *acl.Store
	Log         *slog.Logger
	Now         func() time.Time
}

// Server is the apid handler.
type Server struct {
	o       Options
	started time.Time
	mux     *http.ServeMux
	check   *credential.Checker // every call's credential (caller)
	tickets *ticket.Cache       // check's verified tickets; its verifier follows keys.signer

	keyMu sync.RWMutex // held for reading while signing, for writing while keys change
	keys  keySet
}

// New checks o and returns a Server.
func New(o Options) (*Server, error) {
	if o.Signer == nil || o.CSRF == nil || o.Generations == nil || o.Users == nil || o.Tokens == nil || o.Realms == nil ||
		o.Revocations == nil || o.TFA == nil || o.ACL == nil {
		return nil, errors.New("creating apid handler: a required option is missing")
	}
	if o.Prefix == "" {
		o.Prefix = "PBS"
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{o: o, started: time.Now(), keys: keySet{signer: o.Signer, csrf: o.CSRF}, tickets: ticket.NewCache(o.Signer.Public(), 0)}
	var err error
	s.check, err = credential.New(credential.Options{Prefix: o.Prefix, Tickets: s.tickets, Generations: o.Generations,
		Tokens: o.Tokens, Users: o.Users, Revocations: o.Revocations})
	if err != nil {
		return nil, fmt.Errorf("creating apid handler: %w", err)
	}
	m := http.NewServeMux()
	// proxyd's liveness check of apid (gateway's apidTransport): no credential, nothing read.
	m.HandleFunc("GET /api2/json/ping", func(w http.ResponseWriter, r *http.Request) { reply.Data(w, map[string]bool{"pong": true}) })
	m.HandleFunc("POST /api2/json/access/ticket", s.createTicket)
	m.HandleFunc("DELETE /api2/json/access/ticket", s.caller(s.logout))
	m.HandleFunc("PUT /api2/json/access/password", s.caller(s.changePassword))
	m.HandleFunc("GET /api2/json/access/users", s.caller(s.listUsers))
	m.HandleFunc("POST /api2/json/access/users", s.caller(s.createUser))
	m.HandleFunc("GET /api2/json/access/users/{userid}", s.caller(s.getUser))
	m.HandleFunc("PUT /api2/json/access/users/{userid}", s.caller(s.updateUser))
	m.HandleFunc("DELETE /api2/json/access/users/{userid}", s.caller(s.deleteUser))
	m.HandleFunc("GET /api2/json/access/users/{userid}/token", s.caller(s.listTokens))
	m.HandleFunc("GET /api2/json/access/users/{userid}/token/{name}", s.caller(s.getToken))
	m.HandleFunc("POST /api2/json/access/users/{userid}/token/{name}", s.caller(s.createToken))
	m.HandleFunc("PUT /api2/json/access/users/{userid}/token/{name}", s.caller(s.updateToken))
	m.HandleFunc("DELETE /api2/json/access/users/{userid}/token/{name}", s.caller(s.deleteToken))
	m.HandleFunc("PUT /api2/json/access/users/{userid}/unlock-tfa", s.caller(s.unlockTFA))
	m.HandleFunc("GET /api2/json/access/tfa", s.caller(s.listTFA))
	m.HandleFunc("GET /api2/json/access/tfa/{userid}", s.caller(s.listUserTFA))
	m.HandleFunc("POST /api2/json/access/tfa/{userid}", s.caller(s.addTFA))
	m.HandleFunc("GET /api2/json/access/tfa/{userid}/{id}", s.caller(s.getTFA))
	m.HandleFunc("PUT /api2/json/access/tfa/{userid}/{id}", s.caller(s.updateTFA))
	m.HandleFunc("DELETE /api2/json/access/tfa/{userid}/{id}", s.caller(s.deleteTFA))
	m.HandleFunc("GET /api2/json/access/acl", s.caller(s.readACL))
	m.HandleFunc("PUT /api2/json/access/acl", s.caller(s.updateACL))
	m.HandleFunc("GET /api2/json/config/access/tfa/webauthn", s.caller(s.getWebauthnConfig))
	m.HandleFunc("PUT /api2/json/config/access/tfa/webauthn", s.caller(s.setWebauthnConfig))
	m.HandleFunc("GET /api2/json/status", s.caller(s.status))
	m.HandleFunc("POST /api2/json/keys/rotate", s.caller(s.rotateKeys))
	s.mux = m
	return s, nil
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// who is the verified caller of a request.
type who struct {
	authid  authid.Authid
	session string // cookie name when the caller came with a ticket
	admin   bool   // root@pam, or Admin on "/" with propagate 1 in acl.cfg
}

func (c who) userid() string { return c.authid.Userid() }

// rootPam reports whether c is root@pam itself (not one of its tokens).
func (c who) rootPam() bool { return !c.authid.IsToken() && c.userid() == Superuser }

// superuser reports whether c is an administrator: it may do everything root@pam may.
func (c who) superuser() bool { return c.admin }

// adminUser reports whether c is an administrator acting as a user, not through an API token:
// only they change passwords, grant roles and touch second factors of others, so that an
// administrator's token cannot make itself a login.
func (c who) adminUser() bool { return c.admin && !c.authid.IsToken() }

// may reports whether c may change target's password or second factors: never a token.
func (c who) may(target string) bool {
	return !c.authid.IsToken() && (c.superuser() || c.userid() == target)
}

// caller wraps h with the caller's authentication: apid verifies the credential of every call
// itself (package credential), whoever forwarded it, so that a compromised proxyd can act only
// as users whose credentials it receives. A call with no credential at all is a local
// administrator (gatectl), acting as root@pam, only from a peer running as root or as apid's own
// user that names no client address (forward.Rhost, which proxyd always sets); anything else
// without a credential is 401. A refused credential is 401 with the reason for proxyd's auth
// log (forward.Failure), like a failed login.
func (s *Server) caller(h func(http.ResponseWriter, *http.Request, who)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		now := s.o.Now()
		id, session, err := s.identify(r, now)
		var f *credential.Failure
		switch {
		case errors.As(err, &f):
			s.authFail(w, r, f.User, f.Reason)
			return
		case err != nil:
			s.internal(w, err, "checking the caller's credential")
			return
		}
		a, err := authid.Parse(id)
		if err != nil {
			reply.Error(w, http.StatusBadRequest, "bad caller identity")
			return
		}
		c := who{authid: a, session: session}
		c.admin = c.rootPam()
		if !c.admin {
			if c.admin, err = s.o.ACL.Admin(a.String()); err != nil {
				// A broken acl.cfg takes the administrators' rights away (root@pam keeps
				// them), not everyone's logout and own password.
				s.o.Log.Error("reading acl.cfg: treating the caller as no administrator", "caller", a.String(), "err", err)
				c.admin = false
			}
		}
		h(w, r, c)
	}
}

// identify verifies r's credential: an API token, else a ticket cookie with, for a call that
// is not GET or HEAD, its CSRF token (as proxyd requires under /api2). It returns the caller's
// id and the cookie the ticket came in ("" for a token or a local administrator).
func (s *Server) identify(r *http.Request, now time.Time) (id, session string, err error) {
	if authz := r.Header.Get("Authorization"); authz != "" {
		c, _, err := s.check.Token(authz, now)
		return c.Authid, "", err
	}
	tk := s.check.TicketCookie(r, s.check.HostCookie(), s.check.LegacyCookie())
	if tk.Value == "" {
		if s.localAdmin(r) {
			return Superuser, "", nil
		}
		return "", "", &credential.Failure{Reason: "no authentication credentials provided"}
	}
	c, _, err := s.check.Ticket(tk, now)
	if err != nil {
		return "", "", err
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if err := s.csrfKey().Check(r.Header.Get("CSRFPreventionToken"), c.Userid, now); err != nil {
			return "", "", &credential.Failure{User: c.Userid, Reason: "missing or invalid CSRF prevention token"}
		}
	}
	return c.Authid, c.Cookie, nil
}

// localAdmin reports whether r comes from a local administrator: a peer running as root or as
// apid's own user (demo mode) that names no client address. proxyd always names one.
func (s *Server) localAdmin(r *http.Request) bool {
	cred, ok := peercred.FromContext(r.Context())
	return ok && (cred.UID == 0 || cred.UID == uint32(os.Getuid())) && r.Header.Get(forward.Rhost) == ""
}

type ticketRequest struct {
	Username     string `json:"username"`
	Password     string `json:"password"`
	Realm        string `json:"realm"`
	TFAChallenge string `json:"tfa-challenge"`
	OTP          string `json:"otp"` // PVE's one-call TOTP login; not in PBS
}

func (s *Server) createTicket(w http.ResponseWriter, r *http.Request) {
	now := s.o.Now()
	var req ticketRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		reply.Error(w, http.StatusBadRequest, "malformed ticket request")
		return
	}
	userid := req.Username
	if req.Realm != "" && !strings.Contains(userid, "@") {
		userid += "@" + req.Realm
	}
	fail := func(reason string) { s.authFail(w, r, userid, reason) }
	if _, err := authid.ParseUserid(userid); err != nil {
		fail("invalid user name")
		return
	}
	active := func() bool {
		cfg, err := s.o.Users.Config()
		if err != nil {
			s.internal(w, err, "reading users")
			return false
		}
		if err := cfg.Active(userid, now); err != nil {
			fail("user account is disabled, expired or unknown")
			return false
		}
		return true
	}
	renewal := false
	switch {
	case req.TFAChallenge != "":
		// The account first, so that a disabled user's code is not spent on a failing login.
		if !active() {
			return
		}
		reason, ok := s.secondStep(w, userid, req.TFAChallenge, req.Password, now)
		if !ok {
			if reason != "" {
				fail(reason)
			}
			return
		}
	case strings.HasPrefix(req.Password, s.o.Prefix+":"):
		renewal = true
		// The current key only: a retired key, perhaps stolen, could backdate tickets that it
		// still verifies; it must never turn them into tickets of the current key.
		tu, issued, err := s.verifier().Current().VerifyUser(req.Password, s.o.Prefix, now)
		if err != nil || tu != userid {
			reason := "invalid ticket"
			if _, _, rerr := s.verifier().VerifyUser(req.Password, s.o.Prefix, now); err != nil && rerr == nil {
				reason = "ticket of a retired signing key cannot be renewed"
			}
			fail(reason)
			return
		}
		revoked, err := s.o.Revocations.Revoked(userid, issued)
		if err != nil {
			s.internal(w, err, "checking revocation")
			return
		}
		if revoked {
			fail("ticket was revoked")
			return
		}
	default:
		if err := s.o.Realms.Check(userid, req.Password); err != nil {
			if errors.Is(err, realm.ErrBadPassword) || errors.Is(err, realm.ErrNoRealm) {
				fail("invalid credentials")
				return
			}
			s.internal(w, err, "checking password")
			return
		}
	}
	// After the credentials, so that an unknown user costs what a wrong password costs.
	if req.TFAChallenge == "" && !active() {
		return
	}
	if req.TFAChallenge == "" && !renewal {
		challenge, err := s.o.TFA.Challenge(userid, now)
		if errors.Is(err, tfa.ErrUnsupported) {
			fail(err.Error())
			return
		}
		if err != nil {
			s.internal(w, err, "making tfa challenge")
			return
		}
		if challenge != "" && req.OTP != "" {
			// PVE's single call (go-proxmox's WithOTP): the code answers the challenge now.
			if reason, ok := s.verifyFactor(w, userid, challenge, "totp:"+req.OTP, now); !ok {
				if reason != "" {
					fail(reason)
				}
				return
			}
			challenge = ""
		}
		if challenge != "" {
			stamp, err := s.o.Revocations.NotBefore(userid, now)
			if err == nil {
				var tk string
				if tk, err = s.signTFA(userid, challenge, stamp); err == nil {
					reply.Data(w, map[string]any{"username": userid, "ticket": tk, "CSRFPreventionToken": "invalid"})
					return
				}
			}
			s.internal(w, err, "signing tfa ticket")
			return
		}
	}
	tk, err := s.newTicket(userid, now)
	if err != nil {
		s.internal(w, err, "signing ticket")
		return
	}
	reply.Data(w, map[string]any{"username": userid, "ticket": tk, "CSRFPreventionToken": s.csrfToken(userid, now)})
}

// newTicket signs a full ticket for userid, stamped after any revocation.
func (s *Server) newTicket(userid string, now time.Time) (string, error) {
	stamp, err := s.o.Revocations.NotBefore(userid, now)
	if err != nil {
		return "", err
	}
	s.keyMu.RLock()
	defer s.keyMu.RUnlock()
	return s.keys.signer.SignUser(s.o.Prefix, userid, stamp)
}

// logout is DELETE /access/ticket: it ends every ticket of the caller's user (PBS's logout only
// clears the cookie). An API token is refused (403): it has no session, and a token, kept apart
// from its user's rights as in PBS, must not end the user's sessions.
func (s *Server) logout(w http.ResponseWriter, r *http.Request, c who) {
	if c.authid.IsToken() {
		reply.Error(w, http.StatusForbidden, "API tokens have no session to end")
		return
	}
	if err := s.o.Revocations.Revoke(c.userid(), s.o.Now()); err != nil {
		s.internal(w, err, "revoking tickets")
		return
	}
	reply.Data(w, nil)
}

func (s *Server) changePassword(w http.ResponseWriter, r *http.Request, c who) {
	p, err := readParams(w, r, "userid", "password", "confirmation-password")
	if err != nil {
		reply.Invalid(w, err)
		return
	}
	target, pw := p["userid"], p["password"]
	if target == "" || pw == "" {
		reply.Error(w, http.StatusBadRequest, "userid and password are required")
		return
	}
	if !c.may(target) {
		reply.Error(w, http.StatusForbidden, "permission check failed")
		return
	}
	a, err := authid.ParseUserid(target)
	if err != nil {
		reply.Error(w, http.StatusBadRequest, "invalid userid")
		return
	}
	if a.Realm != "pbs" {
		reply.Error(w, http.StatusBadRequest, fmt.Sprintf("passwords of realm %q are not managed by Gatehouse", a.Realm))
		return
	}
	// As PBS: everyone but root@pam confirms with their own current password, so that a
	// stolen session or an unattended browser cannot take the account over.
	if !s.reauth(w, r, c, p["confirmation-password"], "password change") {
		return
	}
	if err := s.o.Realms.Passwords.Set(target, pw); err != nil {
		if errors.Is(err, realm.ErrInvalidPassword) {
			reply.Error(w, http.StatusBadRequest, "password does not meet the requirements")
			return
		}
		s.internal(w, err, "setting password")
		return
	}
	now := s.o.Now()
	if err := s.o.Revocations.Revoke(target, now); err != nil {
		s.internal(w, err, "revoking tickets")
		return
	}
	if c.session != "" && c.userid() == target {
		tk, err := s.newTicket(target, now)
		if err != nil {
			s.internal(w, err, "signing ticket")
			return
		}
		w.Header().Set(forward.NewTicket, tk)
	}
	reply.Data(w, nil)
}

// internal answers a failure of the server side. Two kinds name their cause to the caller, as
// they are the operator's to fix and their errors hold only paths: a lock another process holds
// past the lock timeout (503, "taking exclusive lock <path>: timeout after ...") and a full file
// system or a file-size limit (507, "... <path>: no space left on device"); the old file is then
// whole and still served. Anything else is 500 "<doing> failed", with the details in the log only.
func (s *Server) internal(w http.ResponseWriter, err error, doing string) {
	s.o.Log.Error(doing, "err", err)
	switch {
	case errors.Is(err, lockfile.ErrTimeout):
		reply.Error(w, http.StatusServiceUnavailable, doing+" failed: "+err.Error())
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EFBIG):
		reply.Error(w, http.StatusInsufficientStorage, doing+" failed: "+err.Error())
	default:
		reply.Error(w, http.StatusInternalServerError, doing+" failed")
	}
}
