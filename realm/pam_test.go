package realm

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gatehouse/authid"
)

// rootTools skips the test unless it runs as root with the shadow tools it needs; with
// GATEHOUSE_REQUIRE_TOOLS set, a root run fails instead of skipping when a tool is missing.
func rootTools(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a system user and a PAM service file")
	}
	for _, name := range tools {
		if _, err := exec.LookPath(name); err != nil {
			if os.Getenv("GATEHOUSE_REQUIRE_TOOLS") != "" {
				t.Fatalf("%s not installed (package passwd), required by GATEHOUSE_REQUIRE_TOOLS", name)
			}
			t.Skipf("%s not installed (package passwd)", name)
		}
	}
}

// run runs a command, feeding it stdin, and fails the test on error.
func run(t *testing.T, stdin string, argv ...string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", argv[0], err, out)
	}
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// pamFixture creates a PAM service file with PAMServiceFile and a system user (no home,
// no user group, shell /usr/sbin/nologin) with password; both are removed when the test ends,
// also when it fails.
func pamFixture(t *testing.T, password string) (p PAM, user string) {
	t.Helper()
	rootTools(t, "useradd", "chpasswd", "userdel", "usermod", "passwd")
	suffix := randomHex(t)
	service := "gatehouse-test-" + suffix
	file := filepath.Join("/etc/pam.d", service)
	t.Cleanup(func() {
		if err := os.Remove(file); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("removing %s: %v", file, err)
		}
	})
	if err := os.WriteFile(file, []byte(PAMServiceFile), 0o644); err != nil {
		t.Fatal(err)
	}
	user = "gh" + suffix
	t.Cleanup(func() {
		out, err := exec.Command("userdel", user).CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 6) { // 6: no such user
			t.Errorf("userdel %s: %v: %s", user, err, out)
		}
	})
	run(t, "", "useradd", "-M", "-N", "-s", "/usr/sbin/nologin", user)
	run(t, user+":"+password+"\n", "chpasswd")
	return PAM{Service: service}, user
}

// TestPAMRealUser checks a real account through the real PAM stack of PAMServiceFile.
func TestPAMRealUser(t *testing.T) {
	t.Parallel() // each failed check waits out pam_unix's 2 s delay
	const password = "Correct horse: battery ü 1!"
	p, user := pamFixture(t, password)

	// pam_unix does not look at the shell: a nologin account authenticates.
	passwd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(passwd), "\n"+user+":") || !strings.Contains(string(passwd), ":/usr/sbin/nologin\n") {
		t.Fatalf("/etc/passwd has no nologin entry for %s", user)
	}
	if err := p.Check(user, password); err != nil {
		t.Fatalf("PAM Check(%s, right) = %v; want nil", user, err)
	}
	err = p.Check(user, password+"x")
	if !errors.Is(err, ErrBadPassword) {
		t.Errorf("PAM Check(%s, wrong) = %v; want ErrBadPassword", user, err)
	}
	noSecret(t, err, password)
	if err := p.Check("gh"+randomHex(t), password); !errors.Is(err, ErrBadPassword) {
		t.Errorf("PAM Check(unknown user) = %v; want ErrBadPassword", err)
	}
	// A NUL would cut the password short in C: refused before PAM sees it.
	err = p.Check(user, password+"\x00junk")
	if !errors.Is(err, ErrBadPassword) || !errors.Is(err, ErrInvalidPassword) {
		t.Errorf("PAM Check(%s, right+NUL+junk) = %v; want ErrBadPassword and ErrInvalidPassword", user, err)
	}
	for _, bad := range []string{"", "ro ot", "a:b", "x\x00y", "a/b"} {
		if err := p.Check(bad, password); !errors.Is(err, authid.ErrSyntax) {
			t.Errorf("PAM Check(%q) = %v; want authid.ErrSyntax", bad, err)
		}
	}

	// Through the dispatcher, with the user id.
	r := Realms{PAM: p}
	if err := r.Check(user+"@pam", password); err != nil {
		t.Errorf("Realms.Check(%s@pam, right) = %v; want nil", user, err)
	}
	if err := r.Check(user+"@pam", "wrong"); !errors.Is(err, ErrBadPassword) {
		t.Errorf("Realms.Check(%s@pam, wrong) = %v; want ErrBadPassword", user, err)
	}

	// Concurrent checks each run their own PAM transaction.
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 0 {
				if err := p.Check(user, "wrong"); !errors.Is(err, ErrBadPassword) {
					errs <- err
				}
				return
			}
			if err := p.Check(user, password); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent PAM Check: %v", err)
	}
}

// TestPAMAccount: pam_acct_mgmt runs (an expired account is refused after a correct password)
// and an empty password field never lets anyone in, although common-auth says nullok.
func TestPAMAccount(t *testing.T) {
	t.Parallel()
	const password = "expiring password"
	p, user := pamFixture(t, password)

	run(t, "", "usermod", "-e", "1970-01-02", user)
	err := p.Check(user, password)
	if !errors.Is(err, ErrAccountDenied) || errors.Is(err, ErrBadPassword) {
		t.Errorf("PAM Check(expired %s, right) = %v; want ErrAccountDenied", user, err)
	}
	if err := p.Check(user, "wrong"); !errors.Is(err, ErrBadPassword) {
		t.Errorf("PAM Check(expired %s, wrong) = %v; want ErrBadPassword", user, err)
	}
	run(t, "", "usermod", "-e", "", user)
	if err := p.Check(user, password); err != nil {
		t.Errorf("PAM Check(%s) after clearing the expiry = %v; want nil", user, err)
	}

	run(t, "", "passwd", "-d", user) // empty password field
	for _, pw := range []string{"anything", password} {
		if err := p.Check(user, pw); !errors.Is(err, ErrBadPassword) {
			t.Errorf("PAM Check(%s with an empty password field, %q) = %v; want ErrBadPassword", user, pw, err)
		}
	}
}

func TestPAMServiceFile(t *testing.T) {
	for _, want := range []string{"auth    include common-auth\n", "account include common-account\n"} {
		if !strings.Contains(PAMServiceFile, want) {
			t.Errorf("PAMServiceFile lacks %q", want)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(PAMServiceFile), "\n") {
		if !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "auth ") && !strings.HasPrefix(line, "account ") {
			t.Errorf("PAMServiceFile line %q: want only auth and account stacks", line)
		}
	}
}
