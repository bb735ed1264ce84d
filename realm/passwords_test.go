package realm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gatehouse/authid"
	"gatehouse/crypthash"
	"gatehouse/lockfile"
)

// newPasswords makes Passwords on a fresh shadow.json path in a temp dir (no file yet).
func newPasswords(t testing.TB) *Passwords {
	t.Helper()
	p, err := OpenPasswords(PasswordOptions{Path: filepath.Join(t.TempDir(), "shadow.json")})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// writeShadow writes content to p's file with exactly mode.
func writeShadow(t testing.TB, p *Passwords, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p.Path(), []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p.Path(), mode); err != nil {
		t.Fatal(err)
	}
}

// noSecret fails when err's text contains one of the secrets.
func noSecret(t testing.TB, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains secret %q", err, s)
		}
	}
}

// tool runs a system tool, skipping the test when it is missing unless GATEHOUSE_REQUIRE_TOOLS
// is set (`make test` installs openssl and whois, which has mkpasswd).
func tool(t *testing.T, stdin string, argv ...string) string {
	t.Helper()
	if _, err := exec.LookPath(argv[0]); err != nil {
		if os.Getenv("GATEHOUSE_REQUIRE_TOOLS") != "" {
			t.Fatalf("%s not installed (make test installs it)", argv[0])
		}
		t.Skipf("%s not installed; run make test", argv[0])
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v: %s", argv, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestSetCheckDelete(t *testing.T) {
	p := newPasswords(t)
	const alice, bob = "alice@pbs", "bob@pbs"
	const pw1, pw2, pwBob = "correct horse battery staple", "Tr0ub4dor&3 ü", "bobs secret"

	if err := p.Check(alice, pw1); !errors.Is(err, ErrBadPassword) {
		t.Fatalf("Check on a missing file = %v; want ErrBadPassword", err)
	}
	if _, err := os.Stat(p.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Check created %s", p.Path())
	}
	if err := p.Set(alice, pw1); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(alice, pw1); err != nil {
		t.Errorf("Check(%s, right) = %v; want nil", alice, err)
	}
	err := p.Check(alice, pw2)
	if !errors.Is(err, ErrBadPassword) {
		t.Errorf("Check(%s, wrong) = %v; want ErrBadPassword", alice, err)
	}
	noSecret(t, err, pw1, pw2)

	// The file as PBS writes it: user name keys, $5$ hashes without rounds, mode 0600.
	raw, err := os.ReadFile(p.Path())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("written file is not JSON: %v\n%s", err, raw)
	}
	h, ok := m["alice"]
	if len(m) != 1 || !ok || !strings.HasPrefix(h, "$5$") || strings.Contains(h, "rounds=") {
		t.Errorf("written file = %s; want {\"alice\": \"$5$<salt>$<key>\"}", raw)
	}
	if want := "{\n  \"alice\": \"" + h + "\"\n}\n"; string(raw) != want {
		t.Errorf("written file = %q; want %q", raw, want)
	}
	if strings.Contains(string(raw), pw1) {
		t.Errorf("written file contains the password")
	}
	fi, err := os.Stat(p.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("written file mode = %04o; want 0600", fi.Mode().Perm())
	}

	// Replacing a password: the old one stops working.
	if err := p.Set(alice, pw2); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(alice, pw1); !errors.Is(err, ErrBadPassword) {
		t.Errorf("Check(%s, old password) = %v; want ErrBadPassword", alice, err)
	}
	if err := p.Check(alice, pw2); err != nil {
		t.Errorf("Check(%s, new password) = %v; want nil", alice, err)
	}

	if err := p.Set(bob, pwBob); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(alice); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(alice, pw2); !errors.Is(err, ErrBadPassword) {
		t.Errorf("Check(%s) after Delete = %v; want ErrBadPassword", alice, err)
	}
	if err := p.Check(bob, pwBob); err != nil {
		t.Errorf("Check(%s) after deleting %s = %v; want nil", bob, alice, err)
	}
	before, _ := os.ReadFile(p.Path())
	if err := p.Delete(alice); !errors.Is(err, ErrNoPassword) {
		t.Errorf("Delete(%s) twice = %v; want ErrNoPassword", alice, err)
	}
	if after, _ := os.ReadFile(p.Path()); !bytes.Equal(before, after) {
		t.Errorf("refused Delete changed the file: %q; want %q", after, before)
	}
	if err := p.Delete(bob); err != nil {
		t.Fatal(err)
	}
	if raw, _ := os.ReadFile(p.Path()); string(raw) != "{}\n" {
		t.Errorf("file after deleting everyone = %q; want %q", raw, "{}\n")
	}
	// No temp files left behind.
	ents, _ := os.ReadDir(filepath.Dir(p.Path()))
	for _, e := range ents {
		if e.Name() != "shadow.json" && e.Name() != ".shadow.json.lck" {
			t.Errorf("unexpected file %s left in the directory", e.Name())
		}
	}
}

