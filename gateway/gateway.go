// Package gateway is proxyd's HTTP handler: the public, unprivileged side of Gatehouse. It
// authenticates every request, serves the calls it can answer alone, forwards the rest to apid
// and reverse-proxies everything outside /api2 to the upstream application.
//
// # Authentication, in order
//
//  1. An Authorization header "PBSAPIToken=<user@realm!name>:<secret>": the API token, checked
//     by package credential (token.shadow through this process's verified-secret cache; the
//     token and its user enabled and not expired). No CSRF token is needed.
//  2. A ticket cookie, "__Host-PBSAuthCookie" (HttpOnly flow) before "PBSAuthCookie" (legacy);
//     the legacy one is ignored where Options.HostCookieOnly says (proxyd: --host-cookie-only,
//     default the reverse proxy and forward-auth; /api2 always takes it), since a sibling
//     subdomain can set it for the parent domain. The ticket is checked by package credential
//     (signature through the verified-ticket cache, 2 h lifetime, user active, not revoked). A
//     request that is not GET or HEAD must also carry a valid "CSRFPreventionToken" header for
//     that user; outside /api2 (reverse proxy, forward-auth) a same-origin browser request is
//     accepted instead (see upstream.go).
//  3. Nothing: only the public calls (GET /api2/json/ping, POST /api2/json/access/ticket) and
//     the login page (/gatehouse/login, /gatehouse/static/). The account page and the other
//     web pages are pages.go's.
//
// The product prefix ("PBS") names the cookies, the token scheme and the tickets.
//
// # Failures
//
// A client IP (the TCP peer, or X-Forwarded-For from a trusted proxy only) that has used up its
// allowance of failures gets 429 before any credential is checked. Every check runs on a
// failure reserved before it starts and given back when it succeeds (authfail.Guard.Reserve),
// so parallel guesses get no more checks than the allowance: token, ticket, password and
// second factor alike, and the current password apid checks for a password or second-factor
// change. Every failed authentication writes one fail2ban line to the auth log, is held back
// by the configured delay and is answered 401 with no detail. Unknown parameters are 400
// (package params); bodies over 64 KiB are 413. A config file the check needs that cannot be
// used (token.shadow, user.cfg, revocations.json) is 500, logged once per version of the file
// and counted per request (configerr.go).
//
// # Forwarding
//
// A ticket request that a browser marks as cross-origin (Sec-Fetch-Site, else Origin) is
// refused: no login CSRF. Ticket creation and renewal, logout and every /access call go to
// apid over its unix socket with the caller's credential as the client sent it (the
// Authorization header, or the ticket cookie and the CSRF token), which apid verifies again
// itself: proxyd names no identity apid would believe (package forward carries only the client
// address, and apid's failure reasons back). proxyd never signs a ticket, reads a private key
// or writes a file. proxyd turns apid's ticket answer into the HttpOnly flow when asked
// (http-only=1): it sets __Host-PBSAuthCookie (Path=/; Secure; HttpOnly; SameSite=Lax) and
// returns ticket-info instead of the ticket. Every call to apid is bounded (apid.go): with no
// answer within --apid-timeout (2 s) proxyd checks apid is alive, and abandons the call when
// that check is not answered either, or after --apid-max-wait (15 s); an abandoned call, or one
// apid cannot be reached for, is 503 naming apid, counted and logged once per incident, and
// gives its reserved failure back.
//
// # Reverse proxy and forward-auth
//
// proxyd owns /api2/ and /gatehouse/; every other path goes to the upstream (Options.Upstream;
// 404 without one) once authenticated, with X-Gatehouse-User (user id) and X-Gatehouse-Authid
// (user or token id) set, X-Forwarded-For (the client address proxyd believes), -Host and
// -Proto (https) set, and the Authorization header, the CSRFPreventionToken header and the two
// ticket cookies removed: the application never sees a credential. Every X-Gatehouse-* header a
// client sends, also spelled with '_' for '-', is removed before anything else (forward.Strip in
// ServeHTTP), so the application may trust these two. On the way to the upstream proxyd also
// removes every header with '_' in its name (a CGI-style application reads X_Forwarded_For as
// X-Forwarded-For; nginx drops them by default), a client's own front-proxy claims (Forwarded,
// X-Real-IP, X-Forwarded-Port, -Uri, -Prefix, -Server, -Method, X-Original-URI, -Method) and
// method overrides (X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override: the CSRF rule
// judged the request's own method). Responses stream (FlushInterval -1) and upgrades
// (WebSocket) pass; an unreachable upstream is 502 and one log line. A refused GET or HEAD that
// accepts text/html is 303 to /gatehouse/login?next=<request URI>, anything else 401.
//
// /gatehouse/auth (any method) is forward-auth for nginx auth_request and Caddy forward_auth:
// it checks the credentials on the request itself and answers 200 with X-Gatehouse-User and
// X-Gatehouse-Authid, or 401 with no body (plus X-Gatehouse-Login, the login URL, for a browser
// navigation). The original method comes from X-Forwarded-Method (Caddy) or X-Original-Method
// (nginx); without either the request counts as unsafe (fail closed). A request carrying any of
// X-Forwarded-Method, X-Original-Method, X-Forwarded-Uri, X-Original-URI, X-Forwarded-Host or
// X-Forwarded-Proto more than once is 400 with no body and one log line, before credentials
// are looked at: which value the front proxy set cannot be told.
//
// CSRF outside /api2: a ticket-authenticated request whose (original) method is not GET or HEAD
// needs a valid CSRFPreventionToken or a same-origin browser request: Sec-Fetch-Site
// "same-origin", or, without Sec-Fetch-Site, Origin equal to https://<Host> (forward-auth:
// <X-Forwarded-Proto or https>://<X-Forwarded-Host or Host>). A cross-site page cannot set these
// headers; anything else is an authentication failure, logged and limited like the others. A
// WebSocket handshake is checked like a POST: a GET with Upgrade, or, since nginx's
// auth_request drops Upgrade, with Sec-WebSocket-Key, Sec-WebSocket-Version or
// Sec-Fetch-Mode "websocket". Forward-auth headers X-Forwarded-Method and X-Original-Method
// that disagree make the method unsafe. API tokens need neither.
//
// # Request targets
//
// Only origin-form targets ("/path?query") are served; an absolute-form one ("GET
// https://host/path", which net/http would take the host from, ignoring Host) is 400. RFC 9112
// says a server MUST accept it; proxyd is an origin server behind which the host a front proxy
// routed by and the one the application is told must not differ, and no browser sends it there.
//
// # Limits
//
// What a client may hold on the public port before it has authenticated (limits.go; flags of
// proxyd, defaults here): the TLS handshake and a request's header within 10 s, the whole
// request within 30 s and its answer within 60 s after the header, 30 s idle between requests
// (HTTP/1.1 keep-alive and HTTP/2), a header of 16 KiB (net/http answers 431 above it, with
// 4 KiB of slack): a PBS ticket takes under 1 KiB, nginx passes header lines of up to 8 KiB.
// Connections: 512 in all, 64 per client address (IPv6 /64); requests in flight until
// authenticated, which HTTP/2 multiplexes on a connection: 512 in all, 64 per client, more are
// answered 503 at once (package connlimit; trusted proxies count in all only). Once a request
// is authenticated for the upstream application, its deadlines are lifted and it leaves the
// request cap, so streams, long transfers and WebSockets last as long as the two ends keep
// them; at most 1024 connections go to the upstream. TLS is Mozilla's intermediate profile:
// TLS 1.2 with ECDHE and AEAD suites only, and TLS 1.3.
//
// # Metrics
//
// proxyd serves Prometheus metrics at /metrics on a second, plain-HTTP listener that must be a
// loopback address (--metrics-listen, default 127.0.0.1:9807, empty: none), never on the public
// port: authentication attempts by method and result, the token and ticket cache counters, the
// shared generation counters, key reloads, failed calls to apid by reason, requests that hit a
// broken config file, and request latency by route pattern (metrics.go; the names and labels
// are listed in README.md).
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/authfail"
	"gatehouse/credential"
	"gatehouse/forward"
	"gatehouse/params"
	"gatehouse/reply"
	"gatehouse/revocation"
	"gatehouse/shmem"
	"gatehouse/ticket"
	"gatehouse/tokenshadow"
	"gatehouse/users"
)

