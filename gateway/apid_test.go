package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeApid is an HTTP server on a unix socket standing in for apid: /fast answers at once,
// /slow waits until released (or the server stops), /ping answers unless frozen, /broken
// drops the connection. Nothing sleeps: every wait is on a channel.
type fakeApid struct {
	sock    string
	frozen  atomic.Bool   // /ping blocks too
	pings   atomic.Int64  // /ping requests received
	pinged  chan struct{} // a token per /ping received
	arrived chan struct{} // a token per /slow received
	release chan struct{} // closed: /slow answers
	stop    chan struct{} // closed at cleanup: every handler returns
}

func newFakeApid(t testing.TB) *fakeApid {
	t.Helper()
	f := &fakeApid{
		sock: filepath.Join(t.TempDir(), "apid.sock"), pinged: make(chan struct{}, 1000), arrived: make(chan struct{}, 1000),
		release: make(chan struct{}), stop: make(chan struct{}),
	}
	ln, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api2/json/fast", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"data":1}`) })
	mux.HandleFunc("/api2/json/slow", func(w http.ResponseWriter, r *http.Request) {
		f.arrived <- struct{}{}
		select {
		case <-f.release:
			io.WriteString(w, `{"data":"late"}`)
		case <-f.stop:
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/api2/json/ping", func(w http.ResponseWriter, r *http.Request) {
		f.pings.Add(1)
		f.pinged <- struct{}{}
		if f.frozen.Load() {
			select {
			case <-f.stop:
			case <-r.Context().Done():
			}
			return
		}
		io.WriteString(w, `{"data":{"pong":true}}`)
	})
	mux.HandleFunc("/api2/json/broken", func(w http.ResponseWriter, r *http.Request) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.Close()
		}
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() {
		close(f.stop)
		srv.Close()
	})
	return f
}

// client is an HTTP client to sock through an apidTransport with these bounds; answered
// counts the answers it reports.
func apidClient(sock string, timeout, maxWait time.Duration, answered *atomic.Int64) *http.Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}
	return &http.Client{Transport: &apidTransport{inner: tr, timeout: timeout, maxWait: maxWait, answered: func() { answered.Add(1) }}}
}

