package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"gatehouse/layout"
)

// TestGatectl runs gatectl end to end: the binary is built once and run as a user runs it, with
// --config-dir and --run-dir of a real apid + proxyd stack (one per subtest); outputs, JSON and
// exit codes are checked, and what it did is checked through proxyd.
func TestGatectl(t *testing.T) {
	bin := buildGatectl(t)
	t.Run("users and tokens", func(t *testing.T) { gatectlUsersAndTokens(t, bin) })
	t.Run("tfa", func(t *testing.T) { gatectlTFA(t, bin) })
	t.Run("status and keys", func(t *testing.T) { gatectlStatusAndKeys(t, bin) })
	t.Run("apid stopped", func(t *testing.T) { gatectlApidStopped(t, bin) })
}

// buildGatectl builds cmd/gatectl into a temp dir and returns its path.
func buildGatectl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gatectl")
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build gatectl: %v", err)
	}
	out, err := exec.Command(gobin, "build", "-o", bin, "gatehouse/cmd/gatectl").CombinedOutput()
	if err != nil {
		t.Fatalf("go build gatectl: %v\n%s", err, out)
	}
	return bin
}

// ctl runs the gatectl binary against one set of directories.
type ctl struct {
	bin  string
	dirs layout.Dirs
}

// result is one run of gatectl.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// run runs gatectl with the directories' flags, then args, with stdin.
func (c ctl) run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(c.bin, append([]string{"--config-dir", c.dirs.Config, "--run-dir", c.dirs.Run}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running gatectl %q: %v", args, err)
	}
	return result{code, out.String(), errb.String()}
}

// ok runs gatectl and fails the test unless it exits 0 with an empty stderr.
func (c ctl) ok(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	r := c.run(t, stdin, args...)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("gatectl %q: %v; want exit 0 and nothing on stderr", args, r)
	}
	return r.stdout
}

// json runs gatectl with --output-format json and decodes its stdout into v.
func (c ctl) json(t *testing.T, v any, args ...string) result {
	t.Helper()
	r := c.run(t, "", append([]string{"--output-format", "json"}, args...)...)
	if r.code != 0 {
		t.Fatalf("gatectl %q: %v; want exit 0", args, r)
	}
	if strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("gatectl %q printed %q; want one line of JSON", args, r.stdout)
	}
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("gatectl %q printed %q: %v", args, r.stdout, err)
	}
	return r
}

// expect checks code and that stderr is one "gatectl: " error line containing want.
func (r result) expect(t *testing.T, code int, want string) {
	t.Helper()
	if r.code != code || !strings.HasPrefix(r.stderr, "gatectl: ") || !strings.Contains(r.stderr, want) {
		t.Errorf("%v; want exit %d and stderr \"gatectl: ...%s...\"", r, code, want)
	}
}

// tokenStatus is proxyd's answer to GET /version with an API token.
func (st *stack) tokenStatus(t *testing.T, tokenid, secret string) int {
	t.Helper()
	return st.versionWith(t, http.Header{"Authorization": {"PBSAPIToken=" + tokenid + ":" + secret}})
}

// loginStatus is proxyd's answer to a password login.
func (st *stack) loginStatus(t *testing.T, user, password string) int {
	t.Helper()
	return st.do(t, call{method: "POST", path: "/access/ticket", form: map[string][]string{"username": {user}, "password": {password}}}).status
}