// Version is what GET /version answers.
type Version struct {
	Version string `json:"version"`
	Release string `json:"release"`
	Repoid  string `json:"repoid"`
}

// Options configure a Server. All pointers are required except Upstream.
type Options struct {
	Prefix      string // ticket and cookie product prefix; default "PBS"
	Tickets     *ticket.Cache
	CSRF        *ticket.CSRFKey
	Tokens      *tokenshadow.Store
	Users       *users.Store
	Revocations *revocation.Store
	Generations *shmem.Cache
	Guard       *authfail.Guard
	Trusted     []netip.Prefix // proxies whose X-Forwarded-For is believed
	ApidSocket  string         // apid's unix socket
	// ApidTimeout and ApidMaxWait bound every call to apid (apid.go); 0: DefaultApidTimeout,
	// DefaultApidMaxWait.
	ApidTimeout, ApidMaxWait time.Duration
	Upstream                 *url.URL // the application behind Gatehouse; nil: 404 outside /api2
	Version                  Version
	// HostCookieOnly names the places that take only the __Host- ticket cookie and ignore the
	// legacy one: "upstream" (the reverse proxy), "auth" (forward-auth), "pages" (proxyd's
	// pages under /gatehouse/). /api2 always takes both. nil: both everywhere; proxyd's default
	// is DefaultHostCookieOnly (upstream.go).
	HostCookieOnly []string
	// LoadKeys reads authkey.pub and csrf.key again; it is called when the keys generation
	// moves (apid replaced a key), before the request that noticed it is checked. Optional.
	LoadKeys func() (*ticket.Verifier, *ticket.CSRFKey, error)
	Log      *slog.Logger
	Now      func() time.Time // default time.Now
	Metrics  *Metrics         // optional (metrics.go)
}

