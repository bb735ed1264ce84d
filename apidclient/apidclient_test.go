package apidclient

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// serve runs h on a real unix socket in a temp dir and returns its path.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "apid.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestCall(t *testing.T) {
	type seen struct {
		method, path, query, ctype, body, rhost string
	}
	got := make(chan seen, 1)
	sock := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Content-Type"), string(body), r.Header.Get("X-Gatehouse-Rhost")}
		switch r.URL.Path {
		case "/api2/json/ok":
			io.WriteString(w, `{"data":{"userid":"alice@pbs","n":3}}`)
		case "/api2/json/null":
			io.WriteString(w, `{"data":null}`)
		case "/api2/json/invalid":
			w.WriteHeader(400)
			io.WriteString(w, `{"data":null,"message":"parameter verification failed","errors":{"userid":"invalid user id","email":"bad"}}`)
		case "/api2/json/text":
			w.WriteHeader(404)
			io.WriteString(w, "404 page not found\n\x1b[31mmore")
		case "/api2/json/notjson":
			io.WriteString(w, "<html>")
		}
	}))
	c := New(sock)
	ctx := context.Background()

	var d struct {
		Userid string `json:"userid"`
		N      int    `json:"n"`
	}
	if err := c.Call(ctx, "GET", "ok", url.Values{"include_tokens": {"1"}}, &d); err != nil || d.Userid != "alice@pbs" || d.N != 3 {
		t.Errorf("GET ok = %+v, %v; want alice@pbs 3", d, err)
	}
	if s := <-got; s.method != "GET" || s.query != "include_tokens=1" || s.body != "" || s.rhost != "" {
		t.Errorf("GET sent %+v; want the parameters in the query, no body, no rhost header", s)
	}

	if err := c.Call(ctx, "POST", "/null", url.Values{"userid": {"a@pbs"}, "password": {"p w&x"}}, nil); err != nil {
		t.Errorf("POST null = %v", err)
	}
	if s := <-got; s.method != "POST" || s.ctype != "application/x-www-form-urlencoded" || s.body != "password=p+w%26x&userid=a%40pbs" || s.query != "" {
		t.Errorf("POST sent %+v; want a form body", s)
	}

	for _, tc := range []struct {
		name, path string
		status     int
		msg        string
		params     map[string]string
		text       string
	}{
		{"parameter errors", "invalid", 400, "parameter verification failed", map[string]string{"userid": "invalid user id", "email": "bad"},
			"parameter verification failed: email: bad; userid: invalid user id"},
		{"text answer", "text", 404, "404 page not found", nil, "404 page not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Call(ctx, "PUT", tc.path, nil, nil)
			<-got
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Call = %v; want *Error", err)
			}
			if e.Status != tc.status || e.Message != tc.msg || len(e.Params) != len(tc.params) || e.Error() != tc.text {
				t.Errorf("Call = %+v (%q); want %d %q %v (%q)", e, e.Error(), tc.status, tc.msg, tc.params, tc.text)
			}
			if !IsStatus(err, tc.status) || errors.Is(err, ErrUnreachable) {
				t.Errorf("IsStatus(%v, %d) = false or unreachable", err, tc.status)
			}
		})
	}

	err := c.Call(ctx, "GET", "notjson", nil, &d)
	<-got
	var e *Error
	if err == nil || errors.As(err, &e) || errors.Is(err, ErrUnreachable) {
		t.Errorf("a 200 that is not JSON = %v; want a plain error", err)
	}
}

func TestUnreachable(t *testing.T) {
	dir := t.TempDir()
	// A stale socket: the file exists, nobody listens (apid stopped without removing it).
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	// A listener that closes every connection, as apid's SO_PEERCRED check does for a refused uid.
	closer := filepath.Join(dir, "closer.sock")
	cl, err := net.Listen("unix", closer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	go func() {
		for {
			c, err := cl.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, tc := range []struct {
		name, sock string
		errno      error
		text       string
	}{
		{"no socket", filepath.Join(dir, "missing.sock"), syscall.ENOENT, "is apid running"},
		{"connection refused", stale, syscall.ECONNREFUSED, "is apid running"},
		{"closed without answer", closer, nil, "connection closed without an answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := New(tc.sock).Call(context.Background(), "GET", "version", nil, nil)
			if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), tc.sock) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("Call = %v; want ErrUnreachable naming %s and saying %q", err, tc.sock, tc.text)
			}
			if tc.errno != nil && !strings.Contains(err.Error(), tc.errno.Error()) {
				t.Errorf("Call = %v; want it to say %q", err, tc.errno)
			}
		})
	}
	if os.Getuid() == 0 {
		return // root opens any socket
	}
	t.Run("permission denied", func(t *testing.T) {
		sock := serve(t, http.NotFoundHandler())
		os.Chmod(sock, 0)
		err := New(sock).Call(context.Background(), "GET", "version", nil, nil)
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "run gatectl as root") {
			t.Errorf("Call = %v; want ErrUnreachable with a hint", err)
		}
	})
}

func TestPlainMessage(t *testing.T) {
	long := strings.Repeat("x", 300)
	for _, tc := range []struct{ in, want string }{
		{"404 page not found\n", "404 page not found"},
		{"a\x1b[31mb\tc\r\nsecond", "a[31mbc"},
		{"\xff\xfeok", "ok"},
		{long, long[:200]},
		{"", ""},
	} {
		if got := plainMessage([]byte(tc.in)); got != tc.want {
			t.Errorf("plainMessage(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzDecodeAnswer: any status and body decode without panic; a non-2xx status is always an
// *Error with that status and a message free of control characters; a 2xx never is.
func FuzzDecodeAnswer(f *testing.F) {
	f.Add(200, []byte(`{"data":{"userid":"a@pbs"}}`))
	f.Add(200, []byte(`{"data":null}`))
	f.Add(400, []byte(`{"data":null,"message":"parameter verification failed","errors":{"userid":"bad"}}`))
	f.Add(404, []byte("404 page not found\n"))
	f.Add(500, []byte(`{"data":`))
	f.Add(200, []byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		var out struct {
			Userid string `json:"userid"`
		}
		err := decodeAnswer(status, body, &out)
		var e *Error
		isErr := errors.As(err, &e)
		if status < 200 || status > 299 {
			if !isErr || e.Status != status {
				t.Fatalf("decodeAnswer(%d, %q) = %v; want *Error with the status", status, body, err)
			}
			_ = e.Error()
			return
		}
		if isErr {
			t.Fatalf("decodeAnswer(%d, %q) = *Error %v; want none for a 2xx", status, body, err)
		}
	})
}
