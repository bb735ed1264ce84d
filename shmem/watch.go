package shmem

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"strings"
	"time"
)

// WatchInterval is the default interval of Watch's health checks.
const WatchInterval = 250 * time.Millisecond

// WatchOptions configure Watch.
type WatchOptions struct {
	Interval time.Duration // between health checks; default WatchInterval
	// Repair is for the writer (apid), which made the file: it moves an invalid file aside and
	// makes a new one, as Recreate. Without it (proxyd, which may not write the directory) the
	// Cache waits for a valid file to appear at the path.
	Repair bool
	GID    int         // group of a file Repair makes; < 0 leaves the process's
	Report func(Event) // told of every incident and recovery; may be nil
}

// Event is what a health check reports: a failure (Err set), once per incident and again only
// when the failure changes, or a recovery (Err nil).
type Event struct {
	Path string
	// Err is the failure: the check of the mapped file that started the incident, or a failed
	// attempt of Repair to make a new one.
	Err error
	// Private tells that no valid file is mapped: the Cache runs on its private page, whose
	// counters move on every health check.
	Private bool
	// Recovery only: the inode now mapped, whether Repair made the file, and where it moved
	// the invalid one ("" if it moved none).
	Inode   uint64
	Made    bool
	MovedTo string
}

// Log writes the event to l: a failure as an error, a recovery as a warning.
func (e Event) Log(l *slog.Logger) {
	if e.Err != nil {
		attrs := []any{"path", e.Path, "err", e.Err}
		if e.Private {
			attrs = append(attrs, "meanwhile", "caches are re-read from disk at least every health check until a valid file is at the path")
		}
		l.Error("config version cache broken", attrs...)
		return
	}
	attrs := []any{"path", e.Path, "inode", e.Inode, "made", e.Made}
	if e.MovedTo != "" {
		attrs = append(attrs, "moved_invalid_file_to", e.MovedTo)
	}
	l.Warn("config version cache recovered: caches of the old file dropped", attrs...)
}

// Watch runs a health check every interval until ctx is done or the Cache is closed; see
// "Breakage and recovery" in the package documentation.
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
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			if !c.heal(o) {
				return
			}
		}
	}
}

// heal is one health check. It returns false once the Cache is closed.
func (c *Cache) heal(o WatchOptions) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.current()
	if m == nil {
		return false
	}
	report := func(e Event) {
		e.Path = c.path
		if o.Report != nil {
			o.Report(e)
		}
	}
	vals, err := c.check(m)
	if err == nil {
		c.seen, c.reported = vals, ""
		return true
	}
	// Values above every one returned so far: the last ones seen (for the private page, its
	// current ones) plus more than a counter can grow between two checks.
	last := c.seen
	if m.mem == nil {
		last = m.values()
	}
	floor := add(last, jump)
	next, movedTo, made, rerr := c.replacement(o)
	if m.mem != nil {
		// A mapped file failed: a new incident.
		if rerr != nil {
			c.switchTo(privateMapping(err), floor)
		}
		c.reported = err.Error()
		report(Event{Err: err, Private: rerr != nil})
	} else if rerr != nil {
		// Still on the private page: move every counter, so that nothing cached lives past
		// this check.
		m.raise(add(last, 1))
		c.seen = m.values()
	}
	if rerr != nil {
		// A reader waits quietly for apid to make the file; anything else (apid unable to make
		// one, a reader unable to open a valid-looking one) is said once per reason.
		waiting := !o.Repair && (errors.Is(rerr, fs.ErrNotExist) || IsInvalid(rerr))
		if !waiting && !strings.Contains(c.reported, rerr.Error()) {
			c.reported = rerr.Error()
			report(Event{Err: rerr, Private: true})
		}
		return true
	}
	c.switchTo(next, floor)
	c.reported = ""
	report(Event{Inode: next.ino, Made: made, MovedTo: movedTo})
	return true
}

// replacement opens the file now at the path, or with Repair makes it.
func (c *Cache) replacement(o WatchOptions) (m *mapping, movedTo string, made bool, err error) {
	if o.Repair {
		return recreate(c.path, o.GID)
	}
	m, err = open(c.path)
	return m, "", false, err
}

// switchTo makes next the mapping Load and Bump use, first lifting its counters to at least
// floor. The old file stays mapped until Close: a reader may still be using it. c.mu is held.
func (c *Cache) switchTo(next *mapping, floor [numCounters]uint64) {
	next.raise(floor)
	old := c.swap(next)
	if old.mem != nil {
		c.retired = append(c.retired, old)
	}
	c.seen = next.values()
}

// add returns v with n added to every counter.
func add(v [numCounters]uint64, n uint64) [numCounters]uint64 {
	for k := range v {
		v[k] += n
	}
	return v
}
