package authfail

import (
	"bytes"
	"net/netip"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// timeLayout is proxmox_time::epoch_to_rfc3339: local time, seconds, "+hh:mm" even in UTC.
const timeLayout = "2006-01-02T15:04:05-07:00"

// appendLine appends the auth log line of one failure, newline included; now is already in
// the log's zone.
func appendLine(b []byte, now time.Time, client netip.AddrPort, user, reason string) []byte {
	b = now.AppendFormat(b, timeLayout)
	b = append(b, ": authentication failure; rhost="...)
	b = appendRhost(b, client)
	if user != "" {
		b = append(b, " user="...)
		b = appendClean(b, user, MaxUserLen, false)
	}
	b = append(b, " msg="...)
	b = appendClean(b, reason, MaxReasonLen, true)
	return append(b, '\n')
}

// appendRhost appends "[address]:port", the address unmapped and without zone, or "unknown".
func appendRhost(b []byte, ap netip.AddrPort) []byte {
	a := ap.Addr()
	if !a.IsValid() {
		return append(b, "unknown"...)
	}
	b = append(b, '[')
	b = a.Unmap().WithZone("").AppendTo(b)
	b = append(b, "]:"...)
	return strconv.AppendUint(b, uint64(ap.Port()), 10)
}

// appendClean appends s sanitized for a log field: each rune that is not printable
// (unicode.IsPrint), each invalid byte, and each space unless spaces is set, becomes '?';
// the result is cut to limit bytes, ending in "..." when cut; "rhost=" in any case becomes
// "rhost:".
func appendClean(b []byte, s string, limit int, spaces bool) []byte {
	start := len(b)
	for _, r := range s {
		if len(b)-start > limit {
			break // it will be cut anyway
		}
		switch {
		case r == ' ' && spaces:
		case r == ' ', r == utf8.RuneError, !unicode.IsPrint(r):
			r = '?'
		}
		b = utf8.AppendRune(b, r)
	}
	if len(b)-start > limit {
		cut := start + limit - len("...")
		for !utf8.RuneStart(b[cut]) {
			cut--
		}
		b = append(b[:cut], "..."...)
	}
	defang(b[start:])
	return b
}

// defang turns every "rhost=", in any case, into "rhost:" in place.
func defang(p []byte) {
	const word = "rhost="
	for i := 0; i+len(word) <= len(p); i++ {
		if p[i+len(word)-1] == '=' && bytes.EqualFold(p[i:i+len(word)-1], []byte(word[:len(word)-1])) {
			p[i+len(word)-1] = ':'
		}
	}
}
