// Package gateway is proxyd's HTTP handler: the public, unprivileged side of Gatehouse. It
// authenticates every request, serves the calls it can answer alone, forwards the rest to apid
// and reverse-proxies everything outside /api2 to the upstream application.
//
// # Authentication, in order
//
//  1. An Authorization header "PBSAPIToken=<user@realm!name>:<secret>" (or with a space after
//     PBSAPIToken): the secret is checked against token.shadow through this process's
//     verified-secret cache (tokenshadow), and the token and its user must be enabled and not
//     expired (user.cfg). No CSRF token is needed.
//  2. A ticket cookie, "__Host-PBSAuthCookie" (HttpOnly flow) before "PBSAuthCookie" (legacy),
//     raw or percent-encoded; the legacy one is ignored where Options.HostCookieOnly says
//     (proxyd: --host-cookie-only, default the reverse proxy and forward-auth; /api2 always
//     takes it), since a sibling subdomain can set it for the parent domain. The signature is
//     checked through the verified-ticket cache (ticket.Cache), the 2 h lifetime on every
//     request, the user must be active and the ticket not revoked (revocations.json). A request that is not GET or HEAD must also carry a valid
//     "CSRFPreventionToken" header for that user; outside /api2 (reverse proxy, forward-auth) a
//     same-origin browser request is accepted instead (see upstream.go).
//  3. Nothing: only the public calls (GET /api2/json/ping, POST /api2/json/access/ticket) and
//     the login page (/gatehouse/login, /gatehouse/static/). The account page and the other
//     web pages are pages.go's.
//
// The product prefix ("PBS") names the cookies, the token scheme and the tickets.
//
// # Failures
//
// A client IP (the TCP peer, or X-Forwarded-For from a trusted proxy only) that has used up its
// allowance of failures gets 429 before any credential is checked. Every failed authentication
// writes one fail2ban line to the auth log, is held back by the configured delay and is answered
// 401 with no detail. Unknown parameters are 400 (package params); bodies over 64 KiB are refused.
//
// # Forwarding
//
// A ticket request that a browser marks as cross-origin (Sec-Fetch-Site, else Origin) is
// refused: no login CSRF. Ticket creation and renewal, logout and every /access call go to apid over its unix socket
// with the verified caller in internal headers (package forward); proxyd never signs a ticket,
// reads a private key or writes a file. proxyd turns apid's ticket answer into the HttpOnly
// flow when asked (http-only=1): it sets __Host-PBSAuthCookie (Path=/; Secure; HttpOnly;
// SameSite=Lax) and returns ticket-info instead of the ticket.
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
// # Metrics
//
// proxyd serves Prometheus metrics at /metrics on a second, plain-HTTP listener that must be a
// loopback address (--metrics-listen, default 127.0.0.1:9807, empty: none), never on the public
// port: authentication attempts by method and result, the token and ticket cache counters, the
// shared generation counters, key reloads and request latency by route pattern (metrics.go;
// the names and labels are listed in README.md).
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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/authfail"
	"gatehouse/authid"
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
	Upstream    *url.URL       // the application behind Gatehouse; nil: 404 outside /api2
	Version     Version
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
	o        Options
	cookie   string // __Host-<P>AuthCookie
	legacy   string // <P>AuthCookie
	scheme   string // <P>APIToken
	apid     *http.Client
	toApid   *httputil.ReverseProxy
	upstream *httputil.ReverseProxy
	mux      *http.ServeMux
	hostOnly map[door]bool // doors that take only the __Host- cookie (Options.HostCookieOnly)

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
	sock := o.ApidSocket
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: 64,
	}
	s := &Server{
		o:      o,
		cookie: "__Host-" + o.Prefix + "AuthCookie",
		legacy: o.Prefix + "AuthCookie",
		scheme: o.Prefix + "APIToken",
		apid:   &http.Client{Transport: tr, Timeout: 60 * time.Second},
	}
	s.hostOnly = hostOnly
	s.csrf.Store(o.CSRF)
	s.keysGen.Store(o.Generations.Load(shmem.Keys))
	s.toApid = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host, pr.Out.Host = "http", "apid", "apid"
		},
		Transport:      tr,
		ModifyResponse: s.fromApid,
		ErrorHandler:   s.apidDown,
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

// caller is a verified identity.
type caller struct {
	authid string // user or token id
	userid string
	cookie string // the cookie name the ticket came in; "" for a token
	client netip.AddrPort
}

type ctxKey struct{}

