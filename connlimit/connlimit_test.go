package connlimit

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// server is a capped listener on 127.0.0.1:0 whose Accept runs in a goroutine, handing each
// admitted connection to accepted.
type server struct {
	l        *Limiter
	ln       net.Listener
	accepted chan net.Conn
	done     chan error // Accept's error, once it stops
}

func serve(t *testing.T, o Options) *server {
	t.Helper()
	l, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{l: l, ln: l.Listener(raw), accepted: make(chan net.Conn, 100), done: make(chan error, 1)}
	go func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				s.done <- err
				return
			}
			s.accepted <- c
		}
	}()
	t.Cleanup(func() {
		s.ln.Close()
		<-s.done
		for {
			select {
			case c := <-s.accepted:
				c.Close()
			default:
				return
			}
		}
	})
	return s
}

// dial connects from the loopback address from (Linux routes all of 127/8 to lo).
func (s *server) dial(t *testing.T, from string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatalf("dialing from %s: %v", from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// admitted dials from and returns the server's side of the connection, failing the test
// unless Accept returns it.
func (s *server) admitted(t *testing.T, from string) net.Conn {
	t.Helper()
	c := s.dial(t, from)
	select {
	case sc := <-s.accepted:
		if sc.RemoteAddr().String() != c.LocalAddr().String() {
			t.Fatalf("Accept returned %s; want the connection from %s", sc.RemoteAddr(), c.LocalAddr())
		}
		return sc
	case <-time.After(10 * time.Second):
		t.Fatalf("connection from %s not accepted within 10 s", c.LocalAddr())
		return nil
	}
}

// refused dials from and checks that the server closes the connection with a reset and that
// Accept does not return it; the next connection Accept returns is checked by the caller.
func (s *server) refused(t *testing.T, from string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", s.ln.Addr().String())
	if errors.Is(err, syscall.ECONNRESET) {
		return // reset before the dial saw the connection established
	}
	if err != nil {
		t.Fatalf("dialing from %s: %v", from, err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || err == io.EOF || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("connection from %s over the cap: Read = %v; want a reset", from, err)
	}
}

func TestPerClient(t *testing.T) {
	s := serve(t, Options{PerClient: 2})
	s.admitted(t, "127.0.0.2")
	s.admitted(t, "127.0.0.2")
	s.refused(t, "127.0.0.2")
	// Another client is served while 127.0.0.2 sits at its cap: Accept went on.
	s.admitted(t, "127.0.0.3")
	if got := s.l.Refused(PerClient); got != 1 {
		t.Errorf("Refused(PerClient) = %d; want 1", got)
	}
	if got := s.l.Refused(Total); got != 0 {
		t.Errorf("Refused(Total) = %d; want 0", got)
	}
	if got := s.l.Open(); got != 3 {
		t.Errorf("Open() = %d; want 3", got)
	}
}

func TestTotal(t *testing.T) {
	s := serve(t, Options{Max: 3, PerClient: 2})
	s.admitted(t, "127.0.0.2")
	s.admitted(t, "127.0.0.3")
	first := s.admitted(t, "127.0.0.4")
	s.refused(t, "127.0.0.5")
	s.refused(t, "127.0.0.2")
	if got := s.l.Refused(Total); got != 2 {
		t.Errorf("Refused(Total) = %d; want 2", got)
	}
	first.Close()
	s.admitted(t, "127.0.0.5")
	if got := s.l.Open(); got != 3 {
		t.Errorf("Open() = %d; want 3", got)
	}
}

// TestReleaseOnce: closing an admitted connection frees its slot once, however often and from
// however many goroutines it is closed.
func TestReleaseOnce(t *testing.T) {
	s := serve(t, Options{Max: 10, PerClient: 1})
	c := s.admitted(t, "127.0.0.2")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { c.Close() })
	}
	wg.Wait()
	c.Close()
	if got := s.l.Open(); got != 0 {
		t.Fatalf("after closing one connection 9 times, Open() = %d; want 0", got)
	}
	// Released more than once, the count would be below zero and admit two now.
	s.admitted(t, "127.0.0.2")
	s.refused(t, "127.0.0.2")
	s.l.mu.Lock()
	n := len(s.l.clients)
	s.l.mu.Unlock()
	if n != 1 {
		t.Errorf("%d clients tracked; want 1", n)
	}
}

// TestExempt: a trusted proxy is not held to PerClient, but counts toward Max.
func TestExempt(t *testing.T) {
	s := serve(t, Options{Max: 4, PerClient: 1, Exempt: []netip.Prefix{netip.MustParsePrefix("::ffff:127.0.0.2/128")}})
	for range 3 {
		s.admitted(t, "127.0.0.2")
	}
	s.admitted(t, "127.0.0.3")
	s.refused(t, "127.0.0.2")
	if got := s.l.Refused(Total); got != 1 {
		t.Errorf("Refused(Total) = %d; want 1 (the exempt peer at the global cap)", got)
	}
	if got := s.l.Refused(PerClient); got != 0 {
		t.Errorf("Refused(PerClient) = %d; want 0", got)
	}
}

// TestUncapped: zeros turn the caps off.
func TestUncapped(t *testing.T) {
	s := serve(t, Options{})
	for range 20 {
		s.admitted(t, "127.0.0.2")
	}
	if got := s.l.Open(); got != 20 {
		t.Errorf("Open() = %d; want 20", got)
	}
}

func TestAcceptError(t *testing.T) {
	s := serve(t, Options{Max: 1})
	s.ln.Close()
	if err := <-s.done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept on a closed listener = %v; want net.ErrClosed", err)
	}
	s.done <- nil // for the cleanup
}