func gatectlUsersAndTokens(t *testing.T, bin string) {
	st := start(t, options{})
	g := ctl{bin, st.dirs}

	t.Run("user add and login", func(t *testing.T) {
		g.ok(t, "alice-pass-1\n", "user", "add", "alice@pbs", "--password-stdin", "--email", "alice@example.org",
			"--firstname", "Alice", "--comment", "first user", "--expire", "2099-01-01")
		st.login(t, "alice@pbs", "alice-pass-1")
		var users []struct {
			Userid  string `json:"userid"`
			Enable  bool   `json:"enable"`
			Expire  int64  `json:"expire"`
			Email   string `json:"email"`
			Comment string `json:"comment"`
		}
		g.json(t, &users, "user", "list")
		i := slices.IndexFunc(users, func(u struct {
			Userid  string `json:"userid"`
			Enable  bool   `json:"enable"`
			Expire  int64  `json:"expire"`
			Email   string `json:"email"`
			Comment string `json:"comment"`
		}) bool {
			return u.Userid == "alice@pbs"
		})
		want := time.Date(2099, 1, 1, 0, 0, 0, 0, time.Local).Unix()
		if i < 0 || !users[i].Enable || users[i].Expire != want || users[i].Email != "alice@example.org" || users[i].Comment != "first user" {
			t.Errorf("user list --output-format json = %+v; want alice@pbs enabled, expiring at %d, with e-mail and comment", users, want)
		}
		text := g.ok(t, "", "user", "list")
		lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "USERID ") || !strings.Contains(text, "alice@pbs  yes") || !strings.Contains(text, "root@pam   yes") {
			t.Errorf("user list =\n%s\nwant a header, root@pam and alice@pbs, aligned", text)
		}
		pretty := g.ok(t, "", "--output-format", "json-pretty", "user", "show", "alice@pbs")
		if !strings.Contains(pretty, "\n  \"userid\": \"alice@pbs\",\n") {
			t.Errorf("user show --output-format json-pretty = %q; want indented JSON", pretty)
		}
		// Adding an existing user fails and leaves their password alone.
		g.run(t, "other-pass\n", "user", "add", "alice@pbs", "--password-stdin").expect(t, 1, "adding user alice@pbs: user alice@pbs already exists")
		st.login(t, "alice@pbs", "alice-pass-1")
		g.run(t, "", "user", "add", "bob@pbs").expect(t, 2, "stdin is not a terminal")
	})

	t.Run("password typed on a terminal", func(t *testing.T) {
		// script(1) (util-linux) gives gatectl a real pseudo-terminal as stdin; the typed lines
		// are queued on it before gatectl turns echo off, so only the prompts are checked.
		scriptBin, err := exec.LookPath("script")
		if err != nil {
			t.Fatalf("script (util-linux) is required: %v", err)
		}
		onTerminal := func(typed string, args ...string) result {
			line := g.bin + " --config-dir " + st.dirs.Config + " --run-dir " + st.dirs.Run + " " + strings.Join(args, " ")
			cmd := exec.Command(scriptBin, "-qec", line, "/dev/null")
			cmd.Stdin = strings.NewReader(typed)
			out, err := cmd.Output()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			return result{code: code, stdout: string(out)}
		}
		r := onTerminal("dora-pass-1\ndora-pass-1\n", "user", "add", "dora@pbs")
		if r.code != 0 || !strings.Contains(r.stdout, "New password for dora@pbs: ") || !strings.Contains(r.stdout, "Repeat the password: ") {
			t.Fatalf("user add on a terminal: %v; want exit 0 and both prompts", r)
		}
		st.login(t, "dora@pbs", "dora-pass-1")
		r = onTerminal("dora-pass-2\ndora-pass-X\n", "user", "passwd", "dora@pbs")
		if r.code != 2 || !strings.Contains(r.stdout, "gatectl: the two passwords differ") {
			t.Errorf("user passwd with two different passwords: %v; want exit 2", r)
		}
		st.login(t, "dora@pbs", "dora-pass-1")
	})

	t.Run("user update and disable", func(t *testing.T) {
		g.ok(t, "carl-pass-1\n", "user", "add", "carl@pbs", "--password-stdin")
		st.login(t, "carl@pbs", "carl-pass-1")
		g.ok(t, "", "user", "update", "carl@pbs", "--enable=false", "--lastname", "Sagan")
		if s := st.loginStatus(t, "carl@pbs", "carl-pass-1"); s != 401 {
			t.Errorf("login of a user disabled by gatectl = %d; want 401", s)
		}
		out := g.ok(t, "", "user", "show", "carl@pbs")
		if !strings.Contains(out, "enabled:   no\n") || !strings.Contains(out, "lastname:  Sagan\n") {
			t.Errorf("user show carl@pbs =\n%s\nwant enabled: no, lastname: Sagan", out)
		}
		g.ok(t, "", "user", "remove", "carl@pbs")
		g.run(t, "", "user", "show", "carl@pbs").expect(t, 4, "no such user carl@pbs")
	})

	t.Run("passwd", func(t *testing.T) {
		before := st.login(t, "alice@pbs", "alice-pass-1")
		g.ok(t, "alice-pass-2\n", "user", "passwd", "alice@pbs", "--password-stdin")
		if s := st.loginStatus(t, "alice@pbs", "alice-pass-1"); s != 401 {
			t.Errorf("login with the old password after gatectl passwd = %d; want 401", s)
		}
		st.login(t, "alice@pbs", "alice-pass-2")
		if s := st.versionWith(t, before.header(false)); s != 401 {
			t.Errorf("a ticket from before the password change = %d; want 401", s)
		}
		g.run(t, "pw\n", "user", "passwd", "nobody@pbs", "--password-stdin").expect(t, 4, "no such user nobody@pbs")
		g.run(t, "", "user", "passwd", "root@pam").expect(t, 1, `passwords of realm "pam" are not managed`)
	})

	t.Run("tokens", func(t *testing.T) {
		var gen struct {
			Tokenid string `json:"tokenid"`
			Value   string `json:"value"`
		}
		r := g.json(t, &gen, "token", "generate", "alice@pbs", "ci", "--comment", "for CI")
		if gen.Tokenid != "alice@pbs!ci" || gen.Value == "" || !strings.Contains(r.stderr, "shown only this once") {
			t.Fatalf("token generate = %+v, stderr %q; want the token id, its value and a warning", gen, r.stderr)
		}
		if s := st.tokenStatus(t, gen.Tokenid, gen.Value); s != 200 {
			t.Fatalf("GET /version with the generated token = %d; want 200", s)
		}
		out := g.run(t, "", "token", "generate", "alice@pbs", "deploy")
		if out.code != 0 || !strings.HasPrefix(out.stdout, "tokenid: alice@pbs!deploy\nvalue:   ") {
			t.Fatalf("token generate (text) = %v", out)
		}
		deploySecret := strings.TrimSpace(strings.TrimPrefix(strings.Split(out.stdout, "\n")[1], "value:"))
		if s := st.tokenStatus(t, "alice@pbs!deploy", deploySecret); s != 200 {
			t.Errorf("GET /version with the secret printed as text = %d; want 200", s)
		}

		var rot struct {
			Tokenid string `json:"tokenid"`
			Secret  string `json:"secret"`
		}
		r = g.json(t, &rot, "token", "rotate", "alice@pbs", "ci")
		if rot.Tokenid != "alice@pbs!ci" || rot.Secret == "" || rot.Secret == gen.Value || !strings.Contains(r.stderr, "shown only this once") {
			t.Fatalf("token rotate = %+v, stderr %q", rot, r.stderr)
		}
		if s := st.tokenStatus(t, gen.Tokenid, gen.Value); s != 401 {
			t.Errorf("the old secret after gatectl token rotate = %d; want 401", s)
		}
		if s := st.tokenStatus(t, gen.Tokenid, rot.Secret); s != 200 {
			t.Errorf("the new secret after gatectl token rotate = %d; want 200", s)
		}

		list := g.ok(t, "", "token", "list", "alice@pbs")
		if !strings.Contains(list, "TOKENID") || !strings.Contains(list, "alice@pbs!ci      yes      never   ok      for CI\n") {
			t.Errorf("token list =\n%s", list)
		}
		g.ok(t, "", "token", "update", "alice@pbs", "deploy", "--enable=false")
		if s := st.tokenStatus(t, "alice@pbs!deploy", deploySecret); s != 401 {
			t.Errorf("a token disabled by gatectl = %d; want 401", s)
		}

		g.ok(t, "", "token", "remove", "alice@pbs", "ci")
		if s := st.tokenStatus(t, gen.Tokenid, rot.Secret); s != 401 {
			t.Errorf("a removed token = %d; want 401", s)
		}
		g.run(t, "", "token", "remove", "alice@pbs", "ci").expect(t, 4, "removing token alice@pbs!ci")
		g.run(t, "", "token", "rotate", "alice@pbs", "ci").expect(t, 4, "rotating token alice@pbs!ci")
		g.run(t, "", "token", "list", "nobody@pbs").expect(t, 4, "no such user nobody@pbs")
		var tokens []struct {
			Tokenid string `json:"tokenid"`
			Enable  bool   `json:"enable"`
		}
		g.json(t, &tokens, "token", "list", "alice@pbs")
		if len(tokens) != 1 || tokens[0].Tokenid != "alice@pbs!deploy" || tokens[0].Enable {
			t.Errorf("token list --output-format json = %+v; want only alice@pbs!deploy, disabled", tokens)
		}
	})

	t.Run("completion", func(t *testing.T) {
		bash := g.ok(t, "", "completion", "bash")
		if !strings.Contains(bash, "__start_gatectl") {
			t.Errorf("completion bash printed %d bytes without __start_gatectl", len(bash))
		}
		for _, shell := range []string{"zsh", "fish"} {
			if out := g.ok(t, "", "completion", shell); len(out) < 100 {
				t.Errorf("completion %s printed %q", shell, out)
			}
		}
		words := func(args ...string) []string {
			r := g.run(t, "", append([]string{"__complete"}, args...)...)
			if r.code != 0 {
				t.Fatalf("__complete %q: %v", args, r)
			}
			out := r.stdout
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], ":") {
				t.Fatalf("__complete %q printed %q; want a directive last", args, out)
			}
			return lines[:len(lines)-1]
		}
		if got := words("user", "update", ""); !slices.Contains(got, "alice@pbs") || !slices.Contains(got, "root@pam") {
			t.Errorf("completing user update: %q; want alice@pbs and root@pam", got)
		}
		if got := words("user", "show", "al"); !slices.Equal(got, []string{"alice@pbs"}) {
			t.Errorf("completing user show al: %q; want alice@pbs", got)
		}
		if got := words("token", "rotate", "alice@pbs", ""); !slices.Equal(got, []string{"deploy"}) {
			t.Errorf("completing token rotate alice@pbs: %q; want deploy", got)
		}
	})

	t.Run("exit codes", func(t *testing.T) {
		g.run(t, "", "user", "list", "--bogus").expect(t, 2, "unknown flag: --bogus")
		g.run(t, "", "user", "remove").expect(t, 2, "takes USERID")
		g.run(t, "", "--output-format", "xml", "user", "list").expect(t, 2, "--output-format")
		g.run(t, "", "user", "remove", "nobody@pbs").expect(t, 4, "removing user nobody@pbs")
		g.run(t, "", "user", "update", "nobody@pbs", "--comment", "x").expect(t, 4, "updating user nobody@pbs")
		g.run(t, "", "tfa", "unlock", "nobody@pbs").expect(t, 4, "no such user nobody@pbs")
		g.run(t, "", "tfa", "list", "nobody@pbs").expect(t, 4, "no such user nobody@pbs")
		g.run(t, "", "user", "remove", "root@pam").expect(t, 1, "root@pam cannot be deleted")
		wrong := ctl{g.bin, layout.Dirs{Config: st.dirs.Config, Run: t.TempDir()}}
		wrong.run(t, "", "user", "list").expect(t, 3, "apid unreachable at "+wrong.dirs.Socket()+": no such file or directory")
	})
}