func callerOf(r *http.Request) caller {
	c, _ := r.Context().Value(ctxKey{}).(caller)
	return c
}

// authFailure is a failed authentication: user is what the client claimed (for the log).
type authFailure struct {
	user, reason string
}

func (f *authFailure) Error() string { return "authentication failure: " + f.reason }

// authed wraps h with authentication; see the package comment.
func (s *Server) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		now := s.o.Now()
		client, _ := authfail.ClientAddr(r, s.o.Trusted)
		authz := r.Header.Get("Authorization")
		tk := s.ticketCookie(r)
		if authz == "" && tk.value == "" {
			s.deny(w, r)
			return
		}
		method := methodTicket
		if authz != "" {
			method = methodToken
		}
		if !s.o.Guard.Allow(client.Addr(), now) {
			s.o.Metrics.auth(method, resultRateLimited)
			s.tooMany(w, client, now)
			return
		}
		if !s.keysReady(w) {
			return
		}
		var c caller
		var err error
		if authz != "" {
			c, err = s.checkToken(authz, now)
		} else {
			c, err = s.checkTicket(r, tk, now)
		}
		if err != nil {
			s.o.Metrics.authError(method, err)
			s.fail(w, r, client, err, now)
			return
		}
		s.o.Metrics.auth(method, resultSuccess)
		c.client = client
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, c)))
	}
}

// fail logs, delays and answers a failed authentication.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, client netip.AddrPort, err error, now time.Time) {
	var af *authFailure
	if !errors.As(err, &af) {
		s.o.Log.Error("authenticating request", "err", err)
		reply.Error(w, http.StatusInternalServerError, "internal error")
		return
	}
	if lerr := s.o.Guard.Fail(client, af.user, af.reason, now); lerr != nil {
		s.o.Log.Error("writing auth log", "err", lerr)
	}
	if s.o.Guard.Wait(r.Context()) != nil {
		return
	}
	s.deny(w, r)
}

// parseTokenHeader splits "<scheme>=<id>:<secret>" or "<scheme> <id>:<secret>". The id is a
// valid token id (which cannot contain ':'); the secret is everything after the first ':'.
func parseTokenHeader(scheme, authz string) (a authid.Authid, id, secret, reason string) {
	rest, ok := strings.CutPrefix(authz, scheme)
	if !ok || len(rest) == 0 || (rest[0] != '=' && rest[0] != ' ') {
		return authid.Authid{}, "", "", "unsupported authorization scheme"
	}
	id, secret, ok = strings.Cut(rest[1:], ":")
	if !ok || secret == "" {
		return authid.Authid{}, "", "", "malformed API token header"
	}
	a, err := authid.ParseToken(id)
	if err != nil {
		return authid.Authid{}, "", "", "malformed API token id"
	}
	return a, id, secret, ""
}

func (s *Server) checkToken(authz string, now time.Time) (caller, error) {
	a, id, secret, reason := parseTokenHeader(s.scheme, authz)
	if reason != "" {
		return caller{}, &authFailure{"", reason}
	}
	hit, err := s.o.Tokens.VerifyHit(id, secret)
	s.o.Metrics.tokenCache(hit)
	if err != nil {
		if errors.Is(err, tokenshadow.ErrNoToken) || errors.Is(err, tokenshadow.ErrWrongSecret) ||
			errors.Is(err, tokenshadow.ErrSecretTooLong) {
			return caller{}, &authFailure{id, "invalid API token"}
		}
		return caller{}, fmt.Errorf("verifying API token %s: %w", id, err)
	}
	cfg, err := s.o.Users.Config()
	if err != nil {
		return caller{}, err
	}
	if err := cfg.Active(id, now); err != nil {
		return caller{}, &authFailure{id, "API token or its user is disabled, expired or unknown"}
	}
	return caller{authid: id, userid: a.Userid()}, nil
}

type cookieTicket struct{ name, value string }

// ticketCookie finds the ticket cookie: the HttpOnly one first, raw or percent-encoded; the
// legacy one only where r's door takes it (Options.HostCookieOnly).
func (s *Server) ticketCookie(r *http.Request) cookieTicket {
	names := []string{s.cookie, s.legacy}
	if s.hostOnly[cookieDoor(r)] {
		names = names[:1]
	}
	for _, name := range names {
		ck, err := r.Cookie(name)
		if err != nil || ck.Value == "" {
			continue
		}
		return cookieTicket{name, decodeCookie(s.o.Prefix, ck.Value)}
	}
	return cookieTicket{}
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

// cookieSafe reports whether v can be a cookie value as it is (RFC 6265 cookie-octets; no
// space or comma, which net/http would quote).
func cookieSafe(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= 0x20 || c >= 0x7f || c == '"' || c == ';' || c == '\\' || c == ',' {
			return false
		}
	}
	return true
}

