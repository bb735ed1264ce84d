package gateway

// proxyd's own web pages under /gatehouse/ (the files are in web/, embedded):
//
//   - /gatehouse/login: the password step of POST /api2/json/access/ticket with http-only=1 and
//     a realm choice, then the second factor when the account has one (TOTP, a recovery code or
//     WebAuthn through navigator.credentials.get). The session ticket only ever travels in the
//     HttpOnly cookie; the page's script sees the half-authenticated "!tfa!" ticket, which is
//     the second call's tfa-challenge parameter and no session, as in PBS. ?reason=expired or
//     ?reason=logout show why the user is here.
//   - /gatehouse/account: the signed-in user's own page: password, API tokens (generate,
//     rotate, remove; a secret is shown once), second factors (TOTP with a QR code, WebAuthn,
//     recovery codes) and logout. It is rendered for a valid ticket cookie only, with the user
//     id and a CSRF token in the page; without one it is 303 to the login page, with
//     reason=expired when a cookie was sent but no longer works. Every change goes through the
//     PBS API under /api2/json, with the CSRF token.
//   - /gatehouse/session: whether the browser's cookie is a working session, with a fresh CSRF
//     token; the pages ask it after a 401 (expired, or a wrong current password?) and before a
//     change when their CSRF token is over an hour old. A cookie that is no session is a
//     failed authentication (counted and logged) whose answer is not delayed.
//   - /gatehouse/totp: a new TOTP secret for the signed-in user, its otpauth URI and its QR code
//     (PNG, base64), for the account page to show. Nothing is stored: apid stores the URI when
//     the user proves it with a code.
//   - /gatehouse/static/*: the pages' scripts, style and icon (also /favicon.ico when there is
//     no upstream application). /gatehouse/auth: forward-auth
//     (upstream.go). Every other /gatehouse/ path is 404 and never goes upstream.
//
// Every page has a Content-Security-Policy that allows its own script, style and calls only
// (no inline script, no framing), and no-store.

import (
	"bytes"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"image/png"
	"net/http"
	"net/url"
	"strings"

	"github.com/pquerna/otp/totp"

	"gatehouse/authfail"
	"gatehouse/credential"
	"gatehouse/reply"
)

//go:embed web
var webFiles embed.FS

// AccountPath is the signed-in user's own page.
const AccountPath = "/gatehouse/account"

// pageCSP allows a page its own script, style and calls, and data: images (the TOTP QR code);
// it cannot be framed.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// staticFiles are the pages' scripts and style, served under /gatehouse/static/.
var staticFiles = []string{"gatehouse.css", "common.js", "login.js", "account.js", "favicon.svg"}

// totpIssuer names Gatehouse in authenticator apps.
const totpIssuer = "Gatehouse"

// routeGatehouse registers proxyd's /gatehouse/ paths on mux.
func (s *Server) routeGatehouse(mux *http.ServeMux) {
	login := template.Must(template.ParseFS(webFiles, "web/login.html"))
	account := template.Must(template.ParseFS(webFiles, "web/account.html"))
	mux.HandleFunc("GET "+LoginPath, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		next := q.Get("next")
		if !localPath(next) {
			next = s.home()
		}
		notice := ""
		switch q.Get("reason") {
		case "expired":
			notice = "Your session has expired or was ended. Please sign in again."
		case "logout":
			notice = "You have signed out."
		}
		s.page(w, login, struct{ Next, Notice string }{next, notice})
	})
	mux.HandleFunc("GET "+AccountPath, through(doorPage, s.authed(func(w http.ResponseWriter, r *http.Request) {
		c := callerOf(r)
		if c.Cookie == "" { // an API token: the page works with the session cookie only
			http.Redirect(w, r, loginURL(AccountPath, false), http.StatusSeeOther)
			return
		}
		realm := c.Userid[strings.LastIndexByte(c.Userid, '@')+1:]
		s.page(w, account, struct{ User, Realm, CSRF string }{c.Userid, realm, s.csrf.Load().Token(c.Userid, s.o.Now())})
	})))
	mux.HandleFunc("GET /gatehouse/totp", s.authed(s.newTOTP))
	mux.HandleFunc("GET /gatehouse/session", s.session)
	for _, name := range staticFiles {
		mux.HandleFunc("GET /gatehouse/static/"+name, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFileFS(w, r, webFiles, "web/"+name)
		})
	}
	if s.upstream == nil {
		// Browsers ask for /favicon.ico on any page, the API's JSON answers included; with an
		// upstream it is the application's.
		mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "image/svg+xml")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			http.ServeFileFS(w, r, webFiles, "web/favicon.svg")
		})
	}
	mux.HandleFunc("/gatehouse/auth", s.singleOriginal(through(doorAuth, s.authed(s.forwardAuth))))
	mux.HandleFunc("/gatehouse/", func(w http.ResponseWriter, r *http.Request) {
		http.NotFound(w, r)
	})
}