func gatectlTFA(t *testing.T, bin string) {
	st := start(t, options{})
	g := ctl{bin, st.dirs}
	g.ok(t, "tina-pass-1\n", "user", "add", "tina@pbs", "--password-stdin")

	// Recovery codes made by gatectl log in through proxyd, once each.
	var rec struct {
		ID       string   `json:"id"`
		Recovery []string `json:"recovery"`
	}
	r := g.json(t, &rec, "tfa", "recovery", "tina@pbs")
	if rec.ID != "recovery" || len(rec.Recovery) != 10 || !strings.Contains(r.stderr, "shown only this once") {
		t.Fatalf("tfa recovery = %+v, stderr %q; want 10 codes and a warning", rec, r.stderr)
	}
	for _, c := range rec.Recovery[:3] {
		tk, ch := st.tfaStep1(t, "tina@pbs", "tina-pass-1", nil)
		if ch.Recovery == nil || ch.TOTP {
			t.Fatalf("challenge %s; want recovery only", ch.raw)
		}
		st.fullSession(t, st.tfaStep2(t, "tina@pbs", tk, "recovery:"+c, nil), "tina@pbs")
		if a := st.tfaStep2(t, "tina@pbs", tk, "recovery:"+c, nil); a.status != 401 {
			t.Errorf("a recovery code used twice = %d; want 401", a.status)
		}
	}
	g.run(t, "", "tfa", "recovery", "tina@pbs").expect(t, 1, "--replace")
	text := g.run(t, "", "tfa", "recovery", "tina@pbs", "--replace")
	codes := strings.Fields(text.stdout)
	if text.code != 0 || len(codes) != 10 || slices.Contains(codes, rec.Recovery[5]) {
		t.Fatalf("tfa recovery --replace = %v; want 10 new codes, one per line", text)
	}
	tk, _ := st.tfaStep1(t, "tina@pbs", "tina-pass-1", nil)
	if a := st.tfaStep2(t, "tina@pbs", tk, "recovery:"+rec.Recovery[5], nil); a.status != 401 {
		t.Errorf("a replaced recovery code = %d; want 401", a.status)
	}
	st.fullSession(t, st.tfaStep2(t, "tina@pbs", tk, "recovery:"+codes[9], nil), "tina@pbs")

	// A TOTP entry, locked by 8 wrong codes: tfa list shows the lock, tfa unlock lifts it.
	s0 := totpStep()
	key := newOTPKey(t)
	sess := st.fullSession(t, st.tfaStep2(t, "tina@pbs", tk, "recovery:"+codes[8], nil), "tina@pbs")
	totpID := st.enrolTOTP(t, sess, "tina-pass-1", key, key.code(t, s0))
	tk, _ = st.tfaStep1(t, "tina@pbs", "tina-pass-1", nil)
	for _, c := range key.wrongCodes(t, s0, 8) {
		if a := st.tfaStep2(t, "tina@pbs", tk, "totp:"+c, nil); a.status != 401 {
			t.Fatalf("a wrong totp code = %d; want 401", a.status)
		}
	}
	var list []struct {
		Userid  string `json:"userid"`
		Entries []struct {
			Type string `json:"type"`
			ID   string `json:"id"`
		} `json:"entries"`
		TOTPLocked bool `json:"totp-locked"`
	}
	g.json(t, &list, "tfa", "list", "tina@pbs")
	if len(list) != 1 || list[0].Userid != "tina@pbs" || !list[0].TOTPLocked || len(list[0].Entries) != 2 || list[0].Entries[1].ID != totpID {
		t.Fatalf("tfa list tina@pbs = %+v; want recovery and totp %s, totp locked", list, totpID)
	}
	if out := g.ok(t, "", "tfa", "list"); !strings.Contains(out, "tina@pbs  totp") || !strings.Contains(out, "totp locked") {
		t.Errorf("tfa list =\n%s\nwant tina's totp row with the lock", out)
	}
	var unlock struct {
		Userid    string `json:"userid"`
		WasLocked bool   `json:"was-locked"`
	}
	g.json(t, &unlock, "tfa", "unlock", "tina@pbs")
	if unlock.Userid != "tina@pbs" || !unlock.WasLocked {
		t.Errorf("tfa unlock = %+v; want was-locked true", unlock)
	}
	if out := g.ok(t, "", "tfa", "unlock", "tina@pbs"); out != "tina@pbs was not locked\n" {
		t.Errorf("tfa unlock again = %q", out)
	}
	st.fullSession(t, st.tfaStep2(t, "tina@pbs", tk, "totp:"+key.code(t, s0+1), nil), "tina@pbs")

	// Completion of entry ids, then removal: with both entries gone the password alone logs in.
	out := g.run(t, "", "__complete", "tfa", "remove", "tina@pbs", "").stdout
	if !strings.Contains(out, totpID+"\ttotp phone\n") || !strings.Contains(out, "recovery\trecovery") {
		t.Errorf("completing tfa remove tina@pbs: %q; want %s and recovery", out, totpID)
	}
	g.ok(t, "", "tfa", "remove", "tina@pbs", totpID)
	g.run(t, "", "tfa", "remove", "tina@pbs", totpID).expect(t, 4, "no such entry")
	g.ok(t, "", "tfa", "remove", "tina@pbs", "recovery")
	st.login(t, "tina@pbs", "tina-pass-1")
	if out := g.ok(t, "", "tfa", "list", "tina@pbs", "--output-format", "json"); out != "[]\n" && !strings.Contains(out, `"entries":[]`) {
		t.Errorf("tfa list after removing every entry = %q", out)
	}
}

