package peercred

import (
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const nobody = 65534

// TestMain lets the test binary act as a client: GATEHOUSE_PEERCRED_DIAL=<socket> dials it,
// writes "ping", and prints what comes back ("pong", or "closed" when the server hung up).
func TestMain(m *testing.M) {
	if path := os.Getenv("GATEHOUSE_PEERCRED_DIAL"); path != "" {
		c, err := net.Dial("unix", path)
		if err != nil {
			os.Stdout.WriteString("dial: " + err.Error())
			os.Exit(0)
		}
		c.Write([]byte("ping"))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil {
			os.Stdout.WriteString("closed")
			os.Exit(0)
		}
		os.Stdout.Write(buf)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serve answers "pong" to each admitted connection and reports each one's Cred.
func serve(t *testing.T, ln *Listener) <-chan Cred {
	t.Helper()
	creds := make(chan Cred, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			creds <- c.(*Conn).Cred
			buf := make([]byte, 4)
			io.ReadFull(c, buf)
			c.Write([]byte("pong"))
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return creds
}

// dialAs runs the test binary as uid and returns what its client saw. The binary is copied to
// a directory other uids can reach (go test builds it in a private one).
func dialAs(t *testing.T, path string, uid uint32) string {
	t.Helper()
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(filepath.Dir(path), "client")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), "GATEHOUSE_PEERCRED_DIAL="+path)
	if uid != uint32(os.Getuid()) {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: nobody}}
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client as uid %d: %v", uid, err)
	}
	return string(out)
}

// socketDir is a temp dir other uids can reach (t.TempDir and its parent are 0700).
func socketDir(t *testing.T) string {
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestAdmitsByUID(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a client as another uid")
	}
	tests := []struct {
		name    string
		allowed []uint32
		uid     uint32
		want    string
	}{
		{"root always", nil, 0, "pong"},
		{"listed uid", []uint32{nobody}, nobody, "pong"},
		{"other uid", []uint32{1234}, nobody, "closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(socketDir(t), "apid.sock")
			var refused []Cred
			done := make(chan struct{}, 1)
			ln, err := Listen(path, Options{Mode: 0o666, Allowed: tt.allowed, Refused: func(c Cred, err error) {
				refused = append(refused, c)
				done <- struct{}{}
			}})
			if err != nil {
				t.Fatal(err)
			}
			creds := serve(t, ln)
			if got := dialAs(t, path, tt.uid); got != tt.want {
				t.Fatalf("client as uid %d got %q; want %q", tt.uid, got, tt.want)
			}
			if tt.want == "pong" {
				if c := <-creds; c.UID != tt.uid || c.PID <= 0 {
					t.Errorf("Cred = %+v; want uid %d and a pid", c, tt.uid)
				}
				return
			}
			<-done
			if len(refused) != 1 || refused[0].UID != tt.uid {
				t.Errorf("refused = %+v; want one from uid %d", refused, tt.uid)
			}
		})
	}
}

func TestListenSocketFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "apid.sock")
	ln, err := Listen(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o660 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket file = %v, %v; want a socket with mode 0660", fi, err)
	}
	serve(t, ln)
	if _, err := Listen(path, Options{}); !errors.Is(err, ErrInUse) {
		t.Errorf("Listen on a live socket = %v; want ErrInUse", err)
	}
	ln.Close()

	// A stale socket (its server gone without unlinking) is replaced.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	ln2, err := Listen(path, Options{})
	if err != nil {
		t.Fatalf("Listen over a stale socket = %v; want nil", err)
	}
	ln2.Close()

	// A regular file in the way is never removed.
	if err := os.WriteFile(path, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path, Options{}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen over a regular file = %v; want a 'not a socket' error", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "keep" {
		t.Errorf("regular file now holds %q; want it untouched", data)
	}
}