// home is where a sign-in without a "next" goes: the application, or the account page when
// there is none.
func (s *Server) home() string {
	if s.upstream != nil {
		return "/"
	}
	return AccountPath
}

// session is GET /gatehouse/session: whether the browser's ticket cookie is a working session,
// for the pages' scripts, as 200 {"username", "CSRFPreventionToken"} (a fresh token) or 401.
// A cookie that does not work is a failed authentication like any other (a failure reserved
// before the check and kept, an auth.log line), but its answer is not delayed: the pages ask
// after a 401 to tell an ended session from a wrong current password. No cookie is no attempt.
func (s *Server) session(w http.ResponseWriter, r *http.Request) {
	now := s.o.Now()
	client, _ := authfail.ClientAddr(r, s.o.Trusted)
	w.Header().Set("Cache-Control", "no-store")
	tk := s.ticketCookie(r)
	if tk.Value == "" {
		reply.Error(w, http.StatusUnauthorized, "no session")
		return
	}
	res, ok := s.o.Guard.Reserve(r.Context(), client.Addr(), now)
	if !ok {
		s.tooMany(w, client, now)
		return
	}
	if !s.keysReady(w) {
		res.Release()
		return
	}
	c, err := s.checkTicket(r, tk, now) // a GET: no CSRF check
	var af *credential.Failure
	switch {
	case errors.As(err, &af):
		if lerr := res.Fail(client, af.User, af.Reason, now); lerr != nil {
			s.o.Log.Error("writing auth log", "err", lerr)
		}
		reply.Error(w, http.StatusUnauthorized, "no session")
	case err != nil:
		res.Release()
		s.serverError(w, "checking a session", err)
	default:
		res.Release()
		reply.Data(w, map[string]string{"username": c.Userid, "CSRFPreventionToken": s.csrf.Load().Token(c.Userid, now)})
	}
}

// page renders one of the HTML pages with its security headers.
func (s *Server) page(w http.ResponseWriter, t *template.Template, data any) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		s.o.Log.Error("rendering page", "page", t.Name(), "err", err)
		reply.Error(w, http.StatusInternalServerError, "internal error")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	w.Write(buf.Bytes())
}

// newTOTP is GET /gatehouse/totp: a fresh 160-bit secret for the caller, 30 s and 6 digits
// (what apid accepts and authenticator apps expect), as {"secret", "uri", "qr"}.
func (s *Server) newTOTP(w http.ResponseWriter, r *http.Request) {
	c := callerOf(r)
	key, err := totp.Generate(totp.GenerateOpts{Issuer: totpIssuer, AccountName: c.Userid, Period: 30, Digits: 6, SecretSize: 20})
	if err != nil {
		s.o.Log.Error("making a TOTP secret", "user", c.Userid, "err", err)
		reply.Error(w, http.StatusInternalServerError, "internal error")
		return
	}
	img, err := key.Image(240, 240)
	var qr bytes.Buffer
	if err == nil {
		err = png.Encode(&qr, img)
	}
	if err != nil {
		s.o.Log.Error("drawing a TOTP QR code", "user", c.Userid, "err", err)
		reply.Error(w, http.StatusInternalServerError, "internal error")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	reply.Data(w, map[string]string{
		"secret": key.Secret(),
		"uri":    key.URL(),
		"qr":     "data:image/png;base64," + base64.StdEncoding.EncodeToString(qr.Bytes()),
	})
}

// loginURL is the login page that returns to next (the account page when next is not local),
// telling the user their session ended when expired.
func loginURL(next string, expired bool) string {
	if !localPath(next) {
		next = AccountPath
	}
	u := LoginPath + "?next=" + url.QueryEscape(next)
	if expired {
		u += "&reason=expired"
	}
	return u
}
