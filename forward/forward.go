// Package forward is the contract between proxyd and apid for a call proxyd forwards: the
// internal headers that travel beside the caller's own credential, and the answers only proxyd
// may see.
//
// proxyd authenticates a request, removes every header starting with "X-Gatehouse-" that the
// client sent, in any letter case and with '_' read as '-' (Strip: X_Gatehouse_User is
// X-Gatehouse-User to a CGI-style application, which maps both to HTTP_X_GATEHOUSE_USER), and
// sends the request to apid over its unix socket with the credential as the client sent it (the
// Authorization header, or the ticket cookie and the CSRFPreventionToken header): apid verifies
// it again itself (package credential) and believes no identity that proxyd names. The one
// internal header of a request is Rhost, the client address proxyd rate-limits and logs, which
// apid uses for its own log lines only. On the way back, apid may set Failure and FailUser on a
// 401 (proxyd writes the fail2ban line and never shows them to the client) and NewTicket when
// the calling session must get a new ticket (after its own password change); proxyd strips them
// all before answering. Failure and FailUser may hold a client's bytes (the user name it typed,
// control characters included) and travel percent-encoded (SetValue, Value), so that nothing a
// client sends can break the answer's header block.
package forward

import (
	"net/http"
	"net/url"
)

// Header names.
const (
	Rhost     = "X-Gatehouse-Rhost"      // client IP address and port
	Failure   = "X-Gatehouse-Failure"    // on 401: the reason for the auth log
	FailUser  = "X-Gatehouse-Fail-User"  // on 401: the user id the client claimed
	NewTicket = "X-Gatehouse-New-Ticket" // a fresh ticket for the calling session
)

const prefix = "X-Gatehouse-"

// Strip removes every internal header from h, in any letter case and with any '_' standing
// for a '-' (X_Gatehouse_User, X-Gatehouse_User, x_gatehouse-authid).
func Strip(h http.Header) {
	for k := range h {
		if internal(k) {
			delete(h, k)
		}
	}
}

// internal reports whether a header name is an internal one: it starts with "X-Gatehouse-"
// once ASCII case is ignored and '_' is read as '-'.
func internal(name string) bool {
	if len(name) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if fold(name[i]) != fold(prefix[i]) {
			return false
		}
	}
	return true
}

// fold maps an ASCII upper-case letter to lower case and '_' to '-'.
func fold(c byte) byte {
	switch {
	case c == '_':
		return '-'
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	}
	return c
}

// SetValue sets header name to v percent-encoded: any byte, a control character included, then
// travels in a valid header value. Value undoes it.
func SetValue(h http.Header, name, v string) {
	h.Set(name, url.QueryEscape(v))
}

// Value returns the value SetValue set; a value that does not decode is returned as it is.
func Value(h http.Header, name string) string {
	v := h.Get(name)
	if u, err := url.QueryUnescape(v); err == nil {
		return u
	}
	return v
}