// gcStatus is gatectl status's JSON.
type gcStatus struct {
	Apid struct {
		Up     bool       `json:"up"`
		Error  string     `json:"error"`
		Status apidStatus `json:"status"`
	} `json:"apid"`
	Proxyd struct {
		Up    bool   `json:"up"`
		URL   string `json:"url"`
		Error string `json:"error"`
	} `json:"proxyd"`
	Generations struct {
		Values map[string]uint64 `json:"values"`
		Error  string            `json:"error"`
	} `json:"generations"`
}

func gatectlStatusAndKeys(t *testing.T, bin string) {
	st := start(t, options{})
	g := ctl{bin, st.dirs}
	proxyURL := strings.TrimSuffix(st.url, "/api2/json")
	st.addUser(t, "kim@pbs", "kim-pass-1")
	before := st.login(t, "kim@pbs", "kim-pass-1")

	var s gcStatus
	g.json(t, &s, "status", "--proxy-url", proxyURL)
	if !s.Apid.Up || s.Apid.Status.PID <= 0 || s.Apid.Status.Key.Algorithm != "Ed25519" || !s.Proxyd.Up || s.Generations.Error != "" {
		t.Fatalf("status = %+v; want apid and proxyd up, the key and the generations", s)
	}
	if !maps.Equal(s.Generations.Values, s.Apid.Status.Generations) || s.Generations.Values["user"] == 0 || len(s.Generations.Values) != 4 {
		t.Errorf("generations from the file %v, from apid %v; want the same 4, user bumped", s.Generations.Values, s.Apid.Status.Generations)
	}
	text := g.ok(t, "", "status", "--proxy-url", proxyURL)
	for _, want := range []string{"apid:        up, pid ", "signing key: Ed25519 SHA256:", "proxyd:      up (" + proxyURL + ")", "generations: user "} {
		if !strings.Contains(text, want) {
			t.Errorf("status =\n%s\nwant a line with %q", text, want)
		}
	}

	// proxyd down (nothing listens at the URL): reported, exit code still 0.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "https://" + ln.Addr().String()
	ln.Close()
	g.json(t, &s, "status", "--proxy-url", closed)
	if !s.Apid.Up || s.Proxyd.Up || !strings.Contains(s.Proxyd.Error, "connection refused") {
		t.Errorf("status with proxyd down = %+v; want apid up, proxyd down", s.Proxyd)
	}

	// key rotate: a new key; the old one listed with its end; old and new tickets work.
	var k keyInfo
	g.json(t, &k, "key", "rotate")
	old := s.Apid.Status.Key.Fingerprint
	if k.Algorithm != "Ed25519" || k.Fingerprint == old || len(k.Previous) != 1 || k.Previous[0].Fingerprint != old {
		t.Fatalf("key rotate = %+v; want a new Ed25519 key and %s as previous", k, old)
	}
	if until := time.Unix(k.Previous[0].ValidUntil, 0); until.Before(time.Now().Add(2*time.Hour-time.Minute)) || until.After(time.Now().Add(2*time.Hour+time.Minute)) {
		t.Errorf("old tickets valid until %v; want about 2 h from now", until)
	}
	if got := st.versionWith(t, before.header(false)); got != 200 {
		t.Errorf("a ticket from before gatectl key rotate = %d; want 200", got)
	}
	st.login(t, "kim@pbs", "kim-pass-1")
	g.json(t, &s, "status", "--proxy-url", proxyURL)
	if s.Apid.Status.Key.Fingerprint != k.Fingerprint || s.Generations.Values["keys"] != s.Apid.Status.Generations["keys"] {
		t.Errorf("status after the rotation: key %s, generations %v / %v; want %s and equal", s.Apid.Status.Key.Fingerprint,
			s.Generations.Values, s.Apid.Status.Generations, k.Fingerprint)
	}
	text = g.ok(t, "", "key", "rotate")
	if !strings.HasPrefix(text, "algorithm:   Ed25519\nfingerprint: SHA256:") || strings.Count(text, "previous:    SHA256:") != 2 {
		t.Errorf("key rotate (text) =\n%s", text)
	}

	// --revoke-sessions: no previous key is kept, every earlier ticket ends at once.
	current := st.login(t, "kim@pbs", "kim-pass-1")
	text = g.ok(t, "", "key", "rotate", "--revoke-sessions")
	if strings.Contains(text, "previous:") || !strings.Contains(text, "sessions:    every ticket issued before the rotation is revoked") {
		t.Errorf("key rotate --revoke-sessions =\n%s\nwant no previous key and the sessions line", text)
	}
	for name, s := range map[string]session{"a session of the key just replaced": current, "a session of an older key": before} {
		if got := st.versionWith(t, s.header(false)); got != 401 {
			t.Errorf("%s after key rotate --revoke-sessions = %d; want 401", name, got)
		}
	}
	if got := st.versionWith(t, st.login(t, "kim@pbs", "kim-pass-1").header(false)); got != 200 {
		t.Errorf("a new session after key rotate --revoke-sessions = %d; want 200", got)
	}
}

