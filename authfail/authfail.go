// Package authfail decides what happens when an authentication fails: the failure is written to
// the auth log in PBS's format, so that fail2ban filters written for Proxmox Backup Server ban
// the client; it is charged to the client's address, so that a client that keeps failing is
// refused (429) before its credentials are even checked; and its answer is held back.
//
// # Auth log
//
// PBS appends every failed authentication to /var/log/proxmox-backup/api/auth.log
// (proxmox-rest-server RestEnvironment::log_failed_auth through a FileLogger with append and
// prefix_time). Guard writes the same line, one per failure:
//
//	2024-05-27T16:19:02+02:00: authentication failure; rhost=[203.0.113.7]:51234 user=alice@pbs msg=x
//
// Its parts:
//
//   - Timestamp: local time (Options.Location, default time.Local), seconds, and a numeric
//     offset that is never "Z" ("+00:00" in UTC), as proxmox_time::epoch_to_rfc3339 writes it;
//     then ": ". fail2ban's default date detector reads it.
//   - rhost: PBS logs the peer's socket address: the proxy listens on [::]:8007, so every client
//     appears as "[<IPv6>]:<port>", IPv4 ones as "[::ffff:a.b.c.d]:<port>". Guard writes
//     "[<address>]:<port>" too, IPv4 unmapped ("[a.b.c.d]:<port>"): fail2ban strips ::ffff:
//     anyway, and CrowdSec, which does not, then gets an address its firewall can ban. The
//     port is 0 when unknown (a client named by X-Forwarded-For without one); an invalid
//     address is written "unknown", as PBS does without a peer. The Proxmox wiki filter
//     `authentication failure; rhost=\[<HOST>\]:\d+ user=.* msg=.*` needs the brackets and
//     the port; a filter of the PVE shape (`rhost=<HOST> user=`) matches neither PBS's lines
//     nor these.
//   - user: left out with its " user=" when empty, as PBS does for requests that named no user
//     (the wiki filter then does not count the line).
//   - user and msg are sanitized: every byte sequence that is not a printable character
//     (unicode.IsPrint: control characters, CR, LF, DEL, C1, line and paragraph separators,
//     bidi and other format characters, invalid UTF-8) becomes '?', and so does a space in the
//     user (PBS user ids have none); "rhost=" in any case becomes "rhost:", so that no text of
//     the client's can put a second, greedy-matchable host on the line. The user is cut to
//     MaxUserLen bytes and the message to MaxReasonLen, ending in "..." when cut, so a line is
//     at most about 1.4 KiB.
//
// The file is opened O_WRONLY|O_APPEND|O_CREATE with mode 0640 and must be a regular file.
// Each line is one write(2) of the whole line under a mutex, so lines from goroutines, and with
// O_APPEND from other processes (proxyd and apid share the file, as PBS's two daemons do),
// never interleave. Reopen reopens the path after logrotate has moved the file away (PBS:
// the "api-auth-log-reopen" command); wiring it to a signal is the daemon's job.
//
// # Limit per client
//
// Failures are counted per client address, IPv4-mapped IPv6 unmapped first, and per /64 for
// IPv6 (a client controls a whole /64). A client may fail Burst times in a row (default 10);
// one failure is forgiven per Refill (default 6 s, so 10 a minute sustained). Allow reports
// whether a client may try at all; it is a lookup under a mutex and does not allocate.
//
// A check reserves its failure before it runs (Reserve, under the same lock as the decision)
// and gives it back when it succeeds (Reservation.Release), so that checks running at the
// same time cannot pass the limit together: 100 parallel wrong passwords from one client get
// Burst checks, not 93 of 100 (as they did when the failure was recorded after the check). A
// client over its allowance only because of its own checks in flight waits for them to
// settle instead of getting 429: parallel requests with valid credentials are never refused.
// A success gives back its own reservation only, never earlier failures: a guesser that also
// knows one valid password gains nothing from it.
//
// The count is a GCRA: each client has a time "paid off" (tat); a failure moves it to
// max(tat, now) + Refill, and the client may try while tat - now <= (Burst-1) × Refill. Every
// recorded failure costs a full Refill, also one whose attempt passed Allow concurrently with
// others, so the long-run rate is one failure per Refill whatever the concurrency. A client's
// debt tat - now is capped at 24 h; Burst × Refill must fit in that.
//
// At most MaxClients clients are tracked (default 100 000; about 80 bytes each, 8 MB when
// full). Clients whose debt is paid off are dropped as Fail goes (a min-heap on tat); when the
// table is still full, the client nearest to being paid off is dropped, so the most indebted
// are the last to be forgiven. Allow stores nothing.
//
// # Delay
//
// PBS holds the answer to a failed authentication back for 3 s (proxmox-rest-server
// delay_unauth_time, 3000 ms), so that each connection can guess at most once in 3 s. Wait
// does that; Options.Delay changes it and Options.Sleep replaces the timer (tests).
//
// # Client address
//
// ClientAddr takes the TCP peer, unless the peer is a trusted proxy (ParseTrusted, e.g. for a
// --trusted-proxies flag); then it walks X-Forwarded-For from right to left, skipping trusted
// addresses, and takes the first that is not trusted. A malformed entry, or more than 32
// entries, stops the walk at the last good address; a chain of trusted addresses only yields
// the left-most. Entries may be "a.b.c.d", "a.b.c.d:port", "v6", "[v6]" or "[v6]:port"; zones
// are refused. A client cannot lie its way past its own proxy: everything left of the first
// untrusted address is ignored.
package authfail

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"
)