func get(c *http.Client, ctx context.Context, path string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://apid/api2/json/"+path, nil)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestApidTransport: each bound of a call to apid, with a fake apid whose handlers wait on
// channels. The durations are the bounds under test, not synchronization.
func TestApidTransport(t *testing.T) {
	const short, long = 20 * time.Millisecond, time.Minute
	t.Run("answer", func(t *testing.T) {
		f := newFakeApid(t)
		var answered atomic.Int64
		if body, err := get(apidClient(f.sock, short, long, &answered), context.Background(), "fast"); err != nil || body != `{"data":1}` {
			t.Fatalf("GET fast = %q, %v", body, err)
		}
		if answered.Load() != 1 || f.pings.Load() != 0 {
			t.Errorf("answered %d, pings %d; want 1, 0", answered.Load(), f.pings.Load())
		}
	})
	t.Run("slow but alive", func(t *testing.T) {
		// The call outlives ten times the timeout: every check is answered, so it waits on.
		f := newFakeApid(t)
		go func() {
			for range 3 {
				<-f.pinged
			}
			close(f.release)
		}()
		var answered atomic.Int64
		body, err := get(apidClient(f.sock, short, long, &answered), context.Background(), "slow")
		if err != nil || body != `{"data":"late"}` {
			t.Fatalf("GET slow with apid alive = %q, %v; want the late answer", body, err)
		}
		if answered.Load() != 1 || f.pings.Load() < 3 {
			t.Errorf("answered %d, pings %d; want 1, at least 3", answered.Load(), f.pings.Load())
		}
	})
	t.Run("alive past max wait", func(t *testing.T) {
		f := newFakeApid(t)
		var answered atomic.Int64
		_, err := get(apidClient(f.sock, short, 5*short, &answered), context.Background(), "slow")
		var ae *apidError
		if !errors.As(err, &ae) || ae.reason != apidTimeout || ae.after != 5*short {
			t.Fatalf("GET slow past max wait = %v; want an apid timeout after %v", err, 5*short)
		}
		if code, msg := ae.answer(); code != 503 || msg != "authentication service (apid) did not answer within 100ms" {
			t.Errorf("answer = %d %q", code, msg)
		}
	})
	t.Run("frozen", func(t *testing.T) {
		f := newFakeApid(t)
		f.frozen.Store(true)
		var answered atomic.Int64
		_, err := get(apidClient(f.sock, short, long, &answered), context.Background(), "slow")
		var ae *apidError
		if !errors.As(err, &ae) || ae.reason != apidTimeout || ae.after != short || !strings.Contains(err.Error(), "liveness check") {
			t.Fatalf("GET slow with apid frozen = %v; want an apid timeout after %v, the liveness check failed", err, short)
		}
		if code, msg := ae.answer(); code != 503 || msg != "authentication service (apid) did not answer within 20ms" {
			t.Errorf("answer = %d %q", code, msg)
		}
		if answered.Load() != 0 || f.pings.Load() != 1 {
			t.Errorf("answered %d, pings %d; want 0, 1", answered.Load(), f.pings.Load())
		}
	})
	t.Run("frozen, calls share a check", func(t *testing.T) {
		// Ten calls wait at once; without sharing, each would send its own check.
		const calls = 10
		f := newFakeApid(t)
		f.frozen.Store(true)
		var answered atomic.Int64
		c := apidClient(f.sock, time.Second, long, &answered)
		var wg sync.WaitGroup
		errs := make(chan error, calls)
		for range calls {
			wg.Go(func() {
				_, err := get(c, context.Background(), "slow")
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			var ae *apidError
			if !errors.As(err, &ae) || ae.reason != apidTimeout {
				t.Errorf("a call to a frozen apid = %v; want an apid timeout", err)
			}
		}
		if n := f.pings.Load(); n >= calls {
			t.Errorf("%d calls to a frozen apid sent %d checks; want them shared", calls, n)
		} else {
			t.Logf("%d calls to a frozen apid sent %d checks", calls, n)
		}
	})
	t.Run("client gone", func(t *testing.T) {
		f := newFakeApid(t)
		f.frozen.Store(true)
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			<-f.arrived
			cancel()
		}()
		var answered atomic.Int64
		_, err := get(apidClient(f.sock, long, long, &answered), ctx, "slow")
		var ae *apidError
		if errors.As(err, &ae) || !errors.Is(err, context.Canceled) {
			t.Fatalf("GET slow, client gone = %v; want context.Canceled and no apid failure", err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		var answered atomic.Int64
		_, err := get(apidClient(filepath.Join(t.TempDir(), "none.sock"), short, long, &answered), context.Background(), "fast")
		var ae *apidError
		if !errors.As(err, &ae) || ae.reason != apidUnreachable {
			t.Fatalf("GET with no socket = %v; want apid unreachable", err)
		}
		if code, msg := ae.answer(); code != 503 || msg != "authentication service (apid) unreachable" {
			t.Errorf("answer = %d %q", code, msg)
		}
	})
	t.Run("broken", func(t *testing.T) {
		f := newFakeApid(t)
		var answered atomic.Int64
		_, err := get(apidClient(f.sock, short, long, &answered), context.Background(), "broken")
		var ae *apidError
		if !errors.As(err, &ae) || ae.reason != apidBroken {
			t.Fatalf("GET broken = %v; want apid broken", err)
		}
	})
	t.Run("client body too large", func(t *testing.T) {
		f := newFakeApid(t)
		var answered atomic.Int64
		body := http.MaxBytesReader(httptest.NewRecorder(), io.NopCloser(strings.NewReader(strings.Repeat("x", 100))), 10)
		req, _ := http.NewRequest(http.MethodPost, "http://apid/api2/json/fast", body)
		req.ContentLength = -1
		_, err := apidClient(f.sock, short, long, &answered).Do(req)
		var be *clientBodyError
		var mb *http.MaxBytesError
		if !errors.As(err, &be) || !errors.As(err, &mb) {
			t.Fatalf("POST with a body over the limit = %v; want the client's body error", err)
		}
	})
}

// TestApidIncidents: one line when calls start failing, one more at most every 10 s while they
// go on, one when an answer comes, with the counts; the clock is injected.
func TestApidIncidents(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1_800_000_000, 0)
	in := &apidIncidents{log: slog.New(slog.NewTextHandler(&buf, nil)), now: func() time.Time { return now }}
	timeout := &apidError{reason: apidTimeout, after: time.Second}
	lines := func() []string { return strings.Split(strings.TrimSpace(buf.String()), "\n") }
	in.answered() // nothing failed: nothing to say
	if buf.Len() != 0 {
		t.Fatalf("an answer with nothing failing logged %q", buf.String())
	}
	for i := range 100 {
		now = now.Add(90 * time.Millisecond) // 100 failures over 9 s
		in.failure(timeout, "/api2/json/access/ticket")
		if i == 0 && !strings.Contains(buf.String(), `msg="apid calls failing" reason=timeout path=/api2/json/access/ticket`) {
			t.Fatalf("first failure logged %q", buf.String())
		}
	}
	if n := len(lines()); n != 1 {
		t.Fatalf("100 failures in 9 s logged %d lines; want 1:\n%s", n, buf.String())
	}
	now = now.Add(1100 * time.Millisecond)
	in.failure(&apidError{reason: apidUnreachable}, "/api2/json/access/users")
	if l := lines(); len(l) != 2 || !strings.Contains(l[1], `msg="apid calls still failing" reason=unreachable failed=101 for=10.01s`) {
		t.Fatalf("a failure 10 s after the first logged %q", l)
	}
	in.answered()
	in.answered()
	if l := lines(); len(l) != 3 || !strings.Contains(l[2], `msg="apid calls answered again" failed=101 for=10.01s`) {
		t.Fatalf("answers after the failures logged %q", l)
	}
	in.failure(timeout, "/x")
	if l := lines(); len(l) != 4 || !strings.Contains(l[3], `msg="apid calls failing"`) {
		t.Fatalf("a failure after the answer logged %q", l)
	}
}

// TestMainRefusesApidBounds: bounds that would turn the check off or cut every call before it
// are refused before proxyd opens anything (the directories here do not exist).
func TestMainRefusesApidBounds(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	for _, args := range [][]string{
		{"--apid-timeout", "0"},
		{"--apid-timeout", "-1s"},
		{"--apid-timeout", "5s", "--apid-max-wait", "2s"},
	} {
		err := Main(context.Background(), append([]string{"--config-dir", dir, "--run-dir", dir}, args...), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "want 0 < timeout <= max wait") {
			t.Errorf("Main(%q) = %v; want the bounds refused", args, err)
		}
	}
}

// BenchmarkApidTransport is the cost of the bounds on a call apid answers at once: the same
// GET to a fake apid on a unix socket, through the plain transport and through apidTransport,
// each with a cancellable context, as a server's request context is.
func BenchmarkApidTransport(b *testing.B) {
	f := newFakeApid(b)
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", f.sock)
	}}
	for _, c := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"plain", tr},
		{"bounded", &apidTransport{inner: tr, timeout: DefaultApidTimeout, maxWait: DefaultApidMaxWait, answered: func() {}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			client := &http.Client{Transport: c.rt}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := get(client, ctx, "fast"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
