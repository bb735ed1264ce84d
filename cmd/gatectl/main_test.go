package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testPrinter(format string) (printer, *bytes.Buffer) {
	var b bytes.Buffer
	return printer{format: format, w: &b, loc: time.UTC}, &b
}

func TestTable(t *testing.T) {
	p, b := testPrinter("text")
	err := p.userTable([]userJSON{
		{Userid: "root@pam", Enable: true, Comment: "Superuser"},
		{Userid: "alice@pbs", Expire: 1893456000, Firstname: "Alice", Lastname: "Liddell", Email: "a@example.org",
			Comment: "tab\there\x1b[2J", TOTPLocked: true, TFALockedUntil: 1893459600},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `USERID     ENABLED  EXPIRE                   NAME           EMAIL          COMMENT           TFA LOCK
root@pam   yes      never                    -              -              Superuser         -
alice@pbs  no       2030-01-01 00:00:00 UTC  Alice Liddell  a@example.org  tab\there\x1b[2J  totp locked; all factors locked until 2030-01-01 01:00:00 UTC
`
	if b.String() != want {
		t.Errorf("userTable =\n%s\nwant\n%s", b.String(), want)
	}
}

func TestTFATable(t *testing.T) {
	var list []tfaUserJSON
	if err := json.Unmarshal([]byte(`[{"userid":"bob@pbs","entries":[{"type":"recovery","id":"recovery","created":1893456000},
		{"type":"totp","id":"t1","description":"phone","created":1893456000,"enable":false}],"totp-locked":true},
		{"userid":"eve@pbs","entries":[]}]`), &list); err != nil {
		t.Fatal(err)
	}
	p, b := testPrinter("text")
	if err := p.tfaTable(list); err != nil {
		t.Fatal(err)
	}
	want := `USERID   TYPE      ID        DESCRIPTION  CREATED                  ENABLED  LOCK
bob@pbs  recovery  recovery  -            2030-01-01 00:00:00 UTC  yes      totp locked
bob@pbs  totp      t1        phone        2030-01-01 00:00:00 UTC  no       totp locked
eve@pbs  -         -         -            -                        -        -
`
	if b.String() != want {
		t.Errorf("tfaTable =\n%s\nwant\n%s", b.String(), want)
	}
}

func TestFieldsAndJSON(t *testing.T) {
	p, b := testPrinter("text")
	p.fields([]field{{"tokenid", "a@pbs!ci"}, {"value", "s3cret"}, {"empty", ""}})
	if want := "tokenid: a@pbs!ci\nvalue:   s3cret\n"; b.String() != want {
		t.Errorf("fields = %q; want %q", b.String(), want)
	}
	raw := json.RawMessage(`{ "b": [1, 2],
		"a": "x" }`)
	for _, tc := range []struct{ format, want string }{
		{"json", `{"b":[1,2],"a":"x"}` + "\n"},
		{"json-pretty", "{\n  \"b\": [\n    1,\n    2\n  ],\n  \"a\": \"x\"\n}\n"},
	} {
		p, b := testPrinter(tc.format)
		if err := p.json(raw); err != nil || b.String() != tc.want {
			t.Errorf("json(%s) = %q, %v; want %q", tc.format, b.String(), err, tc.want)
		}
	}
	p, b = testPrinter("json")
	p.json(map[string]any{"userid": "a@pbs", "was-locked": true})
	if want := `{"userid":"a@pbs","was-locked":true}` + "\n"; b.String() != want {
		t.Errorf("json(map) = %q; want %q", b.String(), want)
	}
}

func TestClean(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain text", "plain text"},
		{"Zoë 日本", "Zoë 日本"},
		{"a\tb\nc", `a\tb\nc`},
		{"\x1b]0;pwned\x07", `\x1b]0;pwned\a`},
		{"bad \xff utf8", `bad \xff utf8`},
		{"\u202eevil", `\u202eevil`},
	} {
		if got := clean(tc.in); got != tc.want {
			t.Errorf("clean(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseExpire(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"never", 0, false},
		{"0", 0, false},
		{"1893456000", 1893456000, false},
		{"2030-01-01", 1893456000 - 3600, false},
		{"2030-01-01T00:00:00Z", 1893456000, false},
		{"-5", 0, true},
		// Before the epoch, however written: a usage error too (issue 18: the date exited 1).
		{"1969-12-31", 0, true},
		{"1970-01-01", 0, true}, // 3600 s before the epoch in this zone
		{"1969-12-31T23:59:59Z", 0, true},
		{"1970-01-01T00:00:00Z", 0, true}, // 0 would be never
		{"1970-01-01T00:00:01Z", 1, false},
		{"tomorrow", 0, true},
		{"2030-13-01", 0, true},
	} {
		got, err := parseExpire(tc.in, loc)
		if got != tc.want || (err != nil) != tc.bad {
			t.Errorf("parseExpire(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

// TestCommandLine runs commands that fail before or at the socket: usage errors exit 2,
// a missing apid exits 3; errors are one "gatectl: " line (plus a usage hint).
func TestCommandLine(t *testing.T) {
	run1 := func(stdin string, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
		return code, out.String(), errb.String()
	}
	runDir := filepath.Join(t.TempDir(), "run")
	for _, tc := range []struct {
		name   string
		args   []string
		stdin  string
		code   int
		stderr string
	}{
		{"no command", nil, "", 2, "gatectl: gatectl needs a command: "},
		{"unknown command", []string{"frob"}, "", 2, `unknown command "frob" for "gatectl"`},
		{"unknown subcommand", []string{"user", "lst"}, "", 2, `unknown command "lst" for "gatectl user"; did you mean list?`},
		{"group alone", []string{"token"}, "", 2, "gatectl token needs a command: generate, list, remove, rotate, update"},
		{"unknown flag", []string{"user", "list", "--frob"}, "", 2, "unknown flag: --frob"},
		{"bad output format", []string{"--output-format", "yaml", "user", "list"}, "", 2, `--output-format "yaml"`},
		{"too many arguments", []string{"user", "show", "a@pbs", "b@pbs"}, "", 2, "takes USERID; got 2 argument(s)"},
		{"missing argument", []string{"token", "rotate", "a@pbs"}, "", 2, "takes USERID NAME; got 1"},
		{"bad userid", []string{"user", "remove", "alice"}, "", 2, `USERID "alice": want name@realm`},
		{"bad token name", []string{"token", "remove", "a@pbs", "b!c"}, "", 2, `token NAME "b!c": token name has '!' at byte 1`},
		{"token name with '@' and '!'", []string{"token", "generate", "a@pbs", "x@pbs!ci"}, "", 2, `token NAME "x@pbs!ci": token name has '@' at byte 1`},
		{"token name of one byte", []string{"token", "rotate", "a@pbs", "b"}, "", 2, `token NAME "b": token name is 1 bytes, want 2..64`},
		{"token name starting with a dot", []string{"token", "rotate", "a@pbs", ".ci"}, "", 2, `token NAME ".ci": token name has '.' at byte 0`},
		{"expire before the epoch", []string{"token", "update", "a@pbs", "ci", "--expire", "1969-12-31"}, "", 2, `--expire "1969-12-31": not after 1970-01-01`},
		{"bad expire", []string{"user", "update", "a@pbs", "--expire", "soon"}, "", 2, `--expire "soon"`},
		{"nothing to update", []string{"user", "update", "a@pbs"}, "", 2, "nothing to update"},
		{"empty password", []string{"--run-dir", runDir, "user", "add", "a@pbs", "--password-stdin"}, "\n", 2, "the password on stdin is empty"},
		{"no terminal", []string{"--run-dir", runDir, "user", "add", "a@pbs"}, "", 2, "stdin is not a terminal"},
		{"password for pam", []string{"user", "add", "a@pam", "--password-stdin"}, "x\n", 2, "for pbs-realm users"},
		{"no apid", []string{"--run-dir", runDir, "user", "list"}, "", 3, "gatectl: listing users: apid unreachable at " + runDir + "/apid.sock: no such file or directory"},
		{"no apid, add", []string{"--run-dir", runDir, "user", "add", "a@pbs", "--password-stdin"}, "pw\n", 3, "gatectl: adding user a@pbs: apid unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := run1(tc.stdin, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.stderr) || out != "" {
				t.Errorf("gatectl %q = %d, stdout %q, stderr %q; want %d and stderr with %q", tc.args, code, out, stderr, tc.code, tc.stderr)
			}
			if !strings.HasPrefix(stderr, "gatectl: ") {
				t.Errorf("stderr %q does not start with gatectl: ", stderr)
			}
		})
	}
	code, out, _ := run1("", "--help")
	if code != 0 || !strings.Contains(out, "Exit codes:") || !strings.Contains(out, "4  not found") {
		t.Errorf("gatectl --help = %d %q; want 0 and the exit codes", code, out)
	}
}