// TestMissingUserLikeWrongPassword: a user without an entry gets the same error, after a check
// against the dummy hash.
func TestMissingUserLikeWrongPassword(t *testing.T) {
	p := newPasswords(t)
	if err := p.Set("alice@pbs", "right"); err != nil {
		t.Fatal(err)
	}
	var checked []string
	real := p.check
	p.check = func(hash, password string) (bool, error) {
		checked = append(checked, hash)
		return real(hash, password)
	}
	errWrong := p.Check("alice@pbs", "wrong")
	errMissing := p.Check("mallory@pbs", "wrong")
	if !errors.Is(errWrong, ErrBadPassword) || !errors.Is(errMissing, ErrBadPassword) {
		t.Fatalf("Check(wrong), Check(missing) = %v, %v; want ErrBadPassword for both", errWrong, errMissing)
	}
	if got, want := strings.Replace(errMissing.Error(), "mallory", "alice", 1), errWrong.Error(); got != want {
		t.Errorf("missing user error %q differs from wrong password error %q", errMissing, errWrong)
	}
	if len(checked) != 2 || checked[1] != dummyHash {
		t.Errorf("hashes checked = %q; want alice's then the dummy hash", checked)
	}
	// The dummy hash verifies too: a missing user fails whatever the password.
	p.check = func(string, string) (bool, error) { return true, nil }
	if err := p.Check("mallory@pbs", "anything"); !errors.Is(err, ErrBadPassword) {
		t.Errorf("Check(missing user) with a matching check = %v; want ErrBadPassword", err)
	}
}

// TestDummyHash: the dummy hash has the shape of the hashes Set writes, so checking it costs the
// same; and, measured, it does (minimum of several runs, generous bounds).
func TestDummyHash(t *testing.T) {
	if err := crypthash.CheckScheme(dummyHash); err != nil {
		t.Fatalf("CheckScheme(dummyHash) = %v", err)
	}
	h, err := crypthash.New()
	if err != nil {
		t.Fatal(err)
	}
	made, err := h.Hash("x")
	if err != nil {
		t.Fatal(err)
	}
	shape := func(s string) string {
		parts := strings.Split(s, "$")
		lens := make([]string, len(parts))
		for i, p := range parts {
			lens[i] = fmt.Sprint(len(p))
		}
		return parts[1] + ":" + strings.Join(lens, ",")
	}
	if shape(dummyHash) != shape(made) {
		t.Errorf("dummy hash shape %s; want the shape of Hash's output %s (%s)", shape(dummyHash), shape(made), made)
	}
	if ok, err := h.Check(dummyHash, "x"); ok || err != nil {
		t.Errorf("Check(dummyHash, x) = %v, %v; want false, nil", ok, err)
	}

	p := newPasswords(t)
	if err := p.Set("alice@pbs", "right password"); err != nil {
		t.Fatal(err)
	}
	fastest := func(userid string) time.Duration {
		best := time.Duration(1<<63 - 1)
		for range 7 {
			start := time.Now()
			if err := p.Check(userid, "wrong password"); !errors.Is(err, ErrBadPassword) {
				t.Fatalf("Check(%s) = %v; want ErrBadPassword", userid, err)
			}
			best = min(best, time.Since(start))
		}
		return best
	}
	wrong, missing := fastest("alice@pbs"), fastest("mallory@pbs")
	if ratio := float64(missing) / float64(wrong); ratio < 1.0/3 || ratio > 3 {
		t.Errorf("Check(missing user) took %v, Check(wrong password) %v; want about the same", missing, wrong)
	}
}