// Defaults and limits.
const (
	DefaultBurst      = 10
	DefaultRefill     = 6 * time.Second
	DefaultDelay      = 3 * time.Second // PBS delay_unauth_time
	DefaultMaxClients = 100_000
	MaxUserLen        = 256  // bytes of the sanitized user in a line
	MaxReasonLen      = 1024 // bytes of the sanitized message in a line
	MaxDebt           = 24 * time.Hour
	logMode           = 0o640
)

// ErrNotRegular is returned when the auth log path names something other than a regular file.
var ErrNotRegular = errors.New("not a regular file")

// Options configure a Guard. Zero values mean the defaults.
type Options struct {
	LogPath    string         // auth log; required
	Location   *time.Location // zone of the log timestamps; default time.Local, as PBS
	Burst      int            // failures a client may make in a row; default 10
	Refill     time.Duration  // one failure is forgiven per Refill; default 6 s
	Delay      time.Duration  // how long Wait holds a failed answer; 0: 3 s, negative: not at all
	MaxClients int            // clients tracked at most; default 100 000

	// Sleep waits for d or until ctx is done, returning ctx's error then. Default: a timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Guard logs and limits failed authentications. Its methods are safe for concurrent use.
type Guard struct {
	path  string
	loc   *time.Location
	delay time.Duration
	sleep func(context.Context, time.Duration) error
	lim   *limiter

	logMu sync.Mutex
	f     *os.File // nil once closed
}

// Open opens (creating it if needed) the auth log and returns a Guard writing to it.
func Open(o Options) (*Guard, error) {
	if o.LogPath == "" {
		return nil, errors.New("opening auth log: no path given")
	}
	g := &Guard{path: o.LogPath, loc: o.Location, delay: o.Delay, sleep: o.Sleep}
	if g.loc == nil {
		g.loc = time.Local
	}
	if g.delay == 0 {
		g.delay = DefaultDelay
	}
	if g.sleep == nil {
		g.sleep = sleep
	}
	burst, refill, maxClients := o.Burst, o.Refill, o.MaxClients
	if burst <= 0 {
		burst = DefaultBurst
	}
	if refill <= 0 {
		refill = DefaultRefill
	}
	if maxClients <= 0 {
		maxClients = DefaultMaxClients
	}
	if refill > MaxDebt/time.Duration(burst) {
		return nil, fmt.Errorf("opening auth log %s: burst %d × refill %v is over %v",
			o.LogPath, burst, refill, MaxDebt)
	}
	g.lim = newLimiter(burst, refill, maxClients, time.Now())
	f, err := openLog(o.LogPath)
	if err != nil {
		return nil, err
	}
	g.f = f
	return g, nil
}

// openLog opens path for appending, creating it with mode 0640, and checks that it is a
// regular file (O_APPEND writes are atomic only there).
func openLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, logMode)
	if err != nil {
		return nil, fmt.Errorf("opening auth log %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = ErrNotRegular
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("opening auth log %s: %w", path, err)
	}
	return f, nil
}

// Close closes the auth log. Later Fail calls still count but return an error wrapping
// os.ErrClosed. Closing twice is not an error.
func (g *Guard) Close() error {
	g.logMu.Lock()
	defer g.logMu.Unlock()
	if g.f == nil {
		return nil
	}
	err := g.f.Close()
	g.f = nil
	if err != nil {
		return fmt.Errorf("closing auth log %s: %w", g.path, err)
	}
	return nil
}

