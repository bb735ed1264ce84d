package lifecycle

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// notifySocket binds a unixgram socket, points NOTIFY_SOCKET at it and returns it; systemd's
// side of sd_notify, for real.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

// next reads one datagram, failing the test after 10 s.
func next(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("reading sd_notify datagram: %v", err)
	}
	return string(buf[:n])
}

// expect reads one datagram and checks that, for every w in want, it has a line starting with w.
func expect(t *testing.T, c *net.UnixConn, want ...string) string {
	t.Helper()
	msg := next(t, c)
	lines := strings.Split(msg, "\n")
	for _, w := range want {
		found := false
		for _, l := range lines {
			if strings.HasPrefix(l, w) {
				found = true
			}
		}
		if !found {
			t.Fatalf("sd_notify datagram %q; want a line %q", msg, w)
		}
	}
	return msg
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func get(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestNotifySequence(t *testing.T) {
	sock := notifySocket(t)
	ln := listen(t)
	url := "http://" + ln.Addr().String() + "/"
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	var reloads atomic.Int32
	failNext := atomic.Bool{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, srv, ln, Options{Reload: func() error {
			reloads.Add(1)
			if failNext.Load() {
				return errors.New("reading /etc/x: bad")
			}
			return nil
		}})
	}()

	expect(t, sock, "READY=1", "STATUS=serving on "+ln.Addr().String())
	if body, err := get(url); err != nil || body != "ok" {
		t.Fatalf("GET after READY=1 = %q, %v; want ok", body, err)
	}

	before := monotonicUsec()
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	msg := expect(t, sock, "RELOADING=1", "MONOTONIC_USEC=")
	for _, l := range strings.Split(msg, "\n") {
		if v, ok := strings.CutPrefix(l, "MONOTONIC_USEC="); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < before || n > monotonicUsec() {
				t.Fatalf("MONOTONIC_USEC=%s; want a CLOCK_MONOTONIC time in [%d, now]", v, before)
			}
		}
	}
	expect(t, sock, "READY=1", "STATUS=reloaded at ")
	if n := reloads.Load(); n != 1 {
		t.Fatalf("reload called %d times after one SIGHUP; want 1", n)
	}

	failNext.Store(true)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	expect(t, sock, "RELOADING=1")
	expect(t, sock, "READY=1", "STATUS=reload failed: reading /etc/x: bad")
	if body, err := get(url); err != nil || body != "ok" {
		t.Fatalf("GET after a failed reload = %q, %v; want ok", body, err)
	}

	cancel()
	expect(t, sock, "STOPPING=1")
	if err := <-done; err != nil {
		t.Fatalf("Serve after cancel = %v; want nil", err)
	}
	if _, err := get(url); err == nil {
		t.Fatal("GET after Serve returned succeeded; want the listener closed")
	}
}

// TestDrain: Serve returns only once a handler in flight has finished and its answer is sent.
func TestDrain(t *testing.T) {
	sock := notifySocket(t)
	ln := listen(t)
	url := "http://" + ln.Addr().String() + "/"
	entered, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "late")
		finished.Store(true)
	})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, ln, Options{}) }()
	expect(t, sock, "READY=1")
	answer := make(chan string, 1)
	go func() {
		body, err := get(url)
		if err != nil {
			body = err.Error()
		}
		answer <- body
	}()
	<-entered
	cancel()
	expect(t, sock, "STOPPING=1")
	// Not synchronisation: a window in which a Serve that does not wait would return (it does
	// so at once, when the listener closes).
	select {
	case err := <-done:
		t.Fatalf("Serve returned %v while a handler was running", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Serve = %v; want nil", err)
	}
	if !finished.Load() {
		t.Fatal("Serve returned before the handler finished")
	}
	if got := <-answer; got != "late" {
		t.Fatalf("answer of the drained request = %q; want late", got)
	}
}

// TestDrainTimeout: a handler that never finishes holds Serve for Drain, not longer.
func TestDrainTimeout(t *testing.T) {
	ln := listen(t)
	entered, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, ln, Options{Drain: 200 * time.Millisecond}) }()
	failed := make(chan error, 1)
	go func() {
		_, err := get("http://" + ln.Addr().String() + "/")
		failed <- err
	}()
	<-entered
	start := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve = %v; want nil", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 5*time.Second {
		t.Fatalf("Serve returned %v after cancel; want about the 200ms drain", d)
	}
	if err := <-failed; err == nil {
		t.Fatal("the stuck request got an answer; want its connection closed")
	}
}