// Server is the proxyd handler.
type Server struct {
	o          Options
	check      *credential.Checker
	cookie     string                 // __Host-<P>AuthCookie
	legacy     string                 // <P>AuthCookie
	apid       *http.Client           // the ticket call
	toApid     *httputil.ReverseProxy // forwarded calls
	apidLog    *apidIncidents
	configErrs *configErrors
	upstream   *httputil.ReverseProxy
	mux        *http.ServeMux
	hostOnly   map[door]bool // doors that take only the __Host- cookie (Options.HostCookieOnly)

	csrf    atomic.Pointer[ticket.CSRFKey]
	keysMu  sync.Mutex    // serializes reloads
	keysGen atomic.Uint64 // keys generation the loaded keys belong to
}

// New checks o and returns a Server.
func New(o Options) (*Server, error) {
	if o.Tickets == nil || o.CSRF == nil || o.Tokens == nil || o.Users == nil || o.Revocations == nil ||
		o.Generations == nil || o.Guard == nil || o.ApidSocket == "" {
		return nil, errors.New("creating gateway: a required option is missing")
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
	hostOnly, err := hostOnlyDoors(o.HostCookieOnly)
	if err != nil {
		return nil, err
	}
	if o.ApidTimeout == 0 {
		o.ApidTimeout = DefaultApidTimeout
	}
	if o.ApidMaxWait == 0 {
		o.ApidMaxWait = DefaultApidMaxWait
	}
	if o.ApidTimeout < 0 || o.ApidMaxWait < o.ApidTimeout {
		return nil, fmt.Errorf("creating gateway: apid timeout %v and max wait %v: want 0 < timeout <= max wait", o.ApidTimeout, o.ApidMaxWait)
	}
	sock := o.ApidSocket
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: 64,
	}
	check, err := credential.New(credential.Options{Prefix: o.Prefix, Tickets: o.Tickets, Generations: o.Generations,
		Tokens: o.Tokens, Users: o.Users, Revocations: o.Revocations})
	if err != nil {
		return nil, fmt.Errorf("creating gateway: %w", err)
	}
	incidents := &apidIncidents{log: o.Log, now: o.Now}
	toApid := &apidTransport{inner: tr, timeout: o.ApidTimeout, maxWait: o.ApidMaxWait, answered: incidents.answered}
	s := &Server{
		o:          o,
		check:      check,
		cookie:     check.HostCookie(),
		legacy:     check.LegacyCookie(),
		apid:       &http.Client{Transport: toApid}, // bounded by toApid, not by a client timeout
		apidLog:    incidents,
		configErrs: &configErrors{log: o.Log},
	}
	s.hostOnly = hostOnly
	s.csrf.Store(o.CSRF)
	s.keysGen.Store(o.Generations.Load(shmem.Keys))
	s.toApid = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host, pr.Out.Host = "http", "apid", "apid"
		},
		Transport:      toApid,
		ModifyResponse: s.fromApid,
		ErrorHandler:   s.apidFailed,
	}
	if o.Upstream != nil {
		s.upstream = s.newUpstream(o.Upstream)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api2/json/ping", s.ping)
	mux.HandleFunc("GET /api2/json/version", s.authed(s.version))
	mux.HandleFunc("POST /api2/json/access/ticket", s.createTicket)
	mux.HandleFunc("DELETE /api2/json/access/ticket", s.authed(s.forward))
	mux.HandleFunc("/api2/json/access/", s.authed(s.forward))
	mux.HandleFunc("/api2/json/config/access/tfa/", s.authed(s.forward))
	mux.HandleFunc("/api2/", func(w http.ResponseWriter, r *http.Request) {
		reply.Error(w, http.StatusNotImplemented, "no such API call")
	})
	s.routeGatehouse(mux)
	if s.upstream != nil {
		mux.HandleFunc("/", through(doorUpstream, s.authed(s.proxyUpstream)))
	} else {
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { reply.Error(w, http.StatusNotFound, "not found") })
	}
	s.mux = mux
	return s, nil
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.RequestURI != "" && r.RequestURI[0] != '/' { // see the package comment
		reply.Error(w, http.StatusBadRequest, "request target must be a path: absolute-form is for proxies")
		return
	}
	forward.Strip(r.Header)
	s.o.Metrics.serve(w, r, s.mux)
}