// Reopen opens the log path again and writes there from now on, for after logrotate has
// renamed the file. On error the old file stays in use.
func (g *Guard) Reopen() error {
	g.logMu.Lock()
	defer g.logMu.Unlock()
	if g.f == nil {
		return fmt.Errorf("reopening auth log %s: %w", g.path, os.ErrClosed)
	}
	f, err := openLog(g.path)
	if err != nil {
		return fmt.Errorf("reopening: %w", err)
	}
	old := g.f
	g.f = f
	if err := old.Close(); err != nil {
		return fmt.Errorf("reopening auth log %s: closing the old file: %w", g.path, err)
	}
	return nil
}

// Allow reports whether the client at ip may try to authenticate now. When it may not, answer
// 429 without checking credentials (and without calling Fail). It does not allocate.
func (g *Guard) Allow(ip netip.Addr, now time.Time) bool {
	return g.lim.allow(keyOf(ip), g.lim.since(now))
}

// RetryAfter returns how long the client at ip must wait until Allow lets it try again; 0 if
// it may now. Round it up to whole seconds for a Retry-After header.
func (g *Guard) RetryAfter(ip netip.Addr, now time.Time) time.Duration {
	return g.lim.retryAfter(keyOf(ip), g.lim.since(now))
}

// Fail records a failed authentication by client that had no reservation: it charges one
// failure to the client's address and appends one line to the auth log (see the package
// comment). user is the user or token id the client named ("" if none), reason says what
// failed. Both are sanitized. The failure counts even when the log cannot be written; the
// error says why.
func (g *Guard) Fail(client netip.AddrPort, user, reason string, now time.Time) error {
	g.lim.fail(keyOf(client.Addr()), g.lim.since(now))
	return g.log(client, user, reason, now)
}

// Reservation is the failure Reserve charged before a check; Release or Fail ends it, exactly
// once. The zero Reservation ends as a no-op (nothing was charged).
type Reservation struct {
	g    *Guard
	c    *client
	at   int64 // when it was made, on the limiter's clock
	cost int64
}

// Reserve starts a credential check by the client at ip: it charges one failure before the
// check, so that checks running at the same time cannot pass the limit together, and reports
// false, charging nothing, when the client may not try (answer 429 without checking). While
// the client is over its allowance only because of checks in flight, Reserve waits for them to
// settle (or for ctx), since those that succeed give their charge back: parallel requests with
// a valid credential are not refused, parallel guesses get at most the allowance of checks.
// It does not allocate unless it waits.
func (g *Guard) Reserve(ctx context.Context, ip netip.Addr, now time.Time) (Reservation, bool) {
	t := g.lim.since(now)
	c, cost, ok := g.lim.reserve(keyOf(ip), t, ctx.Done())
	if !ok {
		return Reservation{}, false
	}
	return Reservation{g, c, t, cost}, true
}

// Release ends a reservation whose check succeeded, or reached no verdict (a malformed
// request, a server error): the charge is given back.
func (r Reservation) Release() {
	if r.g != nil {
		r.g.lim.settle(r.c, r.at, r.cost, true)
	}
}

// Fail ends a reservation whose check failed: the charge stays, and the auth log gets the line
// Guard.Fail writes.
func (r Reservation) Fail(client netip.AddrPort, user, reason string, now time.Time) error {
	if r.g == nil {
		return nil
	}
	r.g.lim.settle(r.c, r.at, r.cost, false)
	return r.g.log(client, user, reason, now)
}

// log appends the line of a failed authentication to the auth log.
func (g *Guard) log(client netip.AddrPort, user, reason string, now time.Time) error {
	line := appendLine(make([]byte, 0, 192), now.In(g.loc), client, user, reason)
	g.logMu.Lock()
	defer g.logMu.Unlock()
	if g.f == nil {
		return fmt.Errorf("writing auth log %s: %w", g.path, os.ErrClosed)
	}
	if _, err := g.f.Write(line); err != nil {
		return fmt.Errorf("writing auth log %s: %w", g.path, err)
	}
	return nil
}

// Wait holds back the answer to a failed authentication: it returns after the configured
// delay (3 s by default), or earlier with ctx's error when ctx is done.
func (g *Guard) Wait(ctx context.Context) error {
	if g.delay < 0 {
		return nil
	}
	return g.sleep(ctx, g.delay)
}

// sleep is the default Options.Sleep.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
