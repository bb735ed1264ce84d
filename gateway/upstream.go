package gateway

// The reverse proxy to the upstream application and the forward-auth endpoint. Both sit behind
// authed like the API and differ from it only in how a refusal is answered and in the CSRF
// rule (the request's "door"); see the package comment.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"gatehouse/authfail"
	"gatehouse/credential"
	"gatehouse/reply"
)

// Headers the upstream application (reverse proxy) and a front proxy (forward-auth) receive.
// Incoming headers of these names, like every X-Gatehouse-* header (also spelled with '_' for
// '-'), are removed before a request is looked at (forward.Strip in ServeHTTP), so an
// application may trust them.
const (
	HeaderUser   = "X-Gatehouse-User"    // the verified user id, user@realm
	HeaderAuthid = "X-Gatehouse-Authid"  // the verified user id, or token id user@realm!name
	HeaderLogin  = "X-Gatehouse-Login"   // forward-auth 401 to a browser navigation: the login URL
	csrfHeader   = "CSRFPreventionToken" // PBS's CSRF header
)

// LoginPath is proxyd's login page; it takes the page to go back to in "next".
const LoginPath = "/gatehouse/login"

// door is how a request came in: it decides the CSRF rule and how a refusal is answered.
type door int

const (
	doorAPI      door = iota // /api2: CSRF token required; refusals are 401 JSON
	doorUpstream             // reverse proxy: CSRF token or same origin; browsers are redirected
	doorAuth                 // forward-auth: as doorUpstream, for the original request's method
	doorPage                 // proxyd's own pages: CSRF token required; refusals go to the login page
)

// DefaultHostCookieOnly is proxyd's --host-cookie-only: the reverse proxy and forward-auth take
// only the __Host- ticket cookie. A sibling subdomain (evil.example.com next to
// app.example.com) can set a PBSAuthCookie for the parent domain, a __Host- cookie it cannot:
// the legacy cookie would let it plant its own session in the victim's browser.
const DefaultHostCookieOnly = "upstream,auth"

// hostOnlyDoors reads Options.HostCookieOnly.
func hostOnlyDoors(names []string) (map[door]bool, error) {
	doors := map[door]bool{}
	for _, n := range names {
		switch n {
		case "upstream":
			doors[doorUpstream] = true
		case "auth":
			doors[doorAuth] = true
		case "pages":
			doors[doorPage] = true
		default:
			return nil, fmt.Errorf("reading host-cookie-only: %q is not upstream, auth or pages", n)
		}
	}
	return doors, nil
}

// cookieDoor is the door whose cookie rule applies to r: its own, except that proxyd's page
// helpers under /gatehouse/ (session, totp), which answer like the API, belong to the pages.
func cookieDoor(r *http.Request) door {
	d := doorOf(r)
	if d == doorAPI && r.URL != nil && strings.HasPrefix(r.URL.Path, "/gatehouse/") {
		return doorPage
	}
	return d
}

type doorKey struct{}

func doorOf(r *http.Request) door {
	d, _ := r.Context().Value(doorKey{}).(door)
	return d
}

// through marks r as having come in through d before h authenticates it.
func through(d door, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h(w, r.WithContext(context.WithValue(r.Context(), doorKey{}, d)))
	}
}

// newUpstream returns the reverse proxy to up. It answers 502 when up cannot be reached.
func (s *Server) newUpstream(up *url.URL) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			pr.SetXForwarded() // X-Forwarded-Host and -Proto; X-Forwarded-For is replaced below
			c := callerOf(pr.In)
			h := pr.Out.Header
			if c.client.IsValid() {
				h.Set("X-Forwarded-For", c.client.Addr().String())
			}
			h.Set("X-Forwarded-Proto", "https")
			h.Set(HeaderUser, c.Userid)
			h.Set(HeaderAuthid, c.Authid)
			h.Del("Authorization")
			h.Del(csrfHeader)
			dropClientClaims(h)
			if ck := h.Values("Cookie"); len(ck) > 0 {
				h.Del("Cookie")
				if kept := stripCookies(strings.Join(ck, "; "), s.cookie, s.legacy); kept != "" {
					h.Set("Cookie", kept)
				}
			}
		},
		Transport:     upstreamTransport(),
		FlushInterval: -1, // stream: server-sent events, long polls, downloads
		ErrorHandler:  s.upstreamDown,
	}
}