func TestCheckPassword(t *testing.T) {
	tests := []struct {
		name, pw string
		ok       bool
	}{
		{"empty", "", false},
		{"one", "a", true},
		{"space", "pass word", true},
		{"max ascii", strings.Repeat("a", MaxPasswordLen), true},
		{"max+1 ascii", strings.Repeat("a", MaxPasswordLen+1), false},
		{"max two-byte chars", strings.Repeat("é", MaxPasswordLen), true},
		{"max+1 two-byte chars", strings.Repeat("é", MaxPasswordLen+1), false},
		{"max four-byte chars", strings.Repeat("😀", MaxPasswordLen), true},
		{"huge", strings.Repeat("a", 1<<20), false},
		{"NUL", "right\x00junk", false},
		{"newline", "a\nb", false},
		{"tab", "a\tb", false},
		{"DEL", "a\x7f", false},
		{"C1 control (not ASCII cntrl)", "a\u0085", true},
		{"invalid UTF-8", "a\xffb", false},
		{"unicode", "Grüße, 世界", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckPassword(tt.pw)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckPassword(%.20q) = %v; want ok %v", tt.pw, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidPassword) {
				t.Errorf("CheckPassword(%.20q) = %v; want ErrInvalidPassword", tt.pw, err)
			}
			noSecret(t, err, tt.pw)
		})
	}
}

func TestBadArguments(t *testing.T) {
	p := newPasswords(t)
	huge := strings.Repeat("s", 1<<20)
	for _, pw := range []string{"", huge, "pw\x00x"} {
		err := p.Check("alice@pbs", pw)
		if !errors.Is(err, ErrBadPassword) || !errors.Is(err, ErrInvalidPassword) {
			t.Errorf("Check(%.10q) = %v; want ErrBadPassword and ErrInvalidPassword", pw, err)
		}
		if err := p.Set("alice@pbs", pw); !errors.Is(err, ErrInvalidPassword) || len(err.Error()) > 200 {
			t.Errorf("Set(%.10q) = %.200v; want a short ErrInvalidPassword", pw, err)
		}
	}
	for _, id := range []string{"alice", "alice@", "al ice@pbs", "alice@pbs!tok", "a/b@pbs", ""} {
		if err := p.Check(id, "x"); !errors.Is(err, authid.ErrSyntax) {
			t.Errorf("Check(%q) = %v; want authid.ErrSyntax", id, err)
		}
		if err := p.Set(id, "x"); !errors.Is(err, authid.ErrSyntax) {
			t.Errorf("Set(%q) = %v; want authid.ErrSyntax", id, err)
		}
		if err := p.Delete(id); !errors.Is(err, authid.ErrSyntax) {
			t.Errorf("Delete(%q) = %v; want authid.ErrSyntax", id, err)
		}
	}
	for _, id := range []string{"alice@pam", "alice@ldap1"} {
		if err := p.Check(id, "x"); !errors.Is(err, ErrWrongRealm) {
			t.Errorf("Check(%q) = %v; want ErrWrongRealm", id, err)
		}
		if err := p.Set(id, "x"); !errors.Is(err, ErrWrongRealm) {
			t.Errorf("Set(%q) = %v; want ErrWrongRealm", id, err)
		}
		if err := p.Delete(id); !errors.Is(err, ErrWrongRealm) {
			t.Errorf("Delete(%q) = %v; want ErrWrongRealm", id, err)
		}
	}
	if _, err := os.Stat(p.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused calls created %s", p.Path())
	}
	if _, err := OpenPasswords(PasswordOptions{}); err == nil {
		t.Errorf("OpenPasswords with no path succeeded")
	}
}

const (
	goodHash = "$5$abc$W6SISEcmf6GfVdGFK0lGBXz2NPDhGZ.FBBMOz418YA7"
	goodFile = `{"alice": "` + goodHash + `"}`
)

