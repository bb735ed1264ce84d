package ticket

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestCacheHit(t *testing.T) {
	s := goldenSigner(t)
	c := NewCache(s.Public(), 0)
	for i := range 3 {
		u, issued, err := c.VerifyUser(goldenUser, "PBS", 1, t0.Add(time.Minute))
		if err != nil || u != "root@pam" || !issued.Equal(t0) {
			t.Fatalf("call %d: VerifyUser = %q, %v, %v; want root@pam, %v, nil", i, u, issued, err, t0)
		}
		if c.len() != 1 {
			t.Fatalf("call %d: %d entries; want 1", i, c.len())
		}
	}
	// Served from the cache: swapping the verifier behind the cache's back (not SetVerifier)
	// does not change the answer.
	c.mu.Lock()
	c.v = newSigner(t).Public()
	c.mu.Unlock()
	if u, _, err := c.VerifyUser(goldenUser, "PBS", 1, t0); err != nil || u != "root@pam" {
		t.Errorf("VerifyUser(cached) = %q, %v; want root@pam, nil from the cache", u, err)
	}
}

func TestCacheStillChecksTime(t *testing.T) {
	c := NewCache(goldenSigner(t).Public(), 0)
	if _, _, err := c.VerifyUser(goldenUser, "PBS", 1, t0); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		now  time.Time
		want error
	}{
		{t0.Add(FullLifetime), nil},
		{t0.Add(FullLifetime + time.Second), ErrExpired},
		{t0.Add(-FullMaxFuture), nil},
		{t0.Add(-FullMaxFuture - time.Second), ErrFuture},
		{t0, nil},
	}
	for _, tt := range tests {
		_, _, err := c.VerifyUser(goldenUser, "PBS", 1, tt.now)
		if !errors.Is(err, tt.want) || (err != nil && !wrapsOne(err)) {
			t.Errorf("cached VerifyUser at %+d s = %v; want %v", tt.now.Unix()-goldenTime, err, tt.want)
		}
		if c.len() != 1 {
			t.Errorf("cached VerifyUser at %+d s left %d entries; want 1", tt.now.Unix()-goldenTime, c.len())
		}
	}
}

