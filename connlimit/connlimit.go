// Package connlimit caps what clients hold at once in a server: connections (Listener wraps a
// TCP listener) or requests in flight (a server calls Acquire for each), at most Max in all
// and at most PerClient from one client. It is proxyd's first line against unauthenticated
// resource exhaustion (idle TLS and HTTP/2 connections, slow bodies, unfinished headers, many
// HTTP/2 streams from one address): net/http's timeouts end such connections after a while,
// the caps bound how many there can be meanwhile, and so the memory and file descriptors they
// hold.
//
// # Invariants
//
//   - A client is the peer's address, IPv4-mapped IPv6 unmapped first, or its IPv6 /64 (a
//     client controls a whole /64), as in package authfail.
//   - Peers in Exempt (proxyd's --trusted-proxies: a front proxy carries many clients over its
//     connections) are not held to PerClient; they still count toward Max.
//   - A slot counts from Acquire (for a connection: from the moment Accept returns it) until
//     its release (the connection's first Close); releasing again, concurrently or not, frees
//     nothing more. So the number held never exceeds Max, nor one client's PerClient, and a
//     freed slot is free at once.
//   - Over a cap, Acquire refuses at once and never waits for a slot; Accept closes the
//     connection at once with SO_LINGER 0 (the client sees a reset, the server keeps no
//     TIME_WAIT state and no buffer for it) and goes on to the next one, so clients under the
//     caps are served while another sits at its cap. Refusals are counted by reason (total,
//     per_client) before the connection is closed, and logged at most once per LogEvery
//     (default 10 s), each line counting the refusals since the previous one.
//   - 0 turns a cap off. The state is one map entry per client holding a slot (at most Max
//     entries, about 50 bytes each) and a mutex taken once to acquire and once to release.
//
// proxyd's defaults (package gateway: --max-conns 512 and --max-conns-per-client 64 on its
// public listener, --max-requests 512 and --max-requests-per-client 64 for requests not yet
// authenticated) kept it under 41 MiB under issue 17's attacks from one address and under
// 74 MiB with every global slot taken (go run ./bench -attack-only; 201 to 222 MiB without the
// caps), and keep its file descriptors under the systemd unit's LimitNOFILE=4096.
package connlimit

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Reason is why a connection was refused.
type Reason uint8

const (
	Total     Reason = iota // Max connections were open
	PerClient               // PerClient connections of its client were open
	numReasons
)