func TestNew(t *testing.T) {
	for _, tt := range []struct {
		name string
		o    Options
		ok   bool
	}{
		{"zero", Options{}, true},
		{"caps", Options{Max: 10, PerClient: 2}, true},
		{"negative max", Options{Max: -1}, false},
		{"negative per client", Options{PerClient: -1}, false},
		{"invalid prefix", Options{Exempt: []netip.Prefix{{}}}, false},
	} {
		if _, err := New(tt.o); (err == nil) != tt.ok {
			t.Errorf("New(%s) = %v; want ok %v", tt.name, err, tt.ok)
		}
	}
}

func TestKeyOf(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		same bool
	}{
		{"192.0.2.1", "192.0.2.1", true},
		{"192.0.2.1", "::ffff:192.0.2.1", true},
		{"192.0.2.1", "192.0.2.2", false},
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9", true}, // one /64
		{"2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"192.0.2.1", "::c000:201", false}, // IPv4-compatible is plain IPv6
		{"0.0.0.0", "::", false},
	} {
		a, b := netip.MustParseAddr(tt.a), netip.MustParseAddr(tt.b)
		if got := keyOf(a) == keyOf(b); got != tt.same {
			t.Errorf("keyOf(%s) == keyOf(%s) = %v; want %v", tt.a, tt.b, got, tt.same)
		}
	}
}

// TestExemptPrefixes: exempt prefixes match unmapped peers, mapped or not in the options.
func TestExemptPrefixes(t *testing.T) {
	l, err := New(Options{Exempt: []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104"), netip.MustParsePrefix("2001:db8::/32")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"10.1.2.3", true},
		{"11.0.0.1", false},
		{"2001:db8:5::1", true},
		{"2001:db9::1", false},
	} {
		if got := l.exempt(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("exempt(%s) = %v; want %v", tt.addr, got, tt.want)
		}
	}
}

// TestLogRateLimited: the first refusal is logged at once, later ones at most once per
// LogEvery, each line counting the refusals since the previous one.
func TestLogRateLimited(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1_700_000_000, 0)
	l, err := New(Options{PerClient: 1, Log: slog.New(slog.NewTextHandler(&buf, nil)), LogEvery: 10 * time.Second,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("192.0.2.7")
	if _, _, ok := l.Acquire(a); !ok {
		t.Fatal("first Acquire refused")
	}
	for _, step := range []time.Duration{0, time.Second, 2 * time.Second, 9 * time.Second, 2 * time.Second, time.Second} {
		now = now.Add(step)
		if _, r, ok := l.Acquire(a); ok || r != PerClient {
			t.Fatalf("Acquire over the cap = %v, %v; want refused, per_client", r, ok)
		}
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{"msg=\"connections refused\" reason=per_client client=192.0.2.7 refused=1 max=0 per_client=1",
		"refused=3"} // at 0 s; at 12 s for 1, 3 and 12 s
	if len(lines) != 2 {
		t.Fatalf("6 refusals over 15 s logged %d lines; want 2:\n%s", len(lines), buf.String())
	}
	for i, line := range lines {
		if !strings.Contains(line, want[i]) || !strings.Contains(line, "reason=per_client") || !strings.Contains(line, "client=192.0.2.7") {
			t.Errorf("line %d = %q; want %s, reason=per_client, client=192.0.2.7", i, line, want[i])
		}
	}
	if got := l.Refused(PerClient); got != 6 {
		t.Errorf("Refused(PerClient) = %d; want 6", got)
	}
}

// TestAcquire: the slots of requests in flight, as a server takes them: released once however
// often release is called, per client and in all; an address that is not one counts in all only.
func TestAcquire(t *testing.T) {
	l, err := New(Options{Max: 3, PerClient: 2, What: "requests", Exempt: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("192.0.2.1")
	r1, _, ok1 := l.Acquire(a)
	_, _, ok2 := l.Acquire(netip.MustParseAddr("::ffff:192.0.2.1"))
	_, why, ok3 := l.Acquire(a)
	if !ok1 || !ok2 || ok3 || why != PerClient {
		t.Fatalf("three Acquire from one client = %v, %v, %v (%v); want two then per_client", ok1, ok2, ok3, why)
	}
	r1()
	r1()
	if got := l.Open(); got != 1 {
		t.Fatalf("after releasing one of two twice, Open() = %d; want 1", got)
	}
	if _, _, ok := l.Acquire(netip.Addr{}); !ok {
		t.Fatal("Acquire of no address refused under the caps")
	}
	if _, _, ok := l.Acquire(netip.MustParseAddr("10.1.1.1")); !ok {
		t.Fatal("Acquire of an exempt address refused under the global cap")
	}
	if _, why, ok := l.Acquire(netip.Addr{}); ok || why != Total {
		t.Fatalf("Acquire over the global cap = %v, %v; want refused, total", why, ok)
	}
	if got := l.Refused(PerClient) + l.Refused(Total); got != 2 {
		t.Errorf("refusals = %d; want 2", got)
	}
}
