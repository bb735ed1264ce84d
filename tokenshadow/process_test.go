package tokenshadow

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"gatehouse/shmem"
)

// The cross-process tests re-run this test binary as children (see TestHelperProcess):
//
//	writer:   for each line "set <i>" on stdin, Set(id, secretN(i)) and print "set <i> <t>", where t
//	          is CLOCK_MONOTONIC (system wide) right after Set returned; "delete" likewise.
//	verifier: verifies old, current and next secrets in a loop, recording each verification's
//	          start time; prints "saw <i>" when secret i is first accepted and "gone" once the
//	          token is deleted; learns the writers' return times from stdin and finally prints
//	          "result <verifies> <accepts> <stale>".
//	churner:  calls Generate in a loop, printing "ok" after each, until killed.
const childEnv = "GATEHOUSE_TOKENSHADOW_CHILD"

const rotID = "rot@pbs!ci"

func secretN(i int) string { return fmt.Sprintf("secret-%04d-%s", i, strings.Repeat("x", 24)) }

func monoNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

func TestHelperProcess(t *testing.T) {
	role := os.Getenv(childEnv)
	if role == "" {
		t.Skip("helper process for the cross-process tests")
	}
	gen, err := shmem.Dial(os.Getenv("GATEHOUSE_GEN"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s, err := Open(Options{Path: os.Getenv("GATEHOUSE_SHADOW"), Generations: gen})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	switch role {
	case "writer":
		runWriter(s)
	case "verifier":
		runVerifier(s)
	case "churner":
		for {
			if _, err := s.Generate(rotID); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			fmt.Println("ok")
		}
	}
	os.Exit(0)
}

func runWriter(s *Store) {
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch f[0] {
		case "set":
			i, _ := strconv.Atoi(f[1])
			if err := s.Set(rotID, secretN(i)); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			fmt.Printf("set %d %d\n", i, monoNow())
		case "delete":
			if err := s.Delete(rotID); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			fmt.Printf("delete %d\n", monoNow())
		}
	}
}

// runVerifier verifies in a loop until stdin says "stop". A verification of secret i that is
// accepted although it started after the write replacing secret i returned is stale.
func runVerifier(s *Store) {
	const maxN = 10000
	var (
		replaced [maxN + 1]atomic.Int64 // replaced[i]: when the write replacing secret i returned
		deleted  atomic.Int64
		stop     atomic.Bool
		mu       sync.Mutex
		pending  []struct{ i, start int64 } // accepts whose deadline was not known yet
	)
	go func() {
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			f := strings.Fields(in.Text())
			switch f[0] {
			case "set":
				i, _ := strconv.Atoi(f[1])
				ts, _ := strconv.ParseInt(f[2], 10, 64)
				if i > 0 {
					replaced[i-1].Store(ts)
				}
			case "delete":
				ts, _ := strconv.ParseInt(f[1], 10, 64)
				deleted.Store(ts)
			case "stop":
				stop.Store(true)
			}
		}
	}()
	var verifies, accepts, stale int64
	cur, gone := 0, false
	check := func(i int) bool {
		start := monoNow()
		err := s.Verify(rotID, secretN(i))
		verifies++
		if err != nil {
			if !errors.Is(err, ErrWrongSecret) && !errors.Is(err, ErrNoToken) {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			if errors.Is(err, ErrNoToken) && deleted.Load() != 0 && !gone {
				gone = true
				fmt.Println("gone")
			}
			return false
		}
		accepts++
		if d := deleted.Load(); d != 0 && start > d {
			stale++
		}
		if r := replaced[i].Load(); r != 0 {
			if start > r {
				stale++
			}
		} else {
			mu.Lock()
			pending = append(pending, struct{ i, start int64 }{int64(i), start})
			mu.Unlock()
		}
		return true
	}
	for !stop.Load() {
		if cur > 0 {
			check(cur - 1)
		}
		check(cur)
		if cur < maxN && check(cur+1) {
			cur++
			fmt.Printf("saw %d\n", cur)
		}
	}
	for _, p := range pending {
		if r := replaced[p.i].Load(); r != 0 && p.start > r {
			stale++
		}
	}
	fmt.Printf("result %d %d %d\n", verifies, accepts, stale)
}

// child is a re-executed test binary with line-based stdin/stdout.
type child struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

func startChild(t *testing.T, role, shadow, gen string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), childEnv+"="+role, "GATEHOUSE_SHADOW="+shadow, "GATEHOUSE_GEN="+gen)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, in: in, lines: make(chan string, 1024)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return c
}

func (c *child) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(c.in, line+"\n"); err != nil {
		t.Fatalf("writing to %s: %v", c.cmd.Env[len(c.cmd.Env)-3], err)
	}
}

