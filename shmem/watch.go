package shmem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// WatchInterval is the default interval of Watch's health checks.
const WatchInterval = 250 * time.Millisecond

// ErrMoved is reported when the owner's Bump found a counter moved by another process and
// lifted every counter.
var ErrMoved = errors.New("a counter was moved by another process: every counter lifted by 2^32")

// WatchOptions configure Watch.
type WatchOptions struct {
	Interval time.Duration // between health checks; default WatchInterval
	// Socket is apid's page socket: a process that attached with Dial (or runs on its private
	// page) dials it at every check and follows a new page. The owner ignores it.
	Socket string
	Report func(Event) // told of every incident and recovery; may be nil
}

// Event is what a health check reports: a failure (Err set), once per incident and again only
// when the failure changes, or a recovery (Err nil).
type Event struct {
	// What failed: "mirror" (the owner's mirror file), "page" (a process's page: apid
	// unreachable, a new page taken over), "bump" (a counter moved by another process).
	What string
	Path string // the mirror's path, or apid's socket
	Err  error
	// Private tells that no page is attached: the process runs on its private page, whose
	// counters move on every health check.
	Private bool
	// Recovery only: the inode of the page now attached, or of the mirror written; whether a
	// new page was taken over (apid restarted without keeping its page); where an invalid
	// mirror was moved ("" if none).
	Inode   uint64
	NewPage bool
	MovedTo string
}

// Log writes the event to l: a failure as an error, a recovery as a warning.
func (e Event) Log(l *slog.Logger) {
	if e.Err != nil {
		attrs := []any{"what", e.What, "path", e.Path, "err", e.Err}
		if e.Private {
			attrs = append(attrs, "meanwhile", "caches are re-read from disk at least every health check until apid's page is attached")
		}
		l.Error("config version cache broken", attrs...)
		return
	}
	attrs := []any{"what", e.What, "path", e.Path, "inode", e.Inode}
	if e.NewPage {
		attrs = append(attrs, "new_page", true, "meanwhile", "caches of the old page dropped")
	}
	if e.MovedTo != "" {
		attrs = append(attrs, "moved_invalid_file_to", e.MovedTo)
	}
	l.Warn("config version cache recovered", attrs...)
}

// Watch runs a health check every interval until ctx is done or the Cache is closed. The
// owner keeps its mirror (see "The mirror") and reports counters moved by another process; a
// process attached with Dial, or on its private page, dials o.Socket and follows apid's page
// (see "Following a new page").
func (c *Cache) Watch(ctx context.Context, o WatchOptions) {
	if o.Interval <= 0 {
		o.Interval = WatchInterval
	}
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	c.WatchTicks(ctx, t.C, o)
}

// WatchTicks is Watch with the ticks injected (tests): one health check per value received.
func (c *Cache) WatchTicks(ctx context.Context, tick <-chan time.Time, o WatchOptions) {
	var lifts uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			if !c.heal(o, &lifts) {
				return
			}
		}
	}
}

// heal is one health check. It returns false once the Cache is closed.
func (c *Cache) heal(o WatchOptions, lifts *uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.current()
	if m == nil {
		return false
	}
	report := func(e Event) {
		if o.Report != nil {
			o.Report(e)
		}
	}
	if m.ro != nil {
		if n := c.lifts.Load(); n != *lifts {
			*lifts = n
			report(Event{What: "bump", Err: ErrMoved})
		}
		if c.mirror.path != "" {
			c.healMirror(m, report)
		}
		return true
	}
	if o.Socket == "" {
		return true
	}
	next, err := dial(o.Socket)
	switch {
	case err != nil && m.mem == nil:
		// Still on the private page: move every counter, so that nothing cached lives past
		// this check.
		m.raise(add(m.raw(), 1))
		c.incident(report, Event{What: "page", Path: o.Socket, Err: err, Private: true})
	case err != nil:
		// apid is down or its socket unreachable: the page attached stays (only apid bumps it).
		c.incident(report, Event{What: "page", Path: o.Socket, Err: fmt.Errorf("keeping the page attached: %w", err)})
	case next.dev == m.dev && next.ino == m.ino:
		unmap(next)
		if c.reported != "" {
			c.reported = ""
			report(Event{What: "page", Path: o.Socket, Inode: m.ino})
		}
	default:
		c.follow(next)
		c.reported = ""
		report(Event{What: "page", Path: o.Socket, Inode: next.ino, NewPage: true})
	}
	return true
}

// incident reports e once per incident: again only when the failure changes. c.mu is held.
func (c *Cache) incident(report func(Event), e Event) {
	if msg := e.Err.Error(); msg != c.reported {
		c.reported = msg
		report(e)
	}
}

// follow makes next the page Load uses, with this process's lift: every value above every one
// returned so far. The old page stays mapped until Close: a reader may still be using it.
// c.mu is held.
func (c *Cache) follow(next *mapping) {
	old := c.current()
	floor := add(old.values(), jump)
	raw := next.raw()
	for k := range next.lift {
		if raw[k] < floor[k] {
			next.lift[k] = floor[k] - raw[k]
		}
	}
	c.swap(next)
	if old.mem != nil {
		c.retired = append(c.retired, old)
	}
}

// healMirror is the owner's check of its mirror: an incident is reported once and repaired
// (a file moved aside, a new one written); otherwise the page's values are written when they
// changed. c.mu is held.
func (c *Cache) healMirror(m *mapping, report func(Event)) {
	path := c.mirror.path
	err := c.checkMirror()
	if err == nil {
		if werr := c.writeMirror(m); werr != nil {
			c.incident(report, Event{What: "mirror", Path: path, Err: werr})
		} else if c.reported != "" {
			c.reported = ""
			report(Event{What: "mirror", Path: path, Inode: c.mirror.ino})
		}
		return
	}
	c.incident(report, Event{What: "mirror", Path: path, Err: err})
	if errors.Is(err, ErrMirrorWritten) {
		if werr := c.forceMirror(m); werr != nil {
			c.incident(report, Event{What: "mirror", Path: path, Err: werr})
			return
		}
		c.reported = ""
		report(Event{What: "mirror", Path: path, Inode: c.mirror.ino})
		return
	}
	movedTo, rerr := c.remakeMirror(m)
	if rerr != nil {
		c.incident(report, Event{What: "mirror", Path: path, Err: fmt.Errorf("writing a new mirror: %w", rerr)})
		return
	}
	c.reported = ""
	report(Event{What: "mirror", Path: path, Inode: c.mirror.ino, MovedTo: movedTo})
}

// forceMirror writes m's values over counters someone else wrote into the mirror.
func (c *Cache) forceMirror(m *mapping) error {
	c.mirror.written = [numCounters]uint64{^uint64(0)}
	return c.writeMirror(m)
}

// raise lifts every counter below floor to floor (never lowers one). Only for writable
// mappings: the private page.
func (m *mapping) raise(floor [numCounters]uint64) {
	for k, p := range m.counters {
		for {
			v := p.Load()
			if v >= floor[k] || p.CompareAndSwap(v, floor[k]) {
				break
			}
		}
	}
}
