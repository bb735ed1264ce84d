package lockfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// Multi-process tests re-run the test binary as a child, as Go's os/signal
// tests do: the child runs only TestHelperProcess, which acts out the role
// named by childEnv on the file named by pathEnv, talking to the parent
// over stdin and stdout.
const (
	childEnv = "GATEHOUSE_LOCKFILE_CHILD"
	pathEnv  = "GATEHOUSE_LOCKFILE_PATH"
)

// Child roles.
const (
	roleHold        = "hold-exclusive" // lock, print "locked", wait for stdin EOF, unlock
	roleReplaceLoop = "replace-loop"   // Replace with A, B, A, ... forever; "ready", then a line per replace
	roleWriteLimit  = "write-limit"    // Replace with RLIMIT_FSIZE below the data size; print the error
)

// fileSize is the size of the contents the replace-loop child writes.
const fileSize = 64 << 10

func TestHelperProcess(t *testing.T) {
	role := os.Getenv(childEnv)
	if role == "" {
		t.Skip("helper process for the multi-process tests")
	}
	if err := runChild(role, os.Getenv(pathEnv)); err != nil {
		fmt.Fprintf(os.Stderr, "child %s: %v\n", role, err)
		os.Exit(2)
	}
	os.Exit(0)
}

func runChild(role, path string) error {
	switch role {
	case roleHold:
		l, err := Exclusive(path, DefaultTimeout)
		if err != nil {
			return err
		}
		fmt.Println("locked")
		if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
			return err
		}
		return l.Unlock()
	case roleReplaceLoop:
		contents := [2][]byte{bytes.Repeat([]byte{'a'}, fileSize), bytes.Repeat([]byte{'b'}, fileSize)}
		for i := 0; ; i++ {
			if err := Replace(path, contents[i%2], DefaultOptions(0o600)); err != nil {
				return err
			}
			msg := "replaced"
			if i == 0 {
				msg = "ready"
			}
			if _, err := fmt.Println(msg); err != nil {
				return err
			}
		}
	case roleWriteLimit:
		lim := syscall.Rlimit{Cur: 4096, Max: 4096}
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
			return err
		}
		// The Go runtime ignores SIGXFSZ, so the write fails with EFBIG.
		err := Replace(path, bytes.Repeat([]byte{'n'}, fileSize), DefaultOptions(0o600))
		fmt.Printf("%v\n", err)
		return nil
	}
	return fmt.Errorf("unknown role %q", role)
}

// child is a running helper process.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	stderr bytes.Buffer // read only after wait
	waited bool
	werr   error
}

// startChild starts the test binary as a child acting out role on path.
// The child is killed and reaped when the test ends.
func startChild(t *testing.T, role, path string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")}
	c.cmd.Env = append(os.Environ(), childEnv+"="+role, pathEnv+"="+path)
	if os.Getenv("GORACE") == "" {
		// Under -race a child otherwise sleeps 1s at exit.
		c.cmd.Env = append(c.cmd.Env, "GORACE=atexit_sleep_ms=0")
	}
	c.cmd.Stderr = &c.stderr
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.out = bufio.NewReader(stdout)
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !c.waited {
			c.cmd.Process.Kill()
			c.wait()
		}
		if t.Failed() {
			t.Logf("child %s stderr:\n%s", role, c.stderr.String())
		}
	})
	return c
}

// readLine reads one line from the child's stdout, without the newline.
func (c *child) readLine(t *testing.T) string {
	t.Helper()
	line, err := c.out.ReadString('\n')
	if err != nil {
		t.Fatalf("reading from child: %v (read %q)", err, line)
	}
	return strings.TrimSuffix(line, "\n")
}

func (c *child) wait() error {
	if !c.waited {
		c.waited = true
		c.werr = c.cmd.Wait()
	}
	return c.werr
}

// kill sends SIGKILL and reaps the child.
func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := c.wait(); !errors.As(err, &ee) {
		t.Fatalf("Wait() after SIGKILL = %v; want exit error", err)
	}
	if ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child state after SIGKILL = %v; want killed by SIGKILL", c.cmd.ProcessState)
	}
}

