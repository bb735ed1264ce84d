// Package forward is the contract between proxyd and apid for a call proxyd forwards: the
// internal headers that carry the verified caller and the answers only proxyd may see.
//
// proxyd authenticates a request, removes every header starting with "X-Gatehouse-" that the
// client sent (Strip), sets Authid (the verified user or token id, absent for the unauthenticated
// ticket call) and Rhost (the client address it rate-limits and logs), and sends the request to
// apid over its unix socket. apid believes these headers only because SO_PEERCRED proved the
// peer is proxyd's uid or root (package peercred). On the way back, apid may set Failure and
// FailUser on a 401 (proxyd writes the fail2ban line and never shows them to the client) and
// NewTicket when the calling session must get a new ticket (after its own password change);
// proxyd strips them all before answering.
package forward

import (
	"net/http"
	"strings"
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

// Strip removes every internal header from h, in any letter case.
func Strip(h http.Header) {
	for k := range h {
		if len(k) >= len(prefix) && strings.EqualFold(k[:len(prefix)], prefix) {
			delete(h, k)
		}
	}
}
