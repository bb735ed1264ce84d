// Package credential verifies the credential a request carries, the same way in both daemons:
// proxyd (package gateway) checks every request with it, and apid (package authority) checks
// again every call proxyd forwards, as PBS's privileged daemon authenticates a forwarded request
// itself. apid therefore never believes an identity that proxyd names: a compromised proxyd can
// act only as users whose credentials it actually receives, never as root@pam by saying so.
//
// # Credentials, in order
//
//  1. An Authorization header "<P>APIToken=<user@realm!name>:<secret>" (or with a space after
//     <P>APIToken; <P> is the product prefix, "PBS"): the secret is checked against
//     token.shadow through this process's verified-secret cache (tokenshadow), and the token
//     and its user must be enabled and not expired (user.cfg).
//  2. A ticket cookie, "__Host-<P>AuthCookie" (HttpOnly flow) before "<P>AuthCookie" (legacy),
//     raw or percent-encoded (some clients encode it; a ticket holding bytes a cookie cannot
//     carry travels encoded, see Encode): the signature is checked through this process's
//     verified-ticket cache (ticket.Cache, keyed by the keys generation), the 2 h lifetime on
//     every call, the user must be active and the ticket not revoked (revocations.json). The
//     CSRF rule depends on how the request came in and is the caller's (gateway's doors, apid's
//     CSRF check); Ticket checks the ticket only.
//
// A refused credential is a *Failure, holding the user the client claimed (for the auth log)
// and the reason; any other error is the server's, a *FileError when a config file could not be
// used (token.shadow, user.cfg or revocations.json: unreadable, unparsable, unsafe permissions),
// naming the file so that a caller can log a broken file once rather than once per request.
// Neither ever holds the secret or the ticket's signature.
package credential

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"gatehouse/authid"
	"gatehouse/revocation"
	"gatehouse/shmem"
	"gatehouse/ticket"
	"gatehouse/tokenshadow"
	"gatehouse/users"
)

// Options configure a Checker. Every field but Prefix (default "PBS") is required.
type Options struct {
	Prefix      string
	Tickets     *ticket.Cache      // this process's verified-ticket cache
	Generations *shmem.Cache       // the keys generation the ticket cache is keyed by
	Tokens      *tokenshadow.Store // token.shadow with this process's verified-secret cache
	Users       *users.Store       // user.cfg: users and tokens enabled, not expired
	Revocations *revocation.Store  // per-user ticket revocation times
}

// Checker verifies API tokens and tickets. It is safe for concurrent use.
type Checker struct {
	o      Options
	cookie string // __Host-<P>AuthCookie
	legacy string // <P>AuthCookie
	scheme string // <P>APIToken
}

// New checks o and returns a Checker.
func New(o Options) (*Checker, error) {
	if o.Tickets == nil || o.Generations == nil || o.Tokens == nil || o.Users == nil || o.Revocations == nil {
		return nil, errors.New("creating credential checker: a required option is missing")
	}
	if o.Prefix == "" {
		o.Prefix = "PBS"
	}
	return &Checker{o: o, cookie: "__Host-" + o.Prefix + "AuthCookie", legacy: o.Prefix + "AuthCookie", scheme: o.Prefix + "APIToken"}, nil
}

// Prefix is the product prefix of tickets, cookies and the token scheme.
func (c *Checker) Prefix() string { return c.o.Prefix }

// HostCookie is the name of the HttpOnly flow's cookie, "__Host-<P>AuthCookie".
func (c *Checker) HostCookie() string { return c.cookie }

// LegacyCookie is the name of the legacy flow's cookie, "<P>AuthCookie".
func (c *Checker) LegacyCookie() string { return c.legacy }

// Caller is a verified identity.
type Caller struct {
	Authid string // user id, or token id user@realm!name
	Userid string // the user; the token's owner for a token
	Cookie string // the cookie the ticket came in; "" for a token
}

// Failure is a refused credential: User is what the client claimed ("" when it named nobody
// the log may show), Reason says what failed; both go to the auth log, never to the client.
type Failure struct {
	User, Reason string
}

func (f *Failure) Error() string { return "authentication failure: " + f.Reason }

// Config files a check reads, as FileError.File names them.
const (
	FileTokenShadow = "token.shadow"
	FileUserCfg     = "user.cfg"
	FileRevocations = "revocations.json"
)

// FileError is a check that failed because a config file could not be used: File is its
// name (FileTokenShadow, FileUserCfg, FileRevocations), Path its path, Err the store's error
// (which names the path; for token.shadow it may name a token id, never a secret).
type FileError struct {
	File, Path string
	Err        error
}