// gatectlApidStopped stops a real apid: gatectl exits 3, and status still shows the
// generation counters, read from the file apid left behind.
func gatectlApidStopped(t *testing.T, bin string) {
	base := t.TempDir()
	dirs := layout.Dirs{Config: filepath.Join(base, "etc"), Run: filepath.Join(base, "run")}
	args, _ := json.Marshal([]string{"--config-dir", dirs.Config, "--run-dir", dirs.Run, "--proxy-user", fmt.Sprint(os.Getuid())})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=apid", argsEnv+"="+string(args))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	var log strings.Builder
	for sc.Scan() && !strings.Contains(sc.Text(), "msg=listening") {
		log.WriteString(sc.Text() + "\n")
	}
	if sc.Err() != nil || !strings.Contains(sc.Text(), "msg=listening") {
		cmd.Wait()
		t.Fatalf("apid exited before listening:\n%s", log.String())
	}
	go func() {
		for sc.Scan() {
		}
	}()
	g := ctl{bin, dirs}
	g.ok(t, "", "user", "add", "lee@pbs", "--no-password")
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("apid: %v", err)
	}

	r := g.run(t, "", "user", "list")
	r.expect(t, 3, "apid unreachable at "+dirs.Socket())
	r = g.run(t, "", "--output-format", "json", "status", "--proxy-url", "https://127.0.0.1:1")
	r.expect(t, 3, "status: apid unreachable")
	var s gcStatus
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("status with apid stopped printed %q: %v", r.stdout, err)
	}
	if s.Apid.Up || s.Apid.Error == "" || s.Proxyd.Up || s.Generations.Values["user"] < 2 || s.Generations.Values["keys"] == 0 {
		t.Errorf("status with apid stopped = %+v; want apid and proxyd down, the generations read from the file", s)
	}
	text := g.run(t, "", "status", "--proxy-url", "https://127.0.0.1:1")
	if text.code != 3 || !strings.Contains(text.stdout, "apid:        down: apid unreachable") || !strings.Contains(text.stdout, "generations: user ") {
		t.Errorf("status (text) with apid stopped = %v", text)
	}
}