// dropClientClaims removes from a request on its way to the upstream the headers a client
// could use to pass itself off as something proxyd vouches for:
//   - every header with '_' in its name: a CGI-style application (WSGI, PHP, Rack) maps '-' and
//     '_' to one key, so X_Forwarded_For or X_Gatehouse_User would join the header proxyd set
//     (HTTP_X_FORWARDED_FOR = "203.0.113.9,192.0.2.1"); nginx drops these by default too;
//   - what a front proxy would say about the original request (Forwarded, X-Real-IP,
//     X-Forwarded-Port, -Uri, -Prefix, -Server, -Method, X-Original-URI, -Method): proxyd is the
//     front proxy here, and it says only X-Forwarded-For, -Host and -Proto;
//   - method overrides (X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override): proxyd's
//     CSRF rule judged the request's own method, and an application must act on that one.
func dropClientClaims(h http.Header) {
	for k := range h {
		switch {
		case strings.Contains(k, "_"):
		case clientClaim(http.CanonicalHeaderKey(k)):
		default:
			continue
		}
		delete(h, k)
	}
}

func clientClaim(canonical string) bool {
	switch canonical {
	case "Forwarded", "X-Real-Ip", "X-Forwarded-Port", "X-Forwarded-Uri", "X-Forwarded-Prefix",
		"X-Forwarded-Server", "X-Forwarded-Method", "X-Original-Uri", "X-Original-Method",
		"X-Http-Method-Override", "X-Http-Method", "X-Method-Override":
		return true
	}
	return false
}

func (s *Server) upstreamDown(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client went away
	}
	s.o.Log.Error("proxying to upstream", "upstream", s.o.Upstream.Redacted(), "path", r.URL.Path, "err", err)
	reply.Error(w, http.StatusBadGateway, "upstream application unavailable")
}

// stripCookies removes the named cookies from a Cookie header value and keeps every other
// cookie byte for byte. Names are compared as net/http parses them (spaces around them
// trimmed), so a cookie net/http would have read as a ticket never survives.
func stripCookies(header string, names ...string) string {
	var kept []string
	for part := range strings.SplitSeq(header, ";") {
		p := strings.TrimSpace(part)
		if p == "" {
			continue
		}
		name, _, _ := strings.Cut(p, "=")
		name = strings.TrimSpace(name)
		drop := false
		for _, n := range names {
			if name == n {
				drop = true
			}
		}
		if !drop {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, "; ")
}

// proxyUpstream sends an authenticated request to the upstream (routed only when there is
// one), without the server-wide read and write deadlines (liftDeadlines) and out of the
// requests-in-flight cap (authenticated).
func (s *Server) proxyUpstream(w http.ResponseWriter, r *http.Request) {
	authenticated(r)
	if err := liftDeadlines(w); err != nil {
		s.o.Log.Warn("lifting the deadlines of an upstream request", "path", r.URL.Path, "err", err)
	}
	s.upstream.ServeHTTP(w, r)
}

// forwardAuth is /gatehouse/auth, any method: authed has checked the request's own
// credentials; the caller goes back in headers, the body is empty.
func (s *Server) forwardAuth(w http.ResponseWriter, r *http.Request) {
	c := callerOf(r)
	w.Header().Set(HeaderUser, c.Userid)
	w.Header().Set(HeaderAuthid, c.Authid)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// singleOriginal refuses a forward-auth request that carries one of the headers originalOf
// believes more than once: 400 with no body (nginx's auth_request turns it into 500) and one
// line in proxyd's log, before any credential is looked at. Which of the values the front
// proxy set and which the client added cannot be told apart, so none is believed.
func (s *Server) singleOriginal(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var repeated []string
		for _, name := range []string{"X-Forwarded-Method", "X-Original-Method", "X-Forwarded-Uri", "X-Original-Uri",
			"X-Forwarded-Host", "X-Forwarded-Proto"} {
			if len(r.Header.Values(name)) > 1 {
				repeated = append(repeated, name)
			}
		}
		if len(repeated) == 0 {
			h(w, r)
			return
		}
		client, _ := authfail.ClientAddr(r, s.o.Trusted)
		s.o.Log.Warn("refusing forward-auth request: header sent more than once", "headers", strings.Join(repeated, ","),
			"rhost", client.Addr().String())
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusBadRequest)
	}
}

// original is what the request being decided on looks like: the request itself, or for
// forward-auth the one the front proxy is holding (method, URI, scheme and host from its
// headers). A forward-auth request without a method header has method "", which is treated as
// unsafe (fail closed).
type original struct {
	method, uri, scheme, host string
}