func TestBadFiles(t *testing.T) {
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    error
	}{
		{"empty", "", 0o600, ErrCorrupt},
		{"whitespace", " \n", 0o600, ErrCorrupt},
		{"truncated", goodFile[:len(goodFile)/2], 0o600, ErrCorrupt},
		{"truncated before brace", goodFile[:len(goodFile)-1], 0o600, ErrCorrupt},
		{"not json", "alice:" + goodHash + "\n", 0o600, ErrCorrupt},
		{"null", "null", 0o600, ErrCorrupt},
		{"array", `["alice"]`, 0o600, ErrCorrupt},
		{"string", `"alice"`, 0o600, ErrCorrupt},
		{"number value", `{"alice": 5}`, 0o600, ErrCorrupt},
		{"null value", `{"alice": null}`, 0o600, ErrCorrupt},
		{"object value", `{"alice": {"hash": "x"}}`, 0o600, ErrCorrupt},
		{"trailing object", goodFile + "{}", 0o600, ErrCorrupt},
		{"trailing garbage", goodFile + "\nx", 0o600, ErrCorrupt},
		{"missing comma", `{"alice": "$5$a$b" "bob": "$5$a$b"}`, 0o600, ErrCorrupt},
		{"duplicate user", `{"alice": "$5$a$b", "alice": "$5$a$c"}`, 0o600, ErrCorrupt},
		{"key with realm and space", `{"al ice": "$5$a$b"}`, 0o600, ErrCorrupt},
		{"key with colon", `{"a:b": "$5$a$b"}`, 0o600, ErrCorrupt},
		{"empty key", `{"": "$5$a$b"}`, 0o600, ErrCorrupt},
		{"key too long", `{"` + strings.Repeat("a", 61) + `": "$5$a$b"}`, 0o600, ErrCorrupt},
		{"empty hash", `{"alice": ""}`, 0o600, ErrCorrupt},
		{"invalid UTF-8", "{\"al\xffice\": \"$5$a$b\"}", 0o600, ErrCorrupt},
		{"byte order mark", "\ufeff" + goodFile, 0o600, ErrCorrupt},
		{"group readable", goodFile, 0o640, ErrUnsafeFile},
		{"group writable", goodFile, 0o620, ErrUnsafeFile},
		{"world readable", goodFile, 0o604, ErrUnsafeFile},
		{"0644", goodFile, 0o644, ErrUnsafeFile},
		{"0666", goodFile, 0o666, ErrUnsafeFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPasswords(t)
			writeShadow(t, p, tt.content, tt.mode)
			err := p.Check("alice@pbs", "hello")
			if !errors.Is(err, tt.want) {
				t.Fatalf("Check on a %s file = %v; want %v", tt.name, err, tt.want)
			}
			if errors.Is(err, ErrBadPassword) {
				t.Errorf("Check on a %s file = %v; a file error must not look like a wrong password", tt.name, err)
			}
			noSecret(t, err, "hello", goodHash)
			if !strings.Contains(err.Error(), p.Path()) {
				t.Errorf("error %q does not name the file", err)
			}
			// A writer refuses to overwrite a file it cannot read, and leaves it byte-identical.
			for what, write := range map[string]func() error{
				"Set":    func() error { return p.Set("bob@pbs", "bobs password") },
				"Delete": func() error { return p.Delete("alice@pbs") },
			} {
				err := write()
				if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), "refusing to overwrite") {
					t.Errorf("%s over a %s file = %v; want %v, refusing to overwrite", what, tt.name, err, tt.want)
				}
				after, _ := os.ReadFile(p.Path())
				if string(after) != tt.content {
					t.Errorf("%s changed the file: %q; want %q", what, after, tt.content)
				}
			}
		})
	}
}

func TestBadHash(t *testing.T) {
	for name, hash := range map[string]string{
		"md5":        "$1$abc$xyz",
		"plain":      "hello",
		"few rounds": "$5$rounds=999$abc$W6SISEcmf6GfVdGFK0lGBXz2NPDhGZ.FBBMOz418YA7",
		"garbage 5":  "$5$",
	} {
		t.Run(name, func(t *testing.T) {
			p := newPasswords(t)
			content := `{"alice": "` + hash + `"}`
			writeShadow(t, p, content, 0o600)
			err := p.Check("alice@pbs", "hello")
			if !errors.Is(err, ErrBadHash) || errors.Is(err, ErrBadPassword) {
				t.Fatalf("Check with a %s hash = %v; want ErrBadHash, not ErrBadPassword", name, err)
			}
			noSecret(t, err, "hello")
			if name == "plain" {
				noSecret(t, err, hash)
			}
			// The file is readable: other users can be set, and the entry stays as it was.
			if err := p.Set("bob@pbs", "bobs password"); err != nil {
				t.Fatalf("Set next to a %s hash = %v", name, err)
			}
			m, err := readShadow(p.Path())
			if err != nil || m["alice"] != hash {
				t.Errorf("after Set, alice's entry = %q, %v; want %q kept", m["alice"], err, hash)
			}
			if err := p.Set("alice@pbs", "fixed"); err != nil {
				t.Fatal(err)
			}
			if err := p.Check("alice@pbs", "fixed"); err != nil {
				t.Errorf("Check after replacing a %s hash = %v", name, err)
			}
		})
	}
}

