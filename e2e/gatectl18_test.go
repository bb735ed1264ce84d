package e2e

import (
	"net/url"
	"os"
	"strings"
	"testing"

	"gatehouse/layout"
)

// TestGatectlIssue18 runs the built gatectl against real daemons for three points of issue 18.
// A token whose secret was deleted from token.shadow by hand: "token list" showed it as if
// nothing were wrong while "token rotate" exited 4; now list shows SECRET missing (JSON
// "secret": "missing"), rotate makes a new secret and says so, and that secret works through
// proxyd. A token name "a!b": the error named a 1-byte name (the "b" after the last '!'); now
// gatectl (exit 2) and the API through proxyd (400) name the '!'. --expire 1969-12-31 exited 1
// (apid refused it) where -1 exited 2; now any time before the epoch is a usage error, exit 2,
// and apid is not asked.
func TestGatectlIssue18(t *testing.T) {
	g := ctl{buildGatectl(t), layout.Dirs{}}
	st := start(t, options{})
	g.dirs = st.dirs
	g.ok(t, "alice-pw\n", "user", "add", "alice@pbs", "--password-stdin")
	var gen struct{ Tokenid, Value string }
	g.json(t, &gen, "token", "generate", "alice@pbs", "ci")

	t.Run("secret missing", func(t *testing.T) {
		if err := os.Remove(st.dirs.TokenShadow()); err != nil {
			t.Fatal(err)
		}
		if s := st.tokenStatus(t, gen.Tokenid, gen.Value); s != 401 {
			t.Errorf("the token with token.shadow deleted = %d; want 401", s)
		}
		var tokens []struct{ Tokenid, Secret string }
		g.json(t, &tokens, "token", "list", "alice@pbs")
		if len(tokens) != 1 || tokens[0].Tokenid != "alice@pbs!ci" || tokens[0].Secret != "missing" {
			t.Errorf("token list --output-format json with the secret deleted = %+v; want alice@pbs!ci, secret missing", tokens)
		}
		// row is the text list's row of alice@pbs!ci, in fields, after the header's.
		row := func() string {
			lines := strings.Split(g.ok(t, "", "token", "list", "alice@pbs"), "\n")
			return strings.Join(strings.Fields(lines[0]), " ") + " / " + strings.Join(strings.Fields(lines[1]), " ")
		}
		if got, want := row(), "TOKENID ENABLED EXPIRE SECRET COMMENT / alice@pbs!ci yes never missing -"; got != want {
			t.Errorf("token list with the secret deleted: %q; want %q", got, want)
		}
		var rot struct {
			Tokenid, Secret string
			Repaired        bool
		}
		r := g.json(t, &rot, "token", "rotate", "alice@pbs", "ci")
		if rot.Tokenid != "alice@pbs!ci" || rot.Secret == "" || !rot.Repaired || !strings.Contains(r.stderr, "alice@pbs!ci had no secret in token.shadow") {
			t.Fatalf("token rotate of a token without secret = %+v, stderr %q; want a new secret, repaired, and a note", rot, r.stderr)
		}
		if s := st.tokenStatus(t, gen.Tokenid, rot.Secret); s != 200 {
			t.Errorf("the secret the repair made = %d; want 200", s)
		}
		if got, want := row(), "TOKENID ENABLED EXPIRE SECRET COMMENT / alice@pbs!ci yes never ok -"; got != want {
			t.Errorf("token list after the repair: %q; want %q", got, want)
		}
		// A normal rotation says nothing of a repair; a token user.cfg does not list is not found.
		var again map[string]any
		if r := g.json(t, &again, "token", "rotate", "alice@pbs", "ci"); again["repaired"] != nil || strings.Contains(r.stderr, "no secret") {
			t.Errorf("a second rotation = %v, stderr %q; want no repair", again, r.stderr)
		}
		g.run(t, "", "token", "rotate", "alice@pbs", "nosuch").expect(t, 4, "rotating token alice@pbs!nosuch")
	})

	t.Run("token name", func(t *testing.T) {
		g.run(t, "", "token", "generate", "alice@pbs", "a!b").expect(t, 2, `token NAME "a!b": token name has '!' at byte 1`)
		sess := st.login(t, "alice@pbs", "alice-pw")
		for name, want := range map[string]string{
			"a!b":      "token name has '!' at byte 1",
			"x@pbs!ci": "token name has '@' at byte 1",
			"b":        "token name is 1 bytes, want 2..64",
		} {
			a := st.do(t, call{method: "POST", path: "/access/users/alice@pbs/token/" + url.PathEscape(name), header: sess.header(true)})
			if a.status != 400 || !strings.HasPrefix(a.errors["token-name"], want) {
				t.Errorf("POST .../token/%s through proxyd = %d %q %v; want 400 with token-name %q", name, a.status, a.message, a.errors, want)
			}
		}
	})

	t.Run("expire before the epoch", func(t *testing.T) {
		for _, args := range [][]string{
			{"token", "update", "alice@pbs", "ci", "--expire", "1969-12-31"},
			{"token", "update", "alice@pbs", "ci", "--expire", "1969-12-31T23:59:59Z"},
			{"user", "update", "alice@pbs", "--expire", "1969-12-31"},
			{"user", "add", "bob@pbs", "--no-password", "--expire", "1969-12-31"},
		} {
			g.run(t, "", args...).expect(t, 2, "not after 1970-01-01 00:00:00 UTC")
		}
		g.run(t, "", "token", "update", "alice@pbs", "ci", "--expire", "-1").expect(t, 2, "cannot be negative")
		g.run(t, "", "user", "show", "bob@pbs").expect(t, 4, "no such user bob@pbs")
		if out := g.ok(t, "", "user", "show", "alice@pbs"); !strings.Contains(out, "expire:    never\n") {
			t.Errorf("user show alice@pbs after refused updates =\n%s\nwant expire never", out)
		}
	})
}