// caller is a verified identity and the client address it came from.
type caller struct {
	credential.Caller
	client netip.AddrPort
}

type ctxKey struct{}

func callerOf(r *http.Request) caller {
	c, _ := r.Context().Value(ctxKey{}).(caller)
	return c
}

// authed wraps h with authentication; see the package comment. The check runs on a failure
// reserved in advance (authfail.Guard.Reserve) and given back once it succeeds, so that
// parallel guesses get no more checks than the client's allowance.
func (s *Server) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		now := s.o.Now()
		client, _ := authfail.ClientAddr(r, s.o.Trusted)
		authz := r.Header.Get("Authorization")
		tk := s.ticketCookie(r)
		if authz == "" && tk.Value == "" {
			s.deny(w, r)
			return
		}
		method := methodTicket
		if authz != "" {
			method = methodToken
		}
		res, ok := s.o.Guard.Reserve(r.Context(), client.Addr(), now)
		if !ok {
			s.o.Metrics.auth(method, resultRateLimited)
			s.tooMany(w, client, now)
			return
		}
		if !s.keysReady(w) {
			res.Release()
			return
		}
		var c credential.Caller
		var err error
		if authz != "" {
			var hit bool
			c, hit, err = s.check.Token(authz, now)
			s.o.Metrics.tokenCache(hit)
		} else {
			c, err = s.checkTicket(r, tk, now)
		}
		if err != nil {
			s.o.Metrics.authError(method, err)
			s.fail(w, r, res, client, err, now)
			return
		}
		res.Release()
		s.o.Metrics.auth(method, resultSuccess)
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, caller{c, client})))
	}
}

