package shmem

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Multi-process tests re-run the test binary with -test.run naming TestHelperProcess and
// these environment variables naming the child's role and apid's page socket, as Go's
// os/signal tests do. Children and parent synchronize over the child's stdin and stdout,
// never with sleeps.
const (
	envRole   = "GATEHOUSE_SHMEM_CHILD"
	envSocket = "GATEHOUSE_SHMEM_SOCKET"
	envN      = "GATEHOUSE_SHMEM_N"
)

// TestHelperProcess is the child side of the multi-process tests. It does nothing unless run
// as a child.
func TestHelperProcess(t *testing.T) {
	role := os.Getenv(envRole)
	if role == "" {
		return
	}
	if err := helper(role, os.Getenv(envSocket), os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "child %s: %v\n", role, err)
		os.Exit(2)
	}
	os.Exit(0)
}

func helper(role, socket string, stdin io.Reader, stdout io.Writer) error {
	in := bufio.NewScanner(stdin)
	waitLine := func() error {
		if !in.Scan() {
			return fmt.Errorf("stdin closed before cue: %v", in.Err())
		}
		return nil
	}
	c, err := Dial(socket)
	if err != nil {
		return err
	}
	defer c.Close()
	switch role {
	case "bump":
		// Report ready, wait for "go", then bump TokenShadow N times.
		n, err := strconv.Atoi(os.Getenv(envN))
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, "ready")
		if err := waitLine(); err != nil {
			return err
		}
		for range n {
			c.Bump(TokenShadow)
		}
		fmt.Fprintln(stdout, "done")
	case "load":
		// Print Load(user) for each line read, and whether the page is writable first.
		fmt.Fprintln(stdout, c.current().writable)
		for in.Scan() {
			fmt.Fprintln(stdout, c.Load(User))
		}
	case "bump-ro":
		// Bump a read-only page: must panic, not write.
		defer func() { fmt.Fprintln(stdout, "panic:", recover()) }()
		c.Bump(User)
	default:
		return fmt.Errorf("unknown role %q", role)
	}
	return nil
}

type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Scanner
	stderr bytes.Buffer
	role   string
}

func startChild(t *testing.T, role, socket string, env ...string) *child {
	t.Helper()
	ch := &child{role: role}
	ch.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	ch.cmd.Env = append(os.Environ(), envRole+"="+role, envSocket+"="+socket)
	ch.cmd.Env = append(ch.cmd.Env, env...)
	ch.cmd.Stderr = &ch.stderr
	var err error
	if ch.stdin, err = ch.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := ch.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	ch.stdout = bufio.NewScanner(out)
	if err := ch.cmd.Start(); err != nil {
		t.Fatalf("starting child %s: %v", role, err)
	}
	t.Cleanup(func() {
		ch.stdin.Close()
		if ch.cmd.ProcessState == nil {
			ch.cmd.Process.Kill()
			ch.cmd.Wait()
		}
	})
	return ch
}

// line reads the child's next line of output.
func (ch *child) line(t *testing.T) string {
	t.Helper()
	if !ch.stdout.Scan() {
		err := ch.cmd.Wait()
		t.Fatalf("child %s: no output (exit: %v); stderr:\n%s", ch.role, err, ch.stderr.String())
	}
	return ch.stdout.Text()
}

func (ch *child) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(ch.stdin, s+"\n"); err != nil {
		t.Fatalf("child %s: writing stdin: %v", ch.role, err)
	}
}

func (ch *child) wait(t *testing.T) {
	t.Helper()
	ch.stdin.Close()
	if err := ch.cmd.Wait(); err != nil {
		t.Fatalf("child %s: %v; stderr:\n%s", ch.role, err, ch.stderr.String())
	}
}

// TestMultiProcessBump: 4 processes attached read-write bump one counter 100 000 times each,
// all at once: none is lost.
func TestMultiProcessBump(t *testing.T) {
	const procs, n = 4, 100000
	owner := newOwner(t)
	socket := serve(t, owner, true)
	children := make([]*child, procs)
	for i := range children {
		children[i] = startChild(t, "bump", socket, envN+"="+strconv.Itoa(n))
	}
	for _, ch := range children {
		if got := ch.line(t); got != "ready" {
			t.Fatalf("child line = %q; want ready", got)
		}
	}
	for _, ch := range children { // all attached: start them together
		ch.send(t, "go")
	}
	for _, ch := range children {
		if got := ch.line(t); got != "done" {
			t.Fatalf("child line = %q; want done", got)
		}
		ch.wait(t)
	}
	if got, want := owner.Load(TokenShadow), uint64(procs*n); got != want {
		t.Errorf("after %d processes x %d bumps: Load(token_shadow) = %d; want %d", procs, n, got, want)
	}
	for _, k := range []Counter{User, TFA, Keys} {
		if got := owner.Load(k); got != 0 {
			t.Errorf("Load(%v) = %d; want 0 (untouched)", k, got)
		}
	}
}

// TestMultiProcessReadOnly: a process apid hands the read-only descriptor (proxyd) sees every
// bump and cannot move a counter; what happens to the mirror file changes nothing for it.
func TestMultiProcessReadOnly(t *testing.T) {
	owner, mirror := owned(t)
	socket := serve(t, owner, false)
	ch := startChild(t, "load", socket)
	if got := ch.line(t); got != "false" {
		t.Fatalf("child's page writable = %s; want false", got)
	}
	for i := 1; i <= 3; i++ {
		owner.Bump(User)
		for _, size := range []int64{0, 100, 4095} {
			if err := os.Truncate(mirror, size); err != nil {
				t.Fatal(err)
			}
			ch.send(t, "load")
			if got := ch.line(t); got != strconv.Itoa(i) {
				t.Fatalf("child Load(user) with the mirror truncated to %d = %s; want %d", size, got, i)
			}
		}
	}
	ch.wait(t)
	ro := startChild(t, "bump-ro", socket)
	if got := ro.line(t); !strings.Contains(got, "read-only") {
		t.Errorf("Bump in a read-only process: %s; want the read-only panic", got)
	}
	ro.wait(t)
	if got := owner.Load(User); got != 3 {
		t.Errorf("owner's Load(user) = %d; want 3 (the read-only process moved nothing)", got)
	}
	if entries, _ := filepath.Glob(mirror + "*"); len(entries) == 0 {
		t.Errorf("no mirror file at all")
	}
}
