package authfail

import (
	"container/heap"
	"net/netip"
	"sync"
	"time"
)

// key names a client: an IPv4 address as its IPv4-mapped form, or an IPv6 /64 with the low 64
// bits zero. The two never collide: a mapped address has 0xffff in its low 64 bits.
type key [16]byte

// keyOf returns the key of ip. Zones are ignored; the invalid Addr gets the all-zero key
// (that of ::/64, which is never a client).
func keyOf(ip netip.Addr) key {
	ip = ip.Unmap()
	k := key(ip.As16())
	if ip.Is6() {
		clear(k[8:]) // a client holds a whole /64
	}
	return k
}

// limiter is the per-client GCRA of the package comment. Times are nanoseconds since epoch.
type limiter struct {
	epoch   time.Time
	refill  int64 // what a failure costs
	tol     int64 // (burst-1) × refill: the debt at which a client may still try
	maxDebt int64
	max     int

	mu      sync.Mutex
	clients map[key]*client
	queue   debtQueue // the same clients, earliest tat first
}

// client is one tracked client.
type client struct {
	key     key
	tat     int64         // when its debt is paid off, reservations in flight included
	index   int           // position in the queue
	pending int           // reservations whose verdict is not in yet
	settled chan struct{} // closed when one of them settles; nil until someone waits
}

func newLimiter(burst int, refill time.Duration, max int, epoch time.Time) *limiter {
	return &limiter{
		epoch:   epoch,
		refill:  int64(refill),
		tol:     int64(burst-1) * int64(refill),
		maxDebt: int64(MaxDebt),
		max:     max,
		clients: make(map[key]*client),
	}
}

// since converts now to the limiter's clock (monotonic when now has a monotonic reading).
func (l *limiter) since(now time.Time) int64 {
	return int64(now.Sub(l.epoch))
}

func (l *limiter) allow(k key, t int64) bool {
	l.mu.Lock()
	c := l.clients[k]
	ok := c == nil || c.tat-t <= l.tol
	l.mu.Unlock()
	return ok
}

func (l *limiter) retryAfter(k key, t int64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.clients[k]
	if c == nil {
		return 0
	}
	return time.Duration(max(c.tat-l.tol-t, 0))
}

// fail charges one failure to k at time t.
func (l *limiter) fail(k key, t int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.charge(l.track(k, t), t)
}

// track returns k's entry, made if needed, after dropping the clients paid off at t. Callers
// hold l.mu.
func (l *limiter) track(k key, t int64) *client {
	for len(l.queue) > 0 && l.queue[0].tat <= t {
		// Paid off: as good as never seen.
		delete(l.clients, heap.Pop(&l.queue).(*client).key)
	}
	c := l.clients[k]
	if c == nil {
		if len(l.clients) >= l.max {
			delete(l.clients, heap.Pop(&l.queue).(*client).key) // the nearest to paid off
		}
		c = &client{key: k, tat: t}
		l.clients[k] = c
		heap.Push(&l.queue, c)
	}
	return c
}

// charge adds one failure to c at t and returns what it cost (a refill, less at the debt
// cap). Callers hold l.mu.
func (l *limiter) charge(c *client, t int64) int64 {
	before := max(c.tat, t)
	c.tat = min(before+l.refill, t+l.maxDebt)
	heap.Fix(&l.queue, c.index)
	return c.tat - before
}

// reserve charges k one failure at t if it may try now (see Guard.Reserve). While it may not
// but has reservations in flight, it waits until one of them settles and tries again, since a
// success gives its charge back; it gives up when done is closed.
func (l *limiter) reserve(k key, t int64, done <-chan struct{}) (*client, int64, bool) {
	l.mu.Lock()
	for {
		c := l.clients[k]
		if c == nil || c.tat-t <= l.tol {
			c = l.track(k, t)
			cost := l.charge(c, t)
			c.pending++
			l.mu.Unlock()
			return c, cost, true
		}
		if c.pending == 0 {
			l.mu.Unlock()
			return nil, 0, false
		}
		if c.settled == nil {
			c.settled = make(chan struct{})
		}
		settled := c.settled
		l.mu.Unlock()
		select {
		case <-settled:
		case <-done:
			return nil, 0, false
		}
		l.mu.Lock()
	}
}

// settle ends a reservation of c made at time at: a success gives its cost back, a failure
// keeps it. Waiters for c's reservations try again.
func (l *limiter) settle(c *client, at, cost int64, success bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c.pending--
	if success && l.clients[c.key] == c {
		// Only while c is still tracked: a client dropped meanwhile had paid off (or was
		// evicted), and its successor must not be credited.
		c.tat -= cost
		if c.pending == 0 && c.tat <= at {
			// Paid off with nothing in flight, as a client that never failed: forget it now
			// rather than at the next failure, so that successes do not fill the table.
			heap.Remove(&l.queue, c.index)
			delete(l.clients, c.key)
		} else {
			heap.Fix(&l.queue, c.index)
		}
	}
	if c.settled != nil {
		close(c.settled)
		c.settled = nil
	}
}

// debtQueue is a min-heap of clients on tat (container/heap).
type debtQueue []*client

func (q debtQueue) Len() int           { return len(q) }
func (q debtQueue) Less(i, j int) bool { return q[i].tat < q[j].tat }
func (q debtQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index = i
	q[j].index = j
}

func (q *debtQueue) Push(x any) {
	c := x.(*client)
	c.index = len(*q)
	*q = append(*q, c)
}

func (q *debtQueue) Pop() any {
	old := *q
	n := len(old) - 1
	c := old[n]
	old[n] = nil
	*q = old[:n]
	return c
}