// fail settles the reservation of a failed authentication: a refused credential keeps the
// failure, is logged, delayed and denied; a server error gives it back and answers 500.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, res authfail.Reservation, client netip.AddrPort, err error, now time.Time) {
	var af *credential.Failure
	if !errors.As(err, &af) {
		res.Release()
		s.serverError(w, "authenticating request", err)
		return
	}
	if lerr := res.Fail(client, af.User, af.Reason, now); lerr != nil {
		s.o.Log.Error("writing auth log", "err", lerr)
	}
	if s.o.Guard.Wait(r.Context()) != nil {
		return
	}
	s.deny(w, r)
}

// ticketCookie finds the ticket cookie: the HttpOnly one first, raw or percent-encoded; the
// legacy one only where r's door takes it (Options.HostCookieOnly).
func (s *Server) ticketCookie(r *http.Request) credential.Cookie {
	if s.hostOnly[cookieDoor(r)] {
		return s.check.TicketCookie(r, s.cookie)
	}
	return s.check.TicketCookie(r, s.cookie, s.legacy)
}

// reloadKeys loads authkey.pub and csrf.key again when the keys generation has moved since
// they were loaded. The fast path is one shared-memory load and one atomic load.
func (s *Server) reloadKeys() error {
	g := s.o.Generations.Load(shmem.Keys)
	if g == s.keysGen.Load() || s.o.LoadKeys == nil {
		return nil
	}
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	if g == s.keysGen.Load() {
		return nil
	}
	v, k, err := s.o.LoadKeys()
	if err != nil {
		return err
	}
	s.o.Tickets.SetVerifier(v)
	s.csrf.Store(k)
	s.keysGen.Store(g)
	s.o.Metrics.keysReloaded()
	s.o.Log.Info("reloaded keys", "generation", g)
	return nil
}

// keysReady reloads the keys when their generation moved (reloadKeys); when they cannot be
// loaded it answers 503 and returns false.
func (s *Server) keysReady(w http.ResponseWriter) bool {
	if err := s.reloadKeys(); err != nil {
		s.o.Log.Error("reloading keys", "err", err)
		reply.Error(w, http.StatusServiceUnavailable, "keys unavailable")
		return false
	}
	return true
}

// Reload is proxyd's SIGHUP: it reads authkey.pub and csrf.key again (through LoadKeys) even
// when no generation moved, and drops this process's token and user caches so that the next
// request reads token.shadow and user.cfg from disk. When a key cannot be loaded it returns the
// error and the old keys and caches stay. Requests in flight are not disturbed.
func (s *Server) Reload() error {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	if s.o.LoadKeys != nil {
		g := s.o.Generations.Load(shmem.Keys)
		v, k, err := s.o.LoadKeys()
		if err != nil {
			return fmt.Errorf("reloading keys: %w", err)
		}
		s.o.Tickets.SetVerifier(v)
		s.csrf.Store(k)
		s.keysGen.Store(g)
	}
	s.o.Tokens.Forget()
	s.o.Users.Forget()
	return nil
}

// clearedCookie is the Set-Cookie that removes the ticket cookie name from the browser.
func (s *Server) clearedCookie(name string) *http.Cookie {
	ck := s.ticketCookieFor(name, "")
	ck.MaxAge = -1
	return ck
}

// checkTicket verifies a ticket cookie and applies the CSRF rule of r's door.
func (s *Server) checkTicket(r *http.Request, tk credential.Cookie, now time.Time) (credential.Caller, error) {
	c, hit, err := s.check.Ticket(tk, now)
	s.o.Metrics.ticketCache(hit)
	if err != nil {
		return credential.Caller{}, err
	}
	if err := s.checkCSRF(r, c.Userid, now); err != nil {
		return credential.Caller{}, err
	}
	return c, nil
}