func TestLockAcrossProcesses(t *testing.T) {
	tests := []struct {
		name    string
		release func(t *testing.T, c *child)
	}{
		{"child unlocks", func(t *testing.T, c *child) {
			if err := c.stdin.Close(); err != nil {
				t.Fatal(err)
			}
			if err := c.wait(); err != nil {
				t.Fatalf("child Wait() = %v; want nil", err)
			}
		}},
		{"child killed", func(t *testing.T, c *child) { c.kill(t) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), ".token.lck")
			c := startChild(t, roleHold, path)
			if got := c.readLine(t); got != "locked" {
				t.Fatalf("child said %q; want %q", got, "locked")
			}
			for kind, take := range lockKinds() {
				l, err := take(path, short)
				if err == nil {
					l.Unlock()
					t.Fatalf("%s(%s, %v) while child holds it = lock; want ErrTimeout", kind, path, short)
				}
				checkTimeout(t, kind+"("+path+") while child holds it", err, kind, path, short)
			}

			tt.release(t, c)

			l, err := Exclusive(path, DefaultTimeout)
			if err != nil {
				t.Fatalf("Exclusive(%s) after child is gone = %v; want lock", path, err)
			}
			if err := l.Unlock(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestReplaceCrashSafety kills a child in the middle of a Replace loop, many
// times, and checks the file is always one whole version. Temp files of the
// killed writer may remain; CleanTemps removes them.
func TestReplaceCrashSafety(t *testing.T) {
	const (
		rounds   = 20
		replaces = 20
	)
	dir := t.TempDir()
	path := filepath.Join(dir, "token.shadow")
	leftovers := 0
	for round := range rounds {
		c := startChild(t, roleReplaceLoop, path)
		if got := c.readLine(t); got != "ready" {
			t.Fatalf("round %d: child said %q; want %q", round, got, "ready")
		}
		for range replaces {
			c.readLine(t)
		}
		c.kill(t)

		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("round %d: ReadFile(%s) = %v", round, path, err)
		}
		if len(data) != fileSize {
			t.Fatalf("round %d: len(ReadFile(%s)) = %d; want %d", round, path, len(data), fileSize)
		}
		if n := bytes.Count(data, data[:1]); (data[0] != 'a' && data[0] != 'b') || n != fileSize {
			t.Fatalf("round %d: ReadFile(%s) = %d bytes %q, %d of them equal to the first; want all 'a' or all 'b'",
				round, path, len(data), data[:1], n)
		}
		if names := listDir(t, dir); len(names) > 1 {
			leftovers++
		}
		// The real callers hold the exclusive lock here.
		if err := CleanTemps(dir, "token.shadow"); err != nil {
			t.Fatalf("round %d: CleanTemps = %v", round, err)
		}
		if got, want := listDir(t, dir), []string{"token.shadow"}; !slices.Equal(got, want) {
			t.Fatalf("round %d: dir after CleanTemps = %q; want %q", round, got, want)
		}
	}
	t.Logf("%d of %d kills left a temp file behind", leftovers, rounds)
}

// TestReplaceWriteFailure makes the write of the temp file fail (EFBIG, in
// a child with a small RLIMIT_FSIZE, which works as root too) and checks the
// old file is intact and no temp file is left.
func TestReplaceWriteFailure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "shadow.json")
	writeFile(t, path, "old", 0o640)
	c := startChild(t, roleWriteLimit, path)
	got := c.readLine(t)
	if err := c.wait(); err != nil {
		t.Fatalf("child Wait() = %v; want nil", err)
	}
	wantPrefix := "replacing " + path + ": writing temp file " + filepath.Join(dir, ".shadow.json.tmp-")
	if !strings.HasPrefix(got, wantPrefix) || !strings.HasSuffix(got, syscall.EFBIG.Error()) {
		t.Errorf("Replace(%s) with RLIMIT_FSIZE 4096 = %q; want %q...%q", path, got, wantPrefix, syscall.EFBIG.Error())
	}
	checkFile(t, path, "old", 0o640)
	if got, want := listDir(t, dir), []string{"shadow.json"}; !slices.Equal(got, want) {
		t.Errorf("dir after failed Replace = %q; want %q", got, want)
	}
}