// decodeCookie undoes the percent-encoding some clients apply to the ticket cookie; a raw
// ticket ("PBS:...") is returned as it is.
func decodeCookie(prefix, v string) string {
	if !strings.HasPrefix(v, prefix+":") && strings.HasPrefix(v, prefix+"%3A") {
		if u, err := url.PathUnescape(v); err == nil {
			return u
		}
	}
	return v
}

func (s *Server) checkTicket(r *http.Request, tk cookieTicket, now time.Time) (caller, error) {
	userid, issued, hit, err := s.o.Tickets.VerifyUserHit(tk.value, s.o.Prefix, s.o.Generations.Load(shmem.Keys), now)
	s.o.Metrics.ticketCache(hit)
	if err != nil {
		return caller{}, &authFailure{"", "invalid ticket"}
	}
	cfg, err := s.o.Users.Config()
	if err != nil {
		return caller{}, err
	}
	if err := cfg.Active(userid, now); err != nil {
		return caller{}, &authFailure{userid, "user is disabled, expired or unknown"}
	}
	revoked, err := s.o.Revocations.Revoked(userid, issued)
	if err != nil {
		return caller{}, err
	}
	if revoked {
		return caller{}, &authFailure{userid, "ticket was revoked"}
	}
	if err := s.checkCSRF(r, userid, now); err != nil {
		return caller{}, err
	}
	return caller{authid: userid, userid: userid, cookie: tk.name}, nil
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

// forward sends an authenticated /access call to apid.
func (s *Server) forward(w http.ResponseWriter, r *http.Request) {
	c := callerOf(r)
	r.Header.Set(forward.Authid, c.authid)
	r.Header.Set(forward.Rhost, c.client.String())
	if c.cookie != "" {
		r.Header.Set(forward.Session, c.cookie)
	}
	r.Body = http.MaxBytesReader(w, r.Body, params.MaxBody)
	s.toApid.ServeHTTP(w, r)
}

// fromApid inspects apid's answer before the client sees it: failures are logged, a new
// ticket for the calling session becomes its cookie, internal headers go.
func (s *Server) fromApid(resp *http.Response) error {
	r := resp.Request
	if nt := resp.Header.Get(forward.NewTicket); nt != "" {
		if name := r.Header.Get(forward.Session); name != "" {
			resp.Header.Add("Set-Cookie", s.ticketCookieFor(name, nt).String())
		}
	}
	if clearsCookies(r, resp.StatusCode) {
		for _, name := range []string{s.cookie, s.legacy} {
			resp.Header.Add("Set-Cookie", s.clearedCookie(name).String())
		}
	}
	if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get(forward.Failure) != "" {
		client, _ := netip.ParseAddrPort(r.Header.Get(forward.Rhost))
		if err := s.o.Guard.Fail(client, resp.Header.Get(forward.FailUser), resp.Header.Get(forward.Failure), s.o.Now()); err != nil {
			s.o.Log.Error("writing auth log", "err", err)
		}
	}
	forward.Strip(resp.Header)
	return nil
}

func (s *Server) apidDown(w http.ResponseWriter, r *http.Request, err error) {
	s.o.Log.Error("forwarding to apid", "path", r.URL.Path, "err", err)
	reply.Error(w, http.StatusBadGateway, "authentication service unavailable")
}

// ticketCookieFor makes the cookie a ticket travels in. The HttpOnly one has the attributes
// DESIGN.md gives; the legacy one is what the PBS web UI sets from script. A ticket holding
// bytes a cookie value cannot carry (a user name may contain '"', ';', '\', ',' or non-ASCII
// letters) travels percent-encoded, which decodeCookie undoes.
func (s *Server) ticketCookieFor(name, value string) *http.Cookie {
	if !cookieSafe(value) {
		value = strings.ReplaceAll(url.PathEscape(value), ":", "%3A")
	}
	if name == s.cookie {
		return &http.Cookie{Name: name, Value: value, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode}
	}
	return &http.Cookie{Name: name, Value: value, Path: "/", Secure: true, SameSite: http.SameSiteLaxMode}
}