// tooMany answers 429 with the time until the client may try again.
func (s *Server) tooMany(w http.ResponseWriter, client netip.AddrPort, now time.Time) {
	if d := s.o.Guard.RetryAfter(client.Addr(), now); d > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((d+time.Second-1)/time.Second)))
	}
	reply.Error(w, http.StatusTooManyRequests, "too many failed authentication attempts")
}

func (s *Server) ping(w http.ResponseWriter, r *http.Request) {
	reply.Data(w, map[string]bool{"pong": true})
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	reply.Data(w, s.o.Version)
}

// forward sends an authenticated /access call to apid with the caller's credential as it came
// (the Authorization header, or the ticket cookie and the CSRF token): apid verifies it again
// itself. Only the client address travels in an internal header. apid may check a secret of
// its own (the current password a password or second-factor change needs), so the call runs
// on a reserved failure too, kept when apid answers with an authentication failure.
func (s *Server) forward(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > params.MaxBody {
		reply.Error(w, http.StatusRequestEntityTooLarge, params.ErrTooLarge.Error())
		return
	}
	c := callerOf(r)
	now := s.o.Now()
	res, ok := s.o.Guard.Reserve(r.Context(), c.client.Addr(), now)
	if !ok {
		s.tooMany(w, c.client, now)
		return
	}
	f := &forwarded{res: res}
	r = r.WithContext(context.WithValue(r.Context(), forwardedKey{}, f))
	r.Header.Set(forward.Rhost, c.client.String())
	r.Body = http.MaxBytesReader(w, r.Body, params.MaxBody)
	s.toApid.ServeHTTP(w, r)
	if !f.settled {
		f.res.Release() // apid down or abandoned, the client gone, or its body refused: no verdict
	}
}

// forwarded is a call to apid in flight: the failure reserved for it, settled once.
type forwarded struct {
	res     authfail.Reservation
	settled bool
}

type forwardedKey struct{}

// fromApid inspects apid's answer before the client sees it: an authentication failure keeps
// the reserved failure and is logged, anything else gives it back; a new ticket for the calling
// session becomes its cookie; internal headers go.
func (s *Server) fromApid(resp *http.Response) error {
	r := resp.Request
	if nt := resp.Header.Get(forward.NewTicket); nt != "" {
		if name := callerOf(r).Cookie; name != "" {
			resp.Header.Add("Set-Cookie", s.ticketCookieFor(name, nt).String())
		}
	}
	if clearsCookies(r, resp.StatusCode) {
		for _, name := range []string{s.cookie, s.legacy} {
			resp.Header.Add("Set-Cookie", s.clearedCookie(name).String())
		}
	}
	if f, _ := r.Context().Value(forwardedKey{}).(*forwarded); f != nil && !f.settled {
		f.settled = true
		if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get(forward.Failure) != "" {
			if err := f.res.Fail(callerOf(r).client, forward.Value(resp.Header, forward.FailUser), forward.Value(resp.Header, forward.Failure), s.o.Now()); err != nil {
				s.o.Log.Error("writing auth log", "err", err)
			}
		} else {
			f.res.Release()
		}
	}
	forward.Strip(resp.Header)
	return nil
}

// ticketCookieFor makes the cookie a ticket travels in. The HttpOnly one has the attributes
// DESIGN.md gives; the legacy one is what the PBS web UI sets from script. A ticket holding
// bytes a cookie value cannot carry travels percent-encoded (credential.Encode).
func (s *Server) ticketCookieFor(name, value string) *http.Cookie {
	value = credential.Encode(value)
	if name == s.cookie {
		return &http.Cookie{Name: name, Value: value, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode}
	}
	return &http.Cookie{Name: name, Value: value, Path: "/", Secure: true, SameSite: http.SameSiteLaxMode}
}