// expect reads lines until one starts with prefix, returning it. It gives up after
// expectTimeout, a guard against a hang, not a synchronization.
func (c *child) expect(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.NewTimer(expectTimeout)
	defer timeout.Stop()
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				t.Fatalf("child exited before printing %q", prefix)
			}
			if strings.HasPrefix(line, prefix) {
				return line
			}
		case <-timeout.C:
			t.Fatalf("child printed no %q within %v", prefix, expectTimeout)
		}
	}
}

const expectTimeout = 60 * time.Second

// sharedFiles makes a temp dir and a page of generation counters that this process serves,
// read-write, on a socket in it (genPath), as apid serves its own; children attach with Dial.
// shadow is the token.shadow path in dir (not created).
func sharedFiles(t *testing.T) (dir, genPath, shadow string, gen *shmem.Cache) {
	t.Helper()
	dir = t.TempDir()
	genPath, shadow = filepath.Join(dir, "shmem.sock"), filepath.Join(dir, "token.shadow")
	gen, err := shmem.New()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", genPath)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		gen.Serve(ln, func(net.Conn) bool { return true })
	}()
	t.Cleanup(func() {
		ln.Close()
		<-served
		gen.Close()
	})
	return dir, genPath, shadow, gen
}

// TestCrossProcessRotation: process A rotates a token 100 times while B and C verify in a
// loop; no verification that starts after a rotation returned may accept the old secret, and
// the new one must be accepted. Then A deletes it, with the same rule.
func TestCrossProcessRotation(t *testing.T) {
	rotations := 100
	if testing.Short() {
		rotations = 20
	}
	_, genPath, shadow, _ := sharedFiles(t)
	a := startChild(t, "writer", shadow, genPath)
	a.send(t, "set 0")
	first := a.expect(t, "set 0")
	verifiers := []*child{startChild(t, "verifier", shadow, genPath), startChild(t, "verifier", shadow, genPath)}
	for _, v := range verifiers {
		v.send(t, first)
	}
	for i := 1; i <= rotations; i++ {
		a.send(t, fmt.Sprintf("set %d", i))
		line := a.expect(t, fmt.Sprintf("set %d ", i))
		for _, v := range verifiers {
			v.send(t, line)
		}
		for _, v := range verifiers {
			v.expect(t, fmt.Sprintf("saw %d", i)) // the new secret is accepted
		}
	}
	a.send(t, "delete")
	line := a.expect(t, "delete ")
	for _, v := range verifiers {
		v.send(t, line)
	}
	for _, v := range verifiers {
		v.expect(t, "gone")
		v.send(t, "stop")
	}
	for n, v := range verifiers {
		var verifies, accepts, stale int64
		res := v.expect(t, "result ")
		if _, err := fmt.Sscanf(res, "result %d %d %d", &verifies, &accepts, &stale); err != nil {
			t.Fatalf("verifier %d printed %q: %v", n, res, err)
		}
		t.Logf("verifier %d: %d verifications, %d accepted, %d stale", n, verifies, accepts, stale)
		if stale != 0 {
			t.Errorf("verifier %d: %d verifications that started after a rotation or delete returned accepted the old secret; want 0", n, stale)
		}
		if accepts < int64(rotations) {
			t.Errorf("verifier %d: %d accepts for %d secrets; want at least one each", n, accepts, rotations+1)
		}
	}
}

// TestWriterKilled kills a writer with SIGKILL in the middle of its writes, many times: the
// file is always whole (parses, holds the token) and later writes succeed.
func TestWriterKilled(t *testing.T) {
	rounds := 20
	if testing.Short() {
		rounds = 5
	}
	dir, genPath, shadow, gen := sharedFiles(t)
	s, err := Open(Options{Path: shadow, Generations: gen})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 { // some bulk so a write takes a while
		if err := s.Set(fmt.Sprintf("bulk%d@pbs!ci", i), "x"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	for r := range rounds {
		c := startChild(t, "churner", shadow, genPath)
		for range 3 + r%5 {
			c.expect(t, "ok")
		}
		if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		c.cmd.Wait()
		tb, err := readTable(shadow)
		if err != nil {
			t.Fatalf("round %d: after kill -9 the file is not whole: %v", r, err)
		}
		if len(tb.hashes) != 51 {
			t.Fatalf("round %d: after kill -9 the file has %d tokens; want 51", r, len(tb.hashes))
		}
	}
	secret, err := s.Generate(rotID)
	if err != nil {
		t.Fatalf("Generate after the kills: %v", err)
	}
	if err := s.Verify(rotID, secret); err != nil {
		t.Fatalf("Verify after the kills: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".token.shadow.tmp-*"))
	if len(left) != 0 {
		t.Errorf("temp files left after a later write: %v", left)
	}
}