func TestCacheOnlyGoodTickets(t *testing.T) {
	s := goldenSigner(t)
	c := NewCache(s.Public(), 0)
	tfa := mustSign(t, s, "PBS", "!tfa!{}", "root@pam", t0)
	for _, tk := range []string{"garbage", replaceSig(goldenUser, "AAAA"), tfa} {
		if _, _, err := c.VerifyUser(tk, "PBS", 1, t0); err == nil {
			t.Errorf("VerifyUser(%.30q) = nil; want an error", tk)
		}
	}
	if _, _, err := c.VerifyUser(goldenUser, "PBS", 1, t0.Add(3*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Errorf("VerifyUser(expired, uncached) = %v; want ErrExpired", err)
	}
	if c.len() != 0 {
		t.Errorf("%d entries after only failures; want 0", c.len())
	}
	// A cached ticket is still refused for another prefix.
	if _, _, err := c.VerifyUser(goldenUser, "PBS", 1, t0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.VerifyUser(goldenUser, "PVE", 1, t0); !errors.Is(err, ErrPrefix) {
		t.Errorf("VerifyUser(cached ticket, other prefix) = %v; want ErrPrefix", err)
	}
}

func TestCacheKeysGeneration(t *testing.T) {
	old, repl := goldenSigner(t), newSigner(t)
	oldTk := goldenUser
	newTk, err := repl.SignUser("PBS", "root@pam", t0)
	if err != nil {
		t.Fatal(err)
	}
	c := NewCache(old.Public(), 0)
	if _, _, err := c.VerifyUser(oldTk, "PBS", 7, t0); err != nil {
		t.Fatal(err)
	}
	// Another generation drops every entry, even before the verifier is replaced.
	if _, _, err := c.VerifyUser("garbage", "PBS", 8, t0); err == nil {
		t.Fatal("VerifyUser(garbage) = nil")
	}
	if c.len() != 0 {
		t.Errorf("%d entries after a generation change; want 0", c.len())
	}
	// The keys are replaced: the caller loads the new public key.
	c.SetVerifier(repl.Public())
	if _, _, err := c.VerifyUser(oldTk, "PBS", 8, t0); !errors.Is(err, ErrSignature) {
		t.Errorf("VerifyUser(ticket of the replaced key) = %v; want ErrSignature", err)
	}
	if u, _, err := c.VerifyUser(newTk, "PBS", 8, t0); err != nil || u != "root@pam" {
		t.Errorf("VerifyUser(ticket of the new key) = %q, %v; want root@pam, nil", u, err)
	}
	if c.len() != 1 {
		t.Errorf("%d entries; want 1", c.len())
	}
	// SetVerifier alone drops the entries too.
	c.SetVerifier(old.Public())
	if c.len() != 0 {
		t.Errorf("%d entries after SetVerifier; want 0", c.len())
	}
	if _, _, err := c.VerifyUser(newTk, "PBS", 8, t0); !errors.Is(err, ErrSignature) {
		t.Errorf("VerifyUser(new ticket) after SetVerifier(old) = %v; want ErrSignature", err)
	}
}

// TestCacheRacingStore checks that a verification made with a verifier or at a generation
// that was replaced meanwhile is not stored.
func TestCacheRacingStore(t *testing.T) {
	v1, v2 := goldenSigner(t).Public(), newSigner(t).Public()
	c := NewCache(v1, 0)
	c.reset(1)
	c.SetVerifier(v2)
	c.store(v1, 1, goldenUser, cacheEntry{prefix: "PBS", userid: "root@pam", issued: goldenTime})
	if c.len() != 0 {
		t.Error("stored a result of a replaced verifier")
	}
	c.reset(2)
	c.store(v2, 1, goldenUser, cacheEntry{prefix: "PBS", userid: "root@pam", issued: goldenTime})
	if c.len() != 0 {
		t.Error("stored a result of an older generation")
	}
	c.store(v2, 2, "x", cacheEntry{})
	if c.len() != 1 {
		t.Error("did not store a current result")
	}
}

func TestCacheBounded(t *testing.T) {
	s := newSigner(t)
	c := NewCache(s.Public(), 3)
	for i := range 10 {
		tk, err := s.SignUser("PBS", fmt.Sprintf("user%d@pbs", i), t0)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.VerifyUser(tk, "PBS", 1, t0); err != nil {
			t.Fatal(err)
		}
		if n := c.len(); n > 3 || n < 1 {
			t.Fatalf("after %d tickets: %d entries; want 1..3", i+1, n)
		}
	}
	if NewCache(s.Public(), -1).size != DefaultCacheSize {
		t.Errorf("NewCache(v, -1) size = %d; want %d", NewCache(s.Public(), -1).size, DefaultCacheSize)
	}
}

func TestCacheHitAllocs(t *testing.T) {
	c := NewCache(goldenSigner(t).Public(), 0)
	now := t0.Add(time.Minute)
	if _, _, err := c.VerifyUser(goldenUser, "PBS", 1, now); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, _, err := c.VerifyUser(goldenUser, "PBS", 1, now); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("cache hit: %v allocations; want 0", allocs)
	}
}

func TestCacheConcurrent(t *testing.T) {
	s := newSigner(t)
	c := NewCache(s.Public(), 8)
	var tickets []string
	for i := range 16 {
		tk, err := s.SignUser("PBS", fmt.Sprintf("u%d@pbs", i), t0)
		if err != nil {
			t.Fatal(err)
		}
		tickets = append(tickets, tk)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				tk := tickets[(g+i)%len(tickets)]
				gen := uint64(1 + i/100) // one generation change midway
				u, _, err := c.VerifyUser(tk, "PBS", gen, t0)
				if want := fmt.Sprintf("u%d@pbs", (g+i)%len(tickets)); err != nil || u != want {
					t.Errorf("VerifyUser = %q, %v; want %q, nil", u, err, want)
					return
				}
				if i == 150 && g == 0 {
					c.SetVerifier(s.Public())
				}
			}
		})
	}
	wg.Wait()
}

func TestCacheStatsAndHits(t *testing.T) {
	c := NewCache(goldenSigner(t).Public(), 0)
	now := t0.Add(time.Minute)
	tests := []struct {
		name    string
		ticket  string
		keysGen uint64
		now     time.Time
		hit     bool
		ok      bool
	}{
		{"first use", goldenUser, 1, now, false, true},
		{"second use", goldenUser, 1, now, true, true},
		{"cached but expired", goldenUser, 1, now.Add(FullLifetime), true, false},
		{"bad ticket", "PBS:bad", 1, now, false, false},
		{"keys generation moved", goldenUser, 2, now, false, true},
	}
	for _, tt := range tests {
		_, _, hit, err := c.VerifyUserHit(tt.ticket, "PBS", tt.keysGen, tt.now)
		if hit != tt.hit || (err == nil) != tt.ok {
			t.Errorf("%s: VerifyUserHit = hit %v, %v; want hit %v, ok %v", tt.name, hit, err, tt.hit, tt.ok)
		}
	}
	if got, want := c.Stats(), (CacheStats{Misses: 3}); got != want {
		t.Errorf("Stats() = %+v; want %+v", got, want)
	}
}