func originalOf(r *http.Request) original {
	if doorOf(r) != doorAuth {
		return original{r.Method, r.URL.RequestURI(), "https", r.Host}
	}
	// Caddy sets X-Forwarded-Method, the nginx configuration X-Original-Method, and each passes
	// the client's own headers on: the client may add the other one. When both are there and
	// disagree, the method is unknown, hence unsafe.
	fwd, orig := r.Header.Get("X-Forwarded-Method"), r.Header.Get("X-Original-Method")
	method := first(fwd, orig)
	if fwd != "" && orig != "" && !strings.EqualFold(fwd, orig) {
		method = ""
	}
	return original{
		method: method,
		uri:    first(r.Header.Get("X-Forwarded-Uri"), r.Header.Get("X-Original-URI")),
		scheme: first(r.Header.Get("X-Forwarded-Proto"), "https"),
		host:   first(r.Header.Get("X-Forwarded-Host"), r.Host),
	}
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func safeMethod(m string) bool { return m == http.MethodGet || m == http.MethodHead }

// checkCSRF applies the CSRF rule of r's door to a ticket-authenticated request of userid.
func (s *Server) checkCSRF(r *http.Request, userid string, now time.Time) error {
	o := originalOf(r)
	// A WebSocket handshake is a GET that opens a two-way channel: browsers send it cross-site
	// with the cookies, so it is checked like a POST (browsers always send Origin with it).
	if safeMethod(o.method) && !websocket(r.Header) {
		return nil
	}
	if s.csrf.Load().Check(r.Header.Get(csrfHeader), userid, now) == nil {
		return nil
	}
	if d := doorOf(r); (d == doorUpstream || d == doorAuth) && sameOrigin(r.Header, o.scheme, o.host) {
		return nil
	}
	return &credential.Failure{User: userid, Reason: "missing or invalid CSRF prevention token"}
}

// websocket reports whether a request looks like a WebSocket handshake: it has an Upgrade
// header, or one of the headers only a handshake carries (Sec-WebSocket-Key and
// Sec-WebSocket-Version, which RFC 6455 requires, or Sec-Fetch-Mode "websocket"). The second
// half is what forward-auth sees: nginx drops Upgrade and Connection (hop-by-hop) from the
// auth_request subrequest, which then looks like a plain GET.
func websocket(h http.Header) bool {
	return h.Get("Upgrade") != "" || h.Get("Sec-Websocket-Key") != "" || h.Get("Sec-Websocket-Version") != "" ||
		strings.EqualFold(h.Get("Sec-Fetch-Mode"), "websocket")
}

// sameOrigin reports whether the browser says the request comes from the page's own origin:
// Sec-Fetch-Site "same-origin", or, from a browser without Fetch Metadata (no Sec-Fetch-Site),
// an Origin header equal to scheme://host (ASCII case ignored). Scripts cannot set either
// header on a cross-site request, and a non-browser client has no victim's cookie to abuse.
func sameOrigin(h http.Header, scheme, host string) bool {
	switch h.Get("Sec-Fetch-Site") {
	case "same-origin":
		return true
	case "":
	default: // the browser says same-site, cross-site or none: Origin cannot overrule it
		return false
	}
	o := h.Get("Origin")
	return o != "" && host != "" && strings.EqualFold(o, scheme+"://"+host)
}

// crossSite reports whether a browser says r was sent by a page of another origin: its
// Sec-Fetch-Site is neither "same-origin" nor "none" (typed in, bookmarks), or, from a browser
// without Fetch Metadata, its Origin is not https://<Host>. A non-browser client sends neither.
func crossSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return false
	case "":
		o := r.Header.Get("Origin")
		return o != "" && !strings.EqualFold(o, "https://"+r.Host)
	}
	return true
}

// browserNavigation reports whether a refusal should send the client to the login page:
// a GET or HEAD that accepts HTML.
func browserNavigation(method string, h http.Header) bool {
	return safeMethod(method) && strings.Contains(strings.ToLower(strings.Join(h.Values("Accept"), ",")), "text/html")
}

// localPath reports whether next is a path on this origin: it starts with "/" but not "//"
// or "/\" (which browsers read as another host), and holds no control characters or
// backslashes a browser could turn into either.
func localPath(next string) bool {
	if len(next) == 0 || next[0] != '/' {
		return false
	}
	if len(next) > 1 && (next[1] == '/' || next[1] == '\\') {
		return false
	}
	for i := 0; i < len(next); i++ {
		if c := next[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// deny answers a request that is not authenticated, or failed, as its door wants.
// A browser sent to the login page is told its session ended when it sent a ticket cookie,
// and that cookie is cleared.
func (s *Server) deny(w http.ResponseWriter, r *http.Request) {
	tk := s.ticketCookie(r)
	expired := tk.Value != ""
	switch d := doorOf(r); d {
	case doorUpstream, doorPage:
		if d == doorPage || browserNavigation(r.Method, r.Header) {
			if expired {
				http.SetCookie(w, s.clearedCookie(tk.Name))
			}
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, loginURL(r.URL.RequestURI(), expired), http.StatusSeeOther)
			return
		}
	case doorAuth:
		o := originalOf(r)
		if browserNavigation(o.method, r.Header) {
			w.Header().Set(HeaderLogin, loginURL(o.uri, expired))
		}
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	reply.Error(w, http.StatusUnauthorized, "authentication failure")
}