// String is the reason's metric label: "total" or "per_client".
func (r Reason) String() string {
	switch r {
	case Total:
		return "total"
	case PerClient:
		return "per_client"
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// Reasons lists every Reason, for exporting each counter from the start.
func Reasons() []Reason { return []Reason{Total, PerClient} }

// DefaultLogEvery is how often refusals are logged at most, by default.
const DefaultLogEvery = 10 * time.Second

// Options configure a Limiter.
type Options struct {
	Max       int            // connections open at once in all; 0: no cap
	PerClient int            // connections open at once from one client; 0: no cap
	Exempt    []netip.Prefix // peers not held to PerClient (trusted proxies)
	What      string         // what is counted, for the log: default "connections"
	Log       *slog.Logger   // refusals, at most one line per LogEvery; nil: none
	LogEvery  time.Duration  // default DefaultLogEvery
	Now       func() time.Time
}

// Limiter counts the connections of the listeners it wraps (usually one) and refuses those
// over a cap. Its methods are safe for concurrent use.
type Limiter struct {
	o Options

	mu      sync.Mutex
	open    int
	clients map[key]int // open connections per client held to PerClient; no zero entries

	refused [numReasons]atomic.Uint64

	logMu    sync.Mutex
	lastLog  time.Time // zero: nothing logged yet
	unlogged uint64    // refusals since the last line
}

// New checks o and returns a Limiter.
func New(o Options) (*Limiter, error) {
	if o.Max < 0 || o.PerClient < 0 {
		return nil, fmt.Errorf("creating connection limits: max %d and per client %d must not be negative", o.Max, o.PerClient)
	}
	if o.LogEvery <= 0 {
		o.LogEvery = DefaultLogEvery
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.What == "" {
		o.What = "connections"
	}
	exempt := make([]netip.Prefix, 0, len(o.Exempt))
	for _, p := range o.Exempt {
		if !p.IsValid() {
			return nil, errors.New("creating connection limits: an exempt prefix is invalid")
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		exempt = append(exempt, p.Masked())
	}
	o.Exempt = exempt
	return &Limiter{o: o, clients: map[key]int{}}, nil
}

// Open returns the number of connections open now.
func (l *Limiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// Refused returns how many connections were refused for reason r so far.
func (l *Limiter) Refused(r Reason) uint64 {
	if r >= numReasons {
		return 0
	}
	return l.refused[r].Load()
}

// Listener returns ln with the caps applied: its Accept returns only connections under them
// (see the package comment), whose Close frees their slot.
func (l *Limiter) Listener(ln net.Listener) net.Listener { return &listener{Listener: ln, l: l} }

// key names a client: see keyOf.
type key [16]byte

// keyOf returns the client key of a: an IPv4 address in its IPv4-mapped form, or an IPv6
// address with its low 64 bits cleared. The two never collide: a mapped address has 0xffff in
// bits 80..95, which a /64 key has as zero.
func keyOf(a netip.Addr) key {
	a = a.Unmap()
	k := key(a.As16())
	if a.Is6() {
		clear(k[8:])
	}
	return k
}

// peer returns the address of c's peer; the invalid Addr when it is not an IP address.
func peer(c net.Conn) netip.Addr {
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	return ap.Addr()
}

func (l *Limiter) exempt(a netip.Addr) bool {
	for _, p := range l.o.Exempt {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Acquire counts one more connection or request of the client at a (an invalid address is
// held to Max only) and returns the function that frees it; only its first call does. Over a
// cap it counts and logs the refusal (see the package comment) and returns false with the
// reason. Listener's Accept calls it for each connection; a server may call it for each
// request in flight, on a Limiter of its own.
func (l *Limiter) Acquire(a netip.Addr) (release func(), r Reason, ok bool) {
	a = a.Unmap().WithZone("")
	perClient := a.IsValid() && l.o.PerClient > 0 && !l.exempt(a)
	var k key
	if perClient {
		k = keyOf(a)
	}
	if r, ok := l.admit(k, perClient); !ok {
		l.refused[r].Add(1) // before the caller closes: a client that saw its reset finds it counted
		l.logRefusal(a, r)
		return nil, r, false
	}
	var freed atomic.Bool
	return func() {
		if freed.CompareAndSwap(false, true) {
			l.release(k, perClient)
		}
	}, 0, true
}

func (l *Limiter) admit(k key, perClient bool) (Reason, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if perClient && l.clients[k] >= l.o.PerClient {
		return PerClient, false
	}
	if l.o.Max > 0 && l.open >= l.o.Max {
		return Total, false
	}
	l.open++
	if perClient {
		l.clients[k]++
	}
	return 0, true
}

func (l *Limiter) release(k key, perClient bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if perClient {
		if n := l.clients[k] - 1; n > 0 {
			l.clients[k] = n
		} else {
			delete(l.clients, k)
		}
	}
}

// logRefusal logs a refusal, at most once per LogEvery: the line counts the refusals since
// the previous one, this one included.
func (l *Limiter) logRefusal(a netip.Addr, r Reason) {
	if l.o.Log == nil {
		return
	}
	now := l.o.Now()
	l.logMu.Lock()
	l.unlogged++
	if !l.lastLog.IsZero() && now.Sub(l.lastLog) < l.o.LogEvery {
		l.logMu.Unlock()
		return
	}
	n := l.unlogged
	l.lastLog, l.unlogged = now, 0
	l.logMu.Unlock()
	l.o.Log.Warn(l.o.What+" refused", "reason", r.String(), "client", a.String(), "refused", n,
		"max", l.o.Max, "per_client", l.o.PerClient)
}

type listener struct {
	net.Listener
	l *Limiter
}

// Accept returns the next connection under the caps, closing those over them at once, with
// a reset (SO_LINGER 0), on the way.
func (ln *listener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		release, _, ok := ln.l.Acquire(peer(c))
		if ok {
			return &conn{Conn: c, release: release}, nil
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
	}
}

// conn is an admitted connection; its first Close frees its slot.
type conn struct {
	net.Conn
	release func()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}