func TestBadPaths(t *testing.T) {
	refuses := func(t *testing.T, p *Passwords, want error) {
		t.Helper()
		if err := p.Check("alice@pbs", "x"); !errors.Is(err, want) || !strings.Contains(err.Error(), p.Path()) {
			t.Errorf("Check = %v; want %v naming %s", err, want, p.Path())
		}
		if err := p.Set("alice@pbs", "x"); !errors.Is(err, want) {
			t.Errorf("Set = %v; want %v", err, want)
		}
	}
	t.Run("symlink", func(t *testing.T) {
		p := newPasswords(t)
		target := filepath.Join(t.TempDir(), "real")
		if err := os.WriteFile(target, []byte(goodFile), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p.Path()); err != nil {
			t.Fatal(err)
		}
		refuses(t, p, ErrUnsafeFile)
		if fi, err := os.Lstat(p.Path()); err != nil || fi.Mode().Type() != os.ModeSymlink {
			t.Errorf("the symbolic link was replaced")
		}
	})
	t.Run("directory", func(t *testing.T) {
		p := newPasswords(t)
		if err := os.Mkdir(p.Path(), 0o700); err != nil {
			t.Fatal(err)
		}
		refuses(t, p, ErrUnsafeFile)
	})
	t.Run("fifo", func(t *testing.T) {
		p := newPasswords(t)
		if err := syscall.Mkfifo(p.Path(), 0o600); err != nil {
			t.Fatal(err)
		}
		refuses(t, p, ErrUnsafeFile) // and does not block
	})
	t.Run("too large", func(t *testing.T) {
		p := newPasswords(t)
		f, err := os.OpenFile(p.Path(), os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(MaxFileSize + 1); err != nil {
			t.Fatal(err)
		}
		f.Close()
		refuses(t, p, ErrCorrupt)
		if fi, _ := os.Stat(p.Path()); fi.Size() != MaxFileSize+1 {
			t.Errorf("refused Set changed the file size to %d", fi.Size())
		}
	})
	t.Run("other owner", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("only root can give a file to another user")
		}
		p := newPasswords(t)
		writeShadow(t, p, goodFile, 0o600)
		if err := os.Chown(p.Path(), 65534, 65534); err != nil {
			t.Fatal(err)
		}
		refuses(t, p, ErrUnsafeFile)
	})
	t.Run("unreadable", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root reads any file")
		}
		p := newPasswords(t)
		writeShadow(t, p, goodFile, 0o000)
		refuses(t, p, os.ErrPermission)
	})
	t.Run("no directory", func(t *testing.T) {
		p, err := OpenPasswords(PasswordOptions{Path: filepath.Join(t.TempDir(), "missing", "shadow.json")})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Check("alice@pbs", "x"); !errors.Is(err, ErrBadPassword) {
			t.Errorf("Check with a missing directory = %v; want ErrBadPassword (no passwords)", err)
		}
		if err := p.Set("alice@pbs", "x"); err == nil || !strings.Contains(err.Error(), "missing") {
			t.Errorf("Set with a missing directory = %v; want an error naming it", err)
		}
	})
}

// TestPBSFile reads a file in the exact form PBS writes (serde_json::to_vec_pretty, no final
// newline) and keeps its other entries byte-for-byte across a Set.
func TestPBSFile(t *testing.T) {
	p := newPasswords(t)
	const pbs = "{\n  \"alice\": \"" + goodHash + "\",\n  \"backup-op\": \"$5$abc$W6SISEcmf6GfVdGFK0lGBXz2NPDhGZ.FBBMOz418YA7\"\n}"
	writeShadow(t, p, pbs, 0o600)
	if err := p.Check("alice@pbs", "not it"); !errors.Is(err, ErrBadPassword) {
		t.Errorf("Check(alice, wrong) on a PBS file = %v; want ErrBadPassword", err)
	}
	if err := p.Set("carol@pbs", "carols password"); err != nil {
		t.Fatal(err)
	}
	m, err := readShadow(p.Path())
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 3 || m["alice"] != goodHash || m["backup-op"] != goodHash {
		t.Errorf("after Set the entries are %q; want alice and backup-op unchanged plus carol", m)
	}
}

