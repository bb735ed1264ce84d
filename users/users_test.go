package users

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// pbsFile is user.cfg as PBS writes it: docs/config/user/format.rst and pbs-config/src/user.rs
// (serde_json's sorted keys, booleans as true/false, one blank line between sections).
const pbsFile = "user: root@pam\n" +
	"\tcomment Superuser\n" +
	"\temail test@example.local\n" +
	"\tenable true\n" +
	"\texpire 0\n" +
	"\n" +
	"token: root@pam!token1\n" +
	"\tcomment API test token\n" +
	"\tenable true\n" +
	"\texpire 0\n" +
	"\n" +
	"user: alice@pbs\n" +
	"\tcomment Backup operator\n" +
	"\temail alice@example.com\n" +
	"\tenable true\n" +
	"\texpire 1767225600\n" +
	"\tfirstname Alice\n" +
	"\tlastname Liddell\n" +
	"\n" +
	"token: alice@pbs!nightly\n" +
	"\tcomment nightly sync\n" +
	"\tenable false\n" +
	"\texpire 0\n" +
	"\n" +
	"user: bob@ldap\n" +
	"\tenable false\n" +
	"\n" +
	"user: carol@pbs\n"

func mustParse(t testing.TB, s string) *Config {
	t.Helper()
	c, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse(%q) = %v", s, err)
	}
	return c
}

