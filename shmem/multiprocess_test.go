package shmem

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Multi-process tests re-run the test binary with -test.run naming
// TestHelperProcess and these environment variables naming the child's role
// and the cache path, as Go's os/signal tests do. Children and parent
// synchronize over the child's stdin and stdout, never with sleeps.
const (
	envRole = "GATEHOUSE_SHMEM_CHILD"
	envPath = "GATEHOUSE_SHMEM_PATH"
	envN    = "GATEHOUSE_SHMEM_N"
)

// TestHelperProcess is the child side of the multi-process tests. It does
// nothing unless run as a child.
func TestHelperProcess(t *testing.T) {
	role := os.Getenv(envRole)
	if role == "" {
		return
	}
	if err := helper(role, os.Getenv(envPath), os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "child %s: %v\n", role, err)
		os.Exit(2)
	}
	os.Exit(0)
}

func helper(role, path string, stdin io.Reader, stdout io.Writer) error {
	in := bufio.NewScanner(stdin)
	waitLine := func() error {
		if !in.Scan() {
			return fmt.Errorf("stdin closed before cue: %v", in.Err())
		}
		return nil
	}
	switch role {
	case "bump":
		// Open, report ready, wait for "go", then bump TokenShadow N times.
		n, err := strconv.Atoi(os.Getenv(envN))
		if err != nil {
			return err
		}
		c, err := Open(path)
		if err != nil {
			return err
		}
		defer c.Close()
		fmt.Fprintln(stdout, "ready")
		if err := waitLine(); err != nil {
			return err
		}
		for range n {
			c.Bump(TokenShadow)
		}
		fmt.Fprintln(stdout, "done")
	case "visible":
		// Bump User and print the new value; on a cue, print what Load sees.
		c, err := Open(path)
		if err != nil {
			return err
		}
		defer c.Close()
		fmt.Fprintln(stdout, c.Bump(User))
		if err := waitLine(); err != nil {
			return err
		}
		fmt.Fprintln(stdout, c.Load(User))
	case "create":
		// Report ready, wait for "go", then race the others to Create.
		fmt.Fprintln(stdout, "ready")
		if err := waitLine(); err != nil {
			return err
		}
		c, err := Create(path, -1)
		if err != nil {
			return err
		}
		defer c.Close()
		fmt.Fprintln(stdout, c.Bump(Keys))
	case "follow":
		// Watch every 10 ms as proxyd does (no Repair); print Load(token_shadow) per line read.
		c, err := Open(path)
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go c.Watch(ctx, WatchOptions{Interval: 10 * time.Millisecond, Report: func(e Event) {
			fmt.Fprintf(os.Stderr, "event: %+v\n", e)
		}})
		for in.Scan() {
			fmt.Fprintln(stdout, c.Load(TokenShadow))
		}
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

func startChild(t *testing.T, role, path string, env ...string) *child {
	t.Helper()
	ch := &child{role: role}
	ch.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	ch.cmd.Env = append(os.Environ(), envRole+"="+role, envPath+"="+path)
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

func TestMultiProcessBump(t *testing.T) {
	const procs, n = 4, 100000
	path := cachePath(t)
	c := mustCreate(t, path)
	children := make([]*child, procs)
	for i := range children {
		children[i] = startChild(t, "bump", path, envN+"="+strconv.Itoa(n))
	}
	for _, ch := range children {
		if got := ch.line(t); got != "ready" {
			t.Fatalf("child line = %q; want ready", got)
		}
	}
	for _, ch := range children { // all open: start them together
		ch.send(t, "go")
	}
	for _, ch := range children {
		if got := ch.line(t); got != "done" {
			t.Fatalf("child line = %q; want done", got)
		}
		ch.wait(t)
	}
	if got, want := c.Load(TokenShadow), uint64(procs*n); got != want {
		t.Errorf("after %d processes x %d bumps: Load(token_shadow) = %d; want %d", procs, n, got, want)
	}
	for _, k := range []Counter{User, TFA, Keys} {
		if got := c.Load(k); got != 0 {
			t.Errorf("Load(%v) = %d; want 0 (untouched)", k, got)
		}
	}
}

func TestMultiProcessVisibility(t *testing.T) {
	path := cachePath(t)
	c := mustCreate(t, path)
	c.Bump(User)
	ch := startChild(t, "visible", path)

	got := ch.line(t)
	if want := "2"; got != want {
		t.Fatalf("child Bump(user) = %s; want %s", got, want)
	}
	if got := c.Load(User); got != 2 {
		t.Fatalf("parent Load(user) after child bump = %d; want 2", got)
	}
	if got := c.Bump(User); got != 3 {
		t.Fatalf("parent Bump(user) = %d; want 3", got)
	}
	ch.send(t, "load")
	if got, want := ch.line(t), "3"; got != want {
		t.Errorf("child Load(user) after parent bump = %s; want %s", got, want)
	}
	ch.wait(t)
}

func TestMultiProcessRacingCreate(t *testing.T) {
	const procs = 6
	dir := t.TempDir()
	path := dir + "/config-versions"
	children := make([]*child, procs)
	for i := range children {
		children[i] = startChild(t, "create", path)
	}
	for _, ch := range children {
		if got := ch.line(t); got != "ready" {
			t.Fatalf("child line = %q; want ready", got)
		}
	}
	for _, ch := range children {
		ch.send(t, "go")
	}
	seen := make(map[string]bool)
	for _, ch := range children {
		v := ch.line(t)
		if seen[v] {
			t.Errorf("two children got Bump(keys) = %s; want distinct values (one shared file)", v)
		}
		seen[v] = true
		ch.wait(t)
	}
	c := mustOpen(t, path)
	if got := c.Load(Keys); got != procs {
		t.Errorf("after %d racing Create+Bump: Load(keys) = %d; want %d", procs, got, procs)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 1 {
		t.Errorf("dir after racing Create = [%s]; want only config-versions", strings.Join(names, " "))
	}
}

// TestMultiProcessFollow: a reader process watching as proxyd does follows the file the writer
// makes after the old one was removed: the writer's bumps reach it again, with values above
// every one it returned before.
func TestMultiProcessFollow(t *testing.T) {
	path := cachePath(t)
	w := mustCreate(t, path)
	ch := startChild(t, "follow", path)
	w.Bump(TokenShadow)
	ch.send(t, "load")
	if got := ch.line(t); got != "1" {
		t.Fatalf("child Load(token_shadow) = %s; want 1", got)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	w.heal(WatchOptions{Repair: true, GID: -1})
	deadline := time.Now().Add(10 * time.Second)
	for {
		want := w.Bump(TokenShadow)
		ch.send(t, "load")
		got, err := strconv.ParseUint(ch.line(t), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if got == want {
			if got <= jump {
				t.Errorf("child follows at %d; want above 2^32 (values lifted at the switch)", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child still at %d after 10 s, writer at %d; stderr:\n%s", got, want, ch.stderr.String())
		}
	}
	ch.wait(t)
	if !strings.Contains(ch.stderr.String(), "no such file or directory") && !strings.Contains(ch.stderr.String(), "file replaced") {
		t.Errorf("child's events %q; want the removal or replacement reported", ch.stderr.String())
	}
}
