// Package forward is the contract between proxyd and apid for a call proxyd forwards: the
// internal headers that carry the verified caller and the answers only proxyd may see.
//
// proxyd authenticates a request, removes every header starting with "X-Gatehouse-" that the
// client sent, in any letter case and with '_' read as '-' (Strip: X_Gatehouse_User is
// X-Gatehouse-User to a CGI-style application, which maps both to HTTP_X_GATEHOUSE_USER), sets
// Authid (the verified user or token id, absent for the unauthenticated
// ticket call) and Rhost (the client address it rate-limits and logs), and sends the request to
// apid over its unix socket. apid believes these headers only because SO_PEERCRED proved the
// peer is proxyd's uid or root (package peercred). On the way back, apid may set Failure and
// FailUser on a 401 (proxyd writes the fail2ban line and never shows them to the client) and
// NewTicket when the calling session must get a new ticket (after its own password change);
// proxyd strips them all before answering.
package forward

import (
	"net/http"
)

// Header names.
const (
	Authid    = "X-Gatehouse-Authid"     // verified caller: user@realm or user@realm!token
	Rhost     = "X-Gatehouse-Rhost"      // client IP address
	Session   = "X-Gatehouse-Session"    // "cookie" when the caller authenticated with a ticket
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