func mustEncode(t testing.TB, c *Config) string {
	t.Helper()
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParsePBS(t *testing.T) {
	c := mustParse(t, pbsFile)
	wantUsers := []User{
		{ID: "root@pam", Enable: true, Comment: "Superuser", Email: "test@example.local"},
		{ID: "alice@pbs", Enable: true, Expire: 1767225600, Comment: "Backup operator", Email: "alice@example.com", Firstname: "Alice", Lastname: "Liddell"},
		{ID: "bob@ldap", Enable: false},
		{ID: "carol@pbs", Enable: true},
	}
	if got := c.Users(); !reflect.DeepEqual(got, wantUsers) {
		t.Errorf("Users() = %+v; want %+v", got, wantUsers)
	}
	if got, want := c.Tokens("alice@pbs"), []Token{{ID: "alice@pbs!nightly", Enable: false, Comment: "nightly sync"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Tokens(alice@pbs) = %+v; want %+v", got, want)
	}
	if got, want := c.Tokens("root@pam"), []Token{{ID: "root@pam!token1", Enable: true, Comment: "API test token"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Tokens(root@pam) = %+v; want %+v", got, want)
	}
	if got := c.Tokens("carol@pbs"); len(got) != 0 {
		t.Errorf("Tokens(carol@pbs) = %+v; want none", got)
	}
	if u, ok := c.User("bob@ldap"); !ok || u.Enable {
		t.Errorf("User(bob@ldap) = %+v, %v; want disabled, true", u, ok)
	}
	if _, ok := c.User("nobody@pbs"); ok {
		t.Errorf("User(nobody@pbs) found; want false")
	}
	if tok, ok := c.Token("root@pam!token1"); !ok || tok.Comment != "API test token" {
		t.Errorf("Token(root@pam!token1) = %+v, %v", tok, ok)
	}
	if got := mustEncode(t, c); got != pbsFile {
		t.Errorf("Encode(Parse(pbs file)) = %q; want it byte for byte", got)
	}
}

// TestParseSpellings: values PBS's parser accepts, and that unchanged values keep their
// spelling when the file is written back.
func TestParseSpellings(t *testing.T) {
	tests := []struct {
		name, in string
		want     User
	}{
		{"enable 1", "\tenable 1\n", User{Enable: true}},
		{"enable 0", "\tenable 0\n", User{Enable: false}},
		{"enable yes", "\tenable yes\n", User{Enable: true}},
		{"enable off", "\tenable off\n", User{Enable: false}},
		{"enable FALSE", "\tenable FALSE\n", User{Enable: false}},
		{"enable On", "\tenable On\n", User{Enable: true}},
		{"expire plus", "\texpire +5\n", User{Enable: true, Expire: 5}},
		{"expire leading zeros", "\texpire 007\n", User{Enable: true, Expire: 7}},
		{"empty comment", "\tcomment \n", User{Enable: true}},
		{"comment with hash", "\tcomment #1 admin\n", User{Enable: true, Comment: "#1 admin"}},
		{"unicode names", "\tfirstname Jürgen\n\tlastname 日本\n", User{Enable: true, Firstname: "Jürgen", Lastname: "日本"}},
		{"64 char name", "\tlastname " + strings.Repeat("ä", 64) + "\n", User{Enable: true, Lastname: strings.Repeat("ä", 64)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := "user: root@pam\n\nuser: a@pbs\n" + tt.in
			c := mustParse(t, in)
			tt.want.ID = "a@pbs"
			if got, _ := c.User("a@pbs"); got != tt.want {
				t.Errorf("Parse(%q) user = %+v; want %+v", in, got, tt.want)
			}
			if err := c.SetUser(tt.want); err != nil {
				t.Fatal(err)
			}
			if got := mustEncode(t, c); got != in {
				t.Errorf("after SetUser(same values), Encode = %q; want %q", got, in)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	const root = "user: root@pam\n\n"
	tests := []struct {
		name, in, want string // want: substring of the error, which must name the line
	}{
		{"missing id", root + "user:\n", "line 3: section user: missing section id"},
		{"bad userid", root + "user: alice\n", "line 3: user: parsing id \"alice\": no realm"},
		{"token id as user", root + "user: alice@pbs!ci\n", "line 3: user: parsing id"},
		{"user id as token", root + "token: alice@pbs\n", "line 3: token: parsing id \"alice@pbs\": no token name"},
		{"bad token name", root + "token: root@pam!x\n", "line 3: token: parsing id"},
		{"token of unknown user", root + "token: bob@pbs!ci\n\tcomment x\n", "line 3: token bob@pbs!ci: its user bob@pbs has no \"user: bob@pbs\" section"},
		{"token of user deleted later", root + "user: bob@pbs\n\ntoken: bob@pbs!ci\n\ntoken: carol@pbs!ci\n", "line 7: token carol@pbs!ci"},
		{"duplicate section", root + "user: a@pbs\n\nuser: a@pbs\n", "line 5: duplicate section id \"a@pbs\" (first at line 3)"},
		{"bad enable", root + "user: a@pbs\n\tenable maybe\n", "line 4: user a@pbs: enable: \"maybe\" is not a boolean"},
		{"empty enable", root + "user: a@pbs\n\tenable\n", "line 4: user a@pbs: enable: \"\" is not a boolean"},
		{"bad expire", root + "user: a@pbs\n\texpire soon\n", "line 4: user a@pbs: expire: \"soon\" is not an integer"},
		{"negative expire", root + "user: a@pbs\n\texpire -1\n", "line 4: user a@pbs: expire: -1 is negative"},
		{"float expire", root + "user: a@pbs\n\texpire 1.5\n", "line 4: user a@pbs: expire: \"1.5\" is not an integer"},
		{"huge expire", root + "user: a@pbs\n\texpire 99999999999999999999\n", "line 4: user a@pbs: expire"},
		{"token bad enable", root + "token: root@pam!ci\n\tenable 2\n", "line 4: token root@pam!ci: enable: \"2\" is not a boolean"},
		{"property before section", "\tcomment x\nuser: a@pbs\n", "line 1: property line \"comment x\" outside a section"},
		{"unknown type", root + "group: admins\n\tcomment x\n", "line 3: unknown section type \"group\""},
		{"unknown user property", root + "user: a@pbs\n\tpassword secret\n", "line 4: user a@pbs: password: unknown property"},
		{"userid property", root + "user: a@pbs\n\tuserid a@pbs\n", "line 4: user a@pbs: userid: unknown property"},
		{"unknown token property", root + "token: root@pam!ci\n\temail x@y.z\n", "line 4: token root@pam!ci: email: unknown property"},
		{"duplicate property", root + "user: a@pbs\n\tcomment x\n\tenable 1\n\tcomment y\n", "line 6: user a@pbs: duplicate property comment (first at line 4)"},
		{"short email", root + "user: a@pbs\n\temail a\n", "line 4: user a@pbs: email: 1 characters, want 2..64"},
		{"empty firstname", root + "user: a@pbs\n\tfirstname\n", "line 4: user a@pbs: firstname: 0 characters"},
		{"long lastname", root + "user: a@pbs\n\tlastname " + strings.Repeat("x", 65) + "\n", "line 4: user a@pbs: lastname: 65 characters"},
		{"control character", root + "user: a@pbs\n\tcomment a\x1bb\n", "line 4: control character U+001B"},
		{"header without blank line", "user: root@pam\nuser: a@pbs\n", "line 2:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.in))
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("Parse(%q) = %v, %v; want ErrSyntax", tt.in, c, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q) error = %q; want it to contain %q", tt.in, err, tt.want)
			}
		})
	}
}

// TestRootInjected: as PBS's user::config, a file without root@pam reads as if root@pam were
// at its end, with comment Superuser only.
func TestRootInjected(t *testing.T) {
	for _, in := range []string{"", "\n", "user: a@pbs\n", "token: root@pam!ci\n"} {
		c := mustParse(t, in)
		root, ok := c.User(Root)
		if want := (User{ID: Root, Enable: true, Comment: RootComment}); !ok || root != want {
			t.Errorf("Parse(%q).User(root@pam) = %+v, %v; want %+v", in, root, ok, want)
		}
		if us := c.Users(); us[len(us)-1].ID != Root {
			t.Errorf("Parse(%q).Users() = %+v; want root@pam last", in, us)
		}
		out := mustEncode(t, c)
		if !strings.HasSuffix(out, "user: root@pam\n\tcomment Superuser\n") {
			t.Errorf("Encode(Parse(%q)) = %q; want root@pam written at the end", in, out)
		}
	}
	c := mustParse(t, "user: root@pam\n\tenable 0\n")
	if err := c.Active(Root, time.Unix(1, 0)); !errors.Is(err, ErrDisabled) {
		t.Errorf("disabled root@pam: Active = %v; want ErrDisabled (no injection over an existing section)", err)
	}
}

func TestActive(t *testing.T) {
	const file = "user: root@pam\n" +
		"\n" +
		"user: ok@pbs\n" +
		"\texpire 0\n" +
		"\n" +
		"token: ok@pbs!ok\n" +
		"\n" +
		"token: ok@pbs!off\n" +
		"\tenable false\n" +
		"\n" +
		"token: ok@pbs!old\n" +
		"\texpire 1000\n" +
		"\n" +
		"user: off@pbs\n" +
		"\tenable 0\n" +
		"\n" +
		"token: off@pbs!ok\n" +
		"\n" +
		"user: old@pbs\n" +
		"\texpire 1000\n" +
		"\n" +
		"token: old@pbs!ok\n"
	c := mustParse(t, file)
	tests := []struct {
		id   string
		now  int64
		want error
	}{
		{"ok@pbs", 1 << 40, nil},
		{"root@pam", 0, nil},
		{"ok@pbs!ok", 1 << 40, nil},
		{"nobody@pbs", 0, ErrNoUser},
		{"nobody@pbs!ok", 0, ErrNoUser},
		{"ok@pbs!none", 0, ErrNoToken},
		{"garbage", 0, ErrNoUser},
		{"", 0, ErrNoUser},
		{"off@pbs", 0, ErrDisabled},
		{"off@pbs!ok", 0, ErrDisabled}, // token of a disabled user
		{"ok@pbs!off", 0, ErrDisabled}, // disabled token
		{"old@pbs", 999, nil},
		{"old@pbs", 1000, ErrExpired}, // exactly at expire: expired (PBS: expire <= now)
		{"old@pbs", 1001, ErrExpired},
		{"old@pbs!ok", 999, nil},
		{"old@pbs!ok", 1000, ErrExpired}, // token of an expired user
		{"ok@pbs!old", 999, nil},
		{"ok@pbs!old", 1000, ErrExpired}, // expired token
	}
	for _, tt := range tests {
		err := c.Active(tt.id, time.Unix(tt.now, 999_999_999))
		if tt.want == nil {
			if err != nil {
				t.Errorf("Active(%q, %d) = %v; want nil", tt.id, tt.now, err)
			}
			continue
		}
		if !errors.Is(err, tt.want) {
			t.Errorf("Active(%q, %d) = %v; want %v", tt.id, tt.now, err, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), userOf(tt.id)) {
			t.Errorf("Active(%q, %d) = %q; want it to name the id", tt.id, tt.now, err)
		}
	}
	if err := c.Active("ok@pbs!off", time.Unix(0, 0)); err.Error() != `token "ok@pbs!off": account disabled` {
		t.Errorf("Active(disabled token) = %q", err)
	}
	if err := c.Active("old@pbs!ok", time.Unix(1000, 0)); err.Error() != `token "old@pbs!ok": user "old@pbs": account expired at 1970-01-01T00:16:40Z` {
		t.Errorf("Active(token of expired user) = %q", err)
	}
}

func TestActiveAllocs(t *testing.T) {
	c := mustParse(t, pbsFile)
	now := time.Unix(1700000000, 0)
	for _, id := range []string{"alice@pbs", "root@pam!token1"} {
		if err := c.Active(id, now); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() { _ = c.Active(id, now) }); n != 0 {
			t.Errorf("Active(%q) allocates %v times; want 0", id, n)
		}
	}
}

func TestSetUser(t *testing.T) {
	c := mustParse(t, pbsFile)
	orig := c.Clone()

	// Change one field of an existing user: only that line changes.
	alice, _ := c.User("alice@pbs")
	alice.Comment = "Backup admin"
	alice.Enable = false
	alice.Lastname = ""
	if err := c.SetUser(alice); err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(pbsFile, "\tcomment Backup operator\n\temail alice@example.com\n\tenable true\n", "\tcomment Backup admin\n\temail alice@example.com\n\tenable false\n", 1)
	want = strings.Replace(want, "\tlastname Liddell\n", "", 1)
	if got := mustEncode(t, c); got != want {
		t.Errorf("after SetUser(alice changed), Encode = %q; want %q", got, want)
	}
	if got, _ := c.User("alice@pbs"); got != alice {
		t.Errorf("User(alice) = %+v; want %+v", got, alice)
	}

	// New properties go in alphabetical order; defaults are not written.
	carol := User{ID: "carol@pbs", Enable: true, Expire: 5, Lastname: "Smith", Email: "carol@example.com"}
	if err := c.SetUser(carol); err != nil {
		t.Fatal(err)
	}
	// A new user goes at the end.
	dave := User{ID: "dave@pbs", Enable: false, Comment: "new", Firstname: "Dave"}
	if err := c.SetUser(dave); err != nil {
		t.Fatal(err)
	}
	got := mustEncode(t, c)
	if !strings.HasSuffix(got, "user: carol@pbs\n\temail carol@example.com\n\texpire 5\n\tlastname Smith\n\n"+
		"user: dave@pbs\n\tcomment new\n\tenable false\n\tfirstname Dave\n") {
		t.Errorf("after SetUser(carol), SetUser(dave), Encode = %q", got)
	}
	again := mustParse(t, got)
	if !reflect.DeepEqual(again.Users(), c.Users()) {
		t.Errorf("Parse(Encode) users = %+v; want %+v", again.Users(), c.Users())
	}

	// The clone taken before is untouched.
	if got := mustEncode(t, orig); got != pbsFile {
		t.Errorf("Clone changed with the original: %q", got)
	}
}

// TestKeepsLayout: an edit keeps the rest of a hand-written file as it was: comments, property
// order, value spellings.
func TestKeepsLayout(t *testing.T) {
	const file = "# users of the backup server\n" +
		"user: root@pam\n" +
		"\texpire 0\n" +
		"\tenable 1\n" +
		"\t# the superuser\n" +
		"\tcomment Superuser\n" +
		"\n" +
		"# CI\n" +
		"user: ci@pbs\n" +
		"\tenable yes\n" +
		"\t# expire off\n"
	c := mustParse(t, file)
	if err := c.SetUser(User{ID: "ci@pbs", Enable: true, Comment: "robot"}); err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(file, "user: ci@pbs\n", "user: ci@pbs\n\tcomment robot\n", 1)
	if got := mustEncode(t, c); got != want {
		t.Errorf("after SetUser(ci), Encode = %q; want %q", got, want)
	}
	if err := c.SetUser(User{ID: Root, Enable: false, Comment: "Superuser"}); err != nil {
		t.Fatal(err)
	}
	want = strings.Replace(want, "\tenable 1\n", "\tenable false\n", 1)
	if got := mustEncode(t, c); got != want {
		t.Errorf("after SetUser(root disabled), Encode = %q; want %q", got, want)
	}
}

func TestSetInvalid(t *testing.T) {
	c := mustParse(t, pbsFile)
	before := mustEncode(t, c)
	for _, u := range []User{
		{ID: "alice", Enable: true},
		{ID: "alice@pbs!tok", Enable: true},
		{ID: "a@pbs", Enable: true, Comment: "x\n\tenable 1"},
		{ID: "a@pbs", Enable: true, Comment: "x\ruser: evil@pam"},
		{ID: "a@pbs", Enable: true, Comment: " padded"},
		{ID: "a@pbs", Enable: true, Comment: strings.Repeat("x", 70000)},
		{ID: "a@pbs", Enable: true, Firstname: "A"},
		{ID: "a@pbs", Enable: true, Email: strings.Repeat("x", 65)},
		{ID: "a@pbs", Enable: true, Lastname: "Tab\tTab"},
		{ID: "a@pbs", Enable: true, Expire: -1},
	} {
		if err := c.SetUser(u); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetUser(%+v) = %v; want ErrInvalid", u, err)
		}
	}
	for _, tok := range []Token{
		{ID: "root@pam", Enable: true},
		{ID: "root@pam!x", Enable: true},
		{ID: "root@pam!ci", Comment: "a\nb"},
		{ID: "root@pam!ci", Expire: -5},
	} {
		if err := c.SetToken(tok); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetToken(%+v) = %v; want ErrInvalid", tok, err)
		}
	}
	if err := c.SetToken(Token{ID: "nobody@pbs!ci", Enable: true}); !errors.Is(err, ErrNoUser) {
		t.Errorf("SetToken(token of unknown user) = %v; want ErrNoUser", err)
	}
	if got := mustEncode(t, c); got != before {
		t.Errorf("refused Set calls changed the config: %q", got)
	}
}

func TestTokensAndDelete(t *testing.T) {
	c := mustParse(t, pbsFile)
	if err := c.SetToken(Token{ID: "alice@pbs!ci", Enable: true, Expire: 1800000000, Comment: "CI"}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetToken(Token{ID: "alice@pbs!nightly", Enable: true, Comment: "nightly sync"}); err != nil {
		t.Fatal(err)
	}
	want := []Token{
		{ID: "alice@pbs!nightly", Enable: true, Comment: "nightly sync"},
		{ID: "alice@pbs!ci", Enable: true, Expire: 1800000000, Comment: "CI"},
	}
	if got := c.Tokens("alice@pbs"); !reflect.DeepEqual(got, want) {
		t.Errorf("Tokens(alice) = %+v; want %+v", got, want)
	}
	out := mustEncode(t, c)
	if !strings.Contains(out, "token: alice@pbs!nightly\n\tcomment nightly sync\n\tenable true\n\texpire 0\n") ||
		!strings.HasSuffix(out, "token: alice@pbs!ci\n\tcomment CI\n\texpire 1800000000\n") {
		t.Errorf("after SetToken, Encode = %q", out)
	}

	if err := c.DeleteToken("alice@pbs!ci"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteToken("alice@pbs!ci"); !errors.Is(err, ErrNoToken) {
		t.Errorf("DeleteToken twice = %v; want ErrNoToken", err)
	}
	if err := c.DeleteUser("alice@pbs"); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Token("alice@pbs!nightly"); ok {
		t.Errorf("DeleteUser(alice) left her token")
	}
	if err := c.Active("alice@pbs!nightly", time.Unix(0, 0)); !errors.Is(err, ErrNoUser) {
		t.Errorf("Active(token of deleted user) = %v; want ErrNoUser", err)
	}
	if err := c.DeleteUser("alice@pbs"); !errors.Is(err, ErrNoUser) {
		t.Errorf("DeleteUser twice = %v; want ErrNoUser", err)
	}
	if err := c.DeleteUser(Root); !errors.Is(err, ErrRootUser) {
		t.Errorf("DeleteUser(root@pam) = %v; want ErrRootUser", err)
	}
	out = mustEncode(t, c)
	if strings.Contains(out, "alice") {
		t.Errorf("after DeleteUser(alice), Encode = %q", out)
	}
	again := mustParse(t, out)
	if !reflect.DeepEqual(again.Users(), c.Users()) || !reflect.DeepEqual(again.Tokens(Root), c.Tokens(Root)) {
		t.Errorf("Parse(Encode) = %+v; want %+v", again.Users(), c.Users())
	}
	// After deletions, lookups by position still work.
	if err := c.SetUser(User{ID: "carol@pbs", Enable: true, Comment: "still here"}); err != nil {
		t.Fatal(err)
	}
	if out := mustEncode(t, c); !strings.HasSuffix(out, "user: carol@pbs\n\tcomment still here\n") {
		t.Errorf("SetUser after DeleteUser: Encode = %q", out)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		pbsFile,
		"",
		"user: a@pbs\n\tenable On\n\texpire +5\n",
		"# c\nuser: root@pam\n\t# d\n\tcomment x\n",
		"token: root@pam!ci\n",
		"token: bob@pbs!ci\n",
		"user: a@pbs\n\tcomment x\n\tcomment y\n",
		"group: g\n",
		"user: a@pbs\n\temail a\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("Parse(%q) error = %v; want ErrSyntax", data, err)
			}
			return
		}
		out, err := c.Encode()
		if err != nil {
			t.Fatalf("Encode(Parse(%q)) = %v", data, err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Encode(Parse(%q))) = %v", data, err)
		}
		if !reflect.DeepEqual(c.Users(), again.Users()) {
			t.Fatalf("round trip of %q: users %+v; want %+v", data, again.Users(), c.Users())
		}
		for _, u := range c.Users() {
			if !reflect.DeepEqual(c.Tokens(u.ID), again.Tokens(u.ID)) {
				t.Fatalf("round trip of %q: tokens of %s %+v; want %+v", data, u.ID, again.Tokens(u.ID), c.Tokens(u.ID))
			}
			// Setting a user to its own values changes nothing.
			if err := again.SetUser(u); err != nil {
				t.Fatalf("SetUser(%+v) of a parsed user = %v", u, err)
			}
		}
		out2, err := again.Encode()
		if err != nil || string(out2) != string(out) {
			t.Fatalf("Encode not stable for %q: %q, %v; want %q", data, out2, err, out)
		}
	})
}
