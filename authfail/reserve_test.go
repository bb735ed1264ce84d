package authfail

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReserveParallelGuesses: 100 concurrent checks that all fail get exactly Burst checks;
// the rest are refused before checking. Recording the failure after the check (Allow, then
// Fail) let 93 of 100 through.
func TestReserveParallelGuesses(t *testing.T) {
	g, path := newGuard(t, Options{})
	client := netip.MustParseAddrPort("203.0.113.7:1")
	var checked, refused atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 100 {
		wg.Go(func() {
			<-start
			r, ok := g.Reserve(context.Background(), client.Addr(), t0)
			if !ok {
				refused.Add(1)
				return
			}
			checked.Add(1)
			if err := r.Fail(client, "u@pbs", "invalid credentials", t0); err != nil {
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	if checked.Load() != DefaultBurst || refused.Load() != 100-DefaultBurst {
		t.Errorf("100 parallel failing checks: %d checked, %d refused; want %d and %d", checked.Load(), refused.Load(), DefaultBurst, 100-DefaultBurst)
	}
	if n := strings.Count(readLog(t, path), "authentication failure"); n != DefaultBurst {
		t.Errorf("auth log has %d lines; want %d", n, DefaultBurst)
	}
	if g.Allow(client.Addr(), t0) {
		t.Error("Allow after the burst of reserved failures = true; want false")
	}
}

// TestReserveParallelSuccesses: 100 concurrent checks that all succeed are never refused: a
// check over the allowance waits for those in flight, which give their charge back.
func TestReserveParallelSuccesses(t *testing.T) {
	g, path := newGuard(t, Options{})
	ip := netip.MustParseAddr("203.0.113.7")
	var refused atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 100 {
		wg.Go(func() {
			<-start
			r, ok := g.Reserve(context.Background(), ip, t0)
			if !ok {
				refused.Add(1)
				return
			}
			r.Release()
		})
	}
	close(start)
	wg.Wait()
	if refused.Load() != 0 {
		t.Errorf("%d of 100 parallel successful checks refused; want 0", refused.Load())
	}
	if d := g.RetryAfter(ip, t0); d != 0 || !g.Allow(ip, t0) {
		t.Errorf("after 100 successes: RetryAfter %v, Allow %v; want 0, true (every charge given back)", d, g.Allow(ip, t0))
	}
	if log := readLog(t, path); log != "" {
		t.Errorf("successes wrote to the auth log: %q", log)
	}
}

// TestReserveSettles: a released reservation costs nothing, a failed one a refill, and a client
// over its allowance with nothing in flight is refused at once.
func TestReserveSettles(t *testing.T) {
	g, _ := newGuard(t, Options{Burst: 2, Refill: 10 * time.Second})
	client := netip.MustParseAddrPort("203.0.113.7:1")
	ctx := context.Background()
	r, ok := g.Reserve(ctx, client.Addr(), t0)
	if !ok {
		t.Fatal("first Reserve refused")
	}
	if got := g.RetryAfter(client.Addr(), t0); got != 0 {
		t.Errorf("RetryAfter with one reservation = %v; want 0", got)
	}
	r.Release()
	for i := range 2 {
		r, ok := g.Reserve(ctx, client.Addr(), t0)
		if !ok {
			t.Fatalf("Reserve %d after a release refused", i)
		}
		r.Fail(client, "u@pbs", "x", t0)
	}
	if _, ok := g.Reserve(ctx, client.Addr(), t0); ok {
		t.Error("Reserve after Burst failures = true; want false")
	}
	if got := g.RetryAfter(client.Addr(), t0); got != 10*time.Second {
		t.Errorf("RetryAfter after Burst reserved failures = %v; want 10s", got)
	}
	var zero Reservation
	zero.Release()
	if err := zero.Fail(client, "u", "x", t0); err != nil {
		t.Errorf("zero Reservation.Fail = %v; want nil", err)
	}
}

// TestReserveWaitEnds: a check waiting for the client's checks in flight gives up when its
// context ends, and one waiting for a failure is refused once that failure settles.
func TestReserveWaitEnds(t *testing.T) {
	g, _ := newGuard(t, Options{Burst: 1})
	client := netip.MustParseAddrPort("203.0.113.7:1")
	held, ok := g.Reserve(context.Background(), client.Addr(), t0)
	if !ok {
		t.Fatal("first Reserve refused")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok := g.Reserve(ctx, client.Addr(), t0); ok {
		t.Error("Reserve with an ended context while another is in flight = true; want false")
	}
	done := make(chan bool)
	go func() {
		_, ok := g.Reserve(context.Background(), client.Addr(), t0)
		done <- ok
	}()
	// The waiter may or may not be waiting yet: either way, once the failure settles it is
	// refused.
	held.Fail(client, "u@pbs", "x", t0)
	if <-done {
		t.Error("Reserve waiting for a reservation that failed = true; want false")
	}
}

func BenchmarkReserveRelease(b *testing.B) {
	g, _ := newGuard(b, Options{})
	ip := netip.MustParseAddr("203.0.113.7")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		r, _ := g.Reserve(ctx, ip, t0)
		r.Release()
	}
}

// TestReserveForgetsPaidOff: a client whose checks all succeeded is not kept in the table.
func TestReserveForgetsPaidOff(t *testing.T) {
	g, _ := newGuard(t, Options{})
	for i := range 1000 {
		ip := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		r, ok := g.Reserve(context.Background(), ip, t0)
		if !ok {
			t.Fatalf("Reserve(%s) refused", ip)
		}
		r.Release()
	}
	if n, q := len(g.lim.clients), len(g.lim.queue); n != 0 || q != 0 {
		t.Errorf("after 1000 clients' successes %d clients tracked (queue %d); want 0", n, q)
	}
}