// TestForeignHashes writes hashes made by openssl passwd and mkpasswd into shadow.json.
func TestForeignHashes(t *testing.T) {
	const secret = "Correct horse: battery staple ü"
	tools := []struct {
		name string
		argv []string
	}{
		{"openssl -5", []string{"openssl", "passwd", "-5", "-stdin"}},
		{"openssl -6", []string{"openssl", "passwd", "-6", "-stdin"}},
		{"mkpasswd yescrypt", []string{"mkpasswd", "-m", "yescrypt", "--stdin"}},
		{"mkpasswd sha512crypt rounds", []string{"mkpasswd", "-m", "sha512crypt", "-R", "1000", "--stdin"}},
	}
	for _, tt := range tools {
		t.Run(tt.name, func(t *testing.T) {
			hash := tool(t, secret+"\n", tt.argv...)
			p := newPasswords(t)
			content, err := json.Marshal(map[string]string{"alice": hash})
			if err != nil {
				t.Fatal(err)
			}
			writeShadow(t, p, string(content), 0o600)
			if err := p.Check("alice@pbs", secret); err != nil {
				t.Errorf("Check(%s hash %q, right) = %v; want nil", tt.name, hash, err)
			}
			if err := p.Check("alice@pbs", secret+"x"); !errors.Is(err, ErrBadPassword) {
				t.Errorf("Check(%s hash, wrong) = %v; want ErrBadPassword", tt.name, err)
			}
		})
	}
}

// TestConcurrentSet: writers in goroutines, through two Passwords on the same file, lose no
// update (the exclusive lock serialises read-modify-replace).
func TestConcurrentSet(t *testing.T) {
	p1 := newPasswords(t)
	p2, err := OpenPasswords(PasswordOptions{Path: p1.Path()})
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 12, 3
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		p := p1
		if w%2 == 1 {
			p = p2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				errs <- p.Set(fmt.Sprintf("user%d-%d@pbs", w, i), fmt.Sprintf("password %d %d", w, i))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	m, err := readShadow(p1.Path())
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != writers*each {
		t.Errorf("file has %d entries after %d concurrent Sets; want %d", len(m), writers*each, writers*each)
	}
	for w := range writers {
		for i := range each {
			if err := p2.Check(fmt.Sprintf("user%d-%d@pbs", w, i), fmt.Sprintf("password %d %d", w, i)); err != nil {
				t.Errorf("Check(user%d-%d) = %v", w, i, err)
			}
		}
	}
}

// TestLockTimeout: a writer waits for the lock at most LockTimeout, then fails naming the lock.
func TestLockTimeout(t *testing.T) {
	dir := t.TempDir()
	p, err := OpenPasswords(PasswordOptions{
		Path:        filepath.Join(dir, "shadow.json"),
		LockPath:    filepath.Join(dir, "shadow.lck"),
		LockTimeout: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	lk, err := lockfile.Exclusive(filepath.Join(dir, "shadow.lck"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Unlock()
	err = p.Set("alice@pbs", "x")
	if !errors.Is(err, lockfile.ErrTimeout) || !strings.Contains(err.Error(), "shadow.lck") {
		t.Errorf("Set while the lock is held = %v; want lockfile.ErrTimeout naming the lock", err)
	}
	// Readers take no lock.
	if err := p.Check("alice@pbs", "x"); !errors.Is(err, ErrBadPassword) {
		t.Errorf("Check while the lock is held = %v; want ErrBadPassword", err)
	}
}

func FuzzParseShadow(f *testing.F) {
	f.Add([]byte(goodFile))
	f.Add([]byte("{\n  \"alice\": \"" + goodHash + "\",\n  \"bob\": \"$y$j9T$a$b\"\n}"))
	f.Add([]byte(`{}`))
	f.Add([]byte(``))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"a": 1}`))
	f.Add([]byte(`{"a": "x", "a": "y"}`))
	f.Add([]byte(`{"a@b": "<&>\u2028"}`))
	f.Add([]byte(`{"a": "x"} {}`))
	f.Add([]byte(`{"a": {"b": "c"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseShadow(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("parseShadow(%q) error %v does not wrap ErrCorrupt", data, err)
			}
			return
		}
		enc, err := encodeShadow(m)
		if err != nil {
			t.Fatalf("encodeShadow(parseShadow(%q)) = %v", data, err)
		}
		m2, err := parseShadow(enc)
		if err != nil || len(m2) != len(m) {
			t.Fatalf("parseShadow(encodeShadow(parseShadow(%q))) = %v, %v; want round trip", data, m2, err)
		}
		for k, v := range m {
			if m2[k] != v {
				t.Fatalf("round trip changed %q: %q -> %q", k, v, m2[k])
			}
		}
		// Every parsed key is a user name of the pbs realm.
		for k := range m {
			if _, err := authid.ParseUserid(k + "@" + RealmPBS); err != nil {
				t.Fatalf("parseShadow(%q) accepted key %q: %v", data, k, err)
			}
		}
	})
}