func (e *FileError) Error() string { return e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// Cookie is a ticket found in a request's cookies.
type Cookie struct {
	Name  string // the cookie's name
	Value string // the ticket, percent-decoding undone
}

// TicketCookie finds the ticket cookie of r among names, in that order (the HttpOnly one
// first, then the legacy one, when both are allowed); an empty cookie counts as none.
func (c *Checker) TicketCookie(r *http.Request, names ...string) Cookie {
	for _, name := range names {
		ck, err := r.Cookie(name)
		if err != nil || ck.Value == "" {
			continue
		}
		return Cookie{name, Decode(c.o.Prefix, ck.Value)}
	}
	return Cookie{}
}

// Token verifies an Authorization header value. hit reports whether the secret's check was
// answered from the verified-secret cache, for the caller to count.
func (c *Checker) Token(authz string, now time.Time) (caller Caller, hit bool, err error) {
	a, id, secret, reason := ParseTokenHeader(c.scheme, authz)
	if reason != "" {
		return Caller{}, false, &Failure{"", reason}
	}
	hit, err = c.o.Tokens.VerifyHit(id, secret)
	if err != nil {
		if isRefusal(err) {
			return Caller{}, hit, &Failure{id, "invalid API token"}
		}
		if errors.Is(err, tokenshadow.ErrBusy) {
			// Writers kept moving the generation: no broken file.
			return Caller{}, hit, fmt.Errorf("verifying API token %s: %w", id, err)
		}
		return Caller{}, hit, &FileError{FileTokenShadow, c.o.Tokens.Path(), err}
	}
	cfg, err := c.usersConfig()
	if err != nil {
		return Caller{}, hit, err
	}
	if err := cfg.Active(id, now); err != nil {
		return Caller{}, hit, &Failure{id, "API token or its user is disabled, expired or unknown"}
	}
	return Caller{Authid: id, Userid: a.Userid()}, hit, nil
}

// usersConfig is user.cfg's parse, or a *FileError.
func (c *Checker) usersConfig() (*users.Config, error) {
	cfg, err := c.o.Users.Config()
	if err != nil {
		return nil, &FileError{FileUserCfg, c.o.Users.Path(), err}
	}
	return cfg, nil
}

// isRefusal reports whether a tokenshadow error refuses the credential (rather than being the
// server's failure to check it).
func isRefusal(err error) bool {
	return errors.Is(err, tokenshadow.ErrNoToken) || errors.Is(err, tokenshadow.ErrWrongSecret) ||
		errors.Is(err, tokenshadow.ErrSecretTooLong)
}

// Ticket verifies the ticket of a cookie: signature, lifetime, user active, not revoked. hit
// reports whether the signature check was answered from the verified-ticket cache.
func (c *Checker) Ticket(tk Cookie, now time.Time) (caller Caller, hit bool, err error) {
	userid, issued, hit, err := c.o.Tickets.VerifyUserHit(tk.Value, c.o.Prefix, c.o.Generations.Load(shmem.Keys), now)
	if err != nil {
		return Caller{}, hit, &Failure{"", "invalid ticket"}
	}
	cfg, err := c.usersConfig()
	if err != nil {
		return Caller{}, hit, err
	}
	if err := cfg.Active(userid, now); err != nil {
		return Caller{}, hit, &Failure{userid, "user is disabled, expired or unknown"}
	}
	revoked, err := c.o.Revocations.Revoked(userid, issued)
	if err != nil {
		return Caller{}, hit, &FileError{FileRevocations, c.o.Revocations.Path(), err}
	}
	if revoked {
		return Caller{}, hit, &Failure{userid, "ticket was revoked"}
	}
	return Caller{Authid: userid, Userid: userid, Cookie: tk.Name}, hit, nil
}

// ParseTokenHeader splits "<scheme>=<id>:<secret>" or "<scheme> <id>:<secret>". The id is a
// valid token id (which cannot contain ':'); the secret is everything after the first ':'.
// reason is not empty when the header is not such a value.
func ParseTokenHeader(scheme, authz string) (a authid.Authid, id, secret, reason string) {
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

// Decode undoes the percent-encoding some clients (and Encode) apply to a ticket cookie; a raw
// ticket ("<P>:...") is returned as it is, and so is anything that does not decode.
func Decode(prefix, v string) string {
	if !strings.HasPrefix(v, prefix+":") && strings.HasPrefix(v, prefix+"%3A") {
		if u, err := url.PathUnescape(v); err == nil {
			return u
		}
	}
	return v
}

// Encode is the cookie value a ticket travels in: the ticket as it is when a cookie can carry
// it (RFC 6265 cookie-octets; no space or comma, which net/http would quote), else
// percent-encoded with every ':' encoded, which Decode undoes. A user name may hold '"', ';',
// '\', ',' or non-ASCII letters.
func Encode(ticket string) string {
	if cookieSafe(ticket) {
		return ticket
	}
	return strings.ReplaceAll(url.PathEscape(ticket), ":", "%3A")
}

func cookieSafe(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= 0x20 || c >= 0x7f || c == '"' || c == ';' || c == '\\' || c == ',' {
			return false
		}
	}
	return true
}
