package sectionconfig

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// pbsUserCfg is user.cfg as PBS writes it (docs/config/user/format.rst, pbs-config/src/user.rs:
// properties in serde_json's sorted key order, booleans as true/false, sections separated by
// one blank line, no blank line at the end).
const pbsUserCfg = "user: root@pam\n" +
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
	"\tcomment \n" +
	"\tfirstname Alice\n"

func TestParsePBS(t *testing.T) {
	secs, err := Parse([]byte(pbsUserCfg))
	if err != nil {
		t.Fatal(err)
	}
	want := []Section{
		{Type: "user", ID: "root@pam", Line: 1, Props: []Prop{
			{Key: "comment", Value: "Superuser", Line: 2},
			{Key: "email", Value: "test@example.local", Line: 3},
			{Key: "enable", Value: "true", Line: 4},
			{Key: "expire", Value: "0", Line: 5},
		}},
		{Type: "token", ID: "root@pam!token1", Line: 7, Props: []Prop{
			{Key: "comment", Value: "API test token", Line: 8},
			{Key: "enable", Value: "true", Line: 9},
			{Key: "expire", Value: "0", Line: 10},
		}},
		{Type: "user", ID: "alice@pbs", Line: 12, Props: []Prop{
			{Key: "comment", Value: "", Line: 13},
			{Key: "firstname", Value: "Alice", Line: 14},
		}},
	}
	if !reflect.DeepEqual(secs, want) {
		t.Fatalf("Parse(pbs user.cfg) = %+v; want %+v", secs, want)
	}
	out, err := Encode(secs)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != pbsUserCfg {
		t.Errorf("Encode(Parse(pbs user.cfg)) = %q; want the input byte for byte", out)
	}
	if v, ok := secs[1].Get("comment"); !ok || v != "API test token" {
		t.Errorf("Get(comment) = %q, %v; want %q, true", v, ok, "API test token")
	}
	if v, ok := secs[1].Get("email"); ok {
		t.Errorf("Get(email) = %q, true; want false", v)
	}
}

// TestParseLenient checks the spellings that PBS (Rust) or Proxmox's Perl parser also accept,
// and what they normalise to.
func TestParseLenient(t *testing.T) {
	tests := []struct {
		name, in, want string // want: Encode(Parse(in))
	}{
		{"empty", "", ""},
		{"only blank lines", "\n \n\t\n", ""},
		{"leading blank lines", "\n\nuser: a@pbs\n", "user: a@pbs\n"},
		{"several blank lines", "user: a@pbs\n\n\n\nuser: b@pbs\n", "user: a@pbs\n\nuser: b@pbs\n"},
		{"no final newline", "user: a@pbs\n\tcomment x", "user: a@pbs\n\tcomment x\n"},
		{"crlf", "user: a@pbs\r\n\tcomment x\r\n\r\nuser: b@pbs\r\n", "user: a@pbs\n\tcomment x\n\nuser: b@pbs\n"},
		{"spaces for indent", "user: a@pbs\n        comment x\n", "user: a@pbs\n\tcomment x\n"},
		{"no space after colon", "user:a@pbs\n", "user: a@pbs\n"},
		{"space before colon", "user : a@pbs  \n", "user: a@pbs\n"},
		{"inner spaces kept", "user: a@pbs\n\tcomment  two  spaces \t\n", "user: a@pbs\n\tcomment two  spaces\n"},
		{"key only", "user: a@pbs\n\tcomment\n", "user: a@pbs\n\tcomment \n"},
		{"repeated key", "matcher: m\n\tmatch-field a\n\tmatch-field b\n", "matcher: m\n\tmatch-field a\n\tmatch-field b\n"},
		{"whitespace-only line ends section", "user: a@pbs\n \nuser: b@pbs\n", "user: a@pbs\n\nuser: b@pbs\n"},
		{"colon in id", "remote: a:b\n", "remote: a:b\n"},
		{"unicode value", "user: jürgen@pbs\n\tcomment Grüße, 日本\n", "user: jürgen@pbs\n\tcomment Grüße, 日本\n"},
		{"comments", "# head\nuser: a@pbs\n  # about comment\n\tcomment x\n\t# after\n\n# about b\n\n# more\nuser: b@pbs\n# end\n",
			"# head\nuser: a@pbs\n\t# about comment\n\tcomment x\n\t# after\n\n# about b\n# more\nuser: b@pbs\n\t# end\n"},
		{"comment at end after blank", "user: a@pbs\n\n# end\n", "user: a@pbs\n\t# end\n"},
		{"comment-only file", "# nothing here\n", ""},
		{"tab in comment", "#\tnote\nuser: a@pbs\n", "#\tnote\nuser: a@pbs\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secs, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatalf("Parse(%q) = %v", tt.in, err)
			}
			got, err := Encode(secs)
			if err != nil {
				t.Fatalf("Encode(Parse(%q)) = %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Errorf("Encode(Parse(%q)) = %q; want %q", tt.in, got, tt.want)
			}
			again, err := Parse(got)
			if err != nil {
				t.Fatalf("Parse(%q) = %v", got, err)
			}
			if !equal(secs, again) {
				t.Errorf("Parse(Encode(Parse(%q))) = %+v; want %+v", tt.in, again, secs)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	long := strings.Repeat("x", MaxLineLen)
	tests := []struct {
		name, in string
		line     string // the error must contain this, e.g. "line 3:"
		detail   string // and this
	}{
		{"property before section", "\tcomment x\n", "line 1:", "outside a section"},
		{"property after blank", "user: a@pbs\n\n\tcomment x\n", "line 3:", "outside a section"},
		{"missing id", "user:\n", "line 1:", "missing section id"},
		{"missing id spaces", "user:   \n", "line 1:", "missing section id"},
		{"no colon", "user a@pbs\n", "line 1:", "not a section header"},
		{"space in id", "user: a b@pbs\n", "line 1:", "white space"},
		{"digit type", "1user: a@pbs\n", "line 1:", "section type"},
		{"empty type", ": a@pbs\n", "line 1:", "empty section type"},
		{"bad type char", "us/er: a@pbs\n", "line 1:", "section type"},
		{"header without blank line", "user: a@pbs\n\tcomment x\nuser: b@pbs\n", "line 3:", "blank line before the next section"},
		{"header right after header", "user: a@pbs\nuser: b@pbs\n", "line 2:", "blank line"},
		{"duplicate id", "user: a@pbs\n\nuser: b@pbs\n\ntoken: a@pbs\n", "line 5:", "duplicate section id \"a@pbs\" (first at line 1)"},
		{"nul", "user: a@pbs\n\tcomment a\x00b\n", "line 2:", "control character U+0000"},
		{"escape", "user: a@pbs\n\tcomment \x1b[31mred\n", "line 2:", "control character U+001B"},
		{"lone cr", "user: a@pbs\n\tcomment a\rb\n", "line 2:", "control character U+000D"},
		{"del", "user: a@pbs\x7f\n", "line 1:", "U+007F"},
		{"c1 control", "user: a@pbs\n\tcomment a\u0085b\n", "line 2:", "U+0085"},
		{"tab in value", "user: a@pbs\n\tcomment a\tb\n", "line 2:", "a tab"},
		{"invalid utf8", "user: a@pbs\n\tcomment \xff\n", "line 2:", "UTF-8"},
		{"long line", "user: a@pbs\n\tcomment " + long + "\n", "line 2:", "more than 65536"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secs, err := Parse([]byte(tt.in))
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("Parse(%q) = %+v, %v; want ErrSyntax", clip(tt.in), secs, err)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.line) || !strings.Contains(msg, tt.detail) {
				t.Errorf("Parse(%q) error = %q; want it to contain %q and %q", clip(tt.in), msg, tt.line, tt.detail)
			}
			if len(err.Error()) > 400 {
				t.Errorf("Parse(%q) error is %d bytes; want a short message", clip(tt.in), len(err.Error()))
			}
		})
	}
}

func TestFileLimit(t *testing.T) {
	var b bytes.Buffer
	for i := 0; b.Len() <= MaxFileSize; i++ {
		b.WriteString("user: u")
		b.WriteString(strings.Repeat("x", 1000))
		b.WriteString("\n\n")
	}
	if _, err := Parse(b.Bytes()); !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), "more than 16777216") {
		t.Errorf("Parse(%d bytes) = %v; want ErrSyntax naming the limit", b.Len(), err)
	}
	// Encode refuses to produce it too.
	value := strings.Repeat("c", 60000)
	secs := make([]Section, 300)
	for i := range secs {
		secs[i] = Section{Type: "user", ID: fmt.Sprintf("u%d@pbs", i), Props: []Prop{{Key: "comment", Value: value}}}
	}
	if _, err := Encode(secs); !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), "more than 16777216") {
		t.Errorf("Encode(more than %d bytes) = %v; want ErrSyntax naming the limit", MaxFileSize, err)
	}
}

func TestEncodeRefuses(t *testing.T) {
	user := func(props ...Prop) []Section { return []Section{{Type: "user", ID: "a@pbs", Props: props}} }
	tests := []struct {
		name   string
		secs   []Section
		detail string
	}{
		{"newline in value", user(Prop{Key: "comment", Value: "x\n\tenable 0"}), "line break"},
		{"cr in value", user(Prop{Key: "comment", Value: "x\ry"}), "line break"},
		{"tab in value", user(Prop{Key: "comment", Value: "x\ty"}), "a tab"},
		{"nul in value", user(Prop{Key: "comment", Value: "x\x00"}), "U+0000"},
		{"c1 in value", user(Prop{Key: "comment", Value: "x\u009b"}), "U+009B"},
		{"invalid utf8 value", user(Prop{Key: "comment", Value: "\xff"}), "UTF-8"},
		{"leading space", user(Prop{Key: "comment", Value: " x"}), "leading or trailing white space"},
		{"trailing nbsp", user(Prop{Key: "comment", Value: "x\u00a0"}), "leading or trailing white space"},
		{"empty key", user(Prop{Key: "", Value: "x"}), "empty property key"},
		{"space in key", user(Prop{Key: "a b", Value: "x"}), "white space"},
		{"newline in key", user(Prop{Key: "a\nb", Value: "x"}), "white space"},
		{"hash key", user(Prop{Key: "#a", Value: "x"}), "comment"},
		{"newline in id", []Section{{Type: "user", ID: "a@pbs\nuser: root@pam"}}, "white space"},
		{"empty id", []Section{{Type: "user", ID: ""}}, "missing section id"},
		{"bad type", []Section{{Type: "us er", ID: "a@pbs"}}, "section type"},
		{"empty type", []Section{{Type: "", ID: "a@pbs"}}, "empty section type"},
		{"duplicate", []Section{{Type: "user", ID: "a@pbs"}, {Type: "token", ID: "a@pbs"}}, "duplicate"},
		{"comment without hash", []Section{{Type: "user", ID: "a@pbs", Comments: []string{"note"}}}, "'#'"},
		{"comment with newline", []Section{{Type: "user", ID: "a@pbs", Comments: []string{"# a\nuser: root@pam"}}}, "line break"},
		{"prop comment with newline", user(Prop{Key: "comment", Value: "x", Comments: []string{"# a\n"}}), "line break"},
		{"trailing comment space", []Section{{Type: "user", ID: "a@pbs", Trailing: []string{"# a "}}}, "trailing white space"},
		{"long value", user(Prop{Key: "comment", Value: strings.Repeat("x", MaxLineLen)}), "more than 65536"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Encode(tt.secs)
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("Encode(%+v) = %q, %v; want ErrSyntax", tt.secs, got, err)
			}
			if got != nil {
				t.Errorf("Encode(%+v) returned %d bytes with its error; want none", tt.secs, len(got))
			}
			if !strings.Contains(err.Error(), tt.detail) || !strings.Contains(err.Error(), "section 1") && !strings.Contains(err.Error(), "section 2") {
				t.Errorf("Encode(%+v) error = %q; want it to name the section and %q", tt.secs, err, tt.detail)
			}
		})
	}
}

func TestSectionEdit(t *testing.T) {
	secs, err := Parse([]byte("user: a@pbs\n\tcomment x\n# about email\n\temail a@example.com\n\tenable 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	orig := secs[0].Clone()
	s := &secs[0]
	s.Set("enable", "false")
	s.Set("expire", "5")
	if !s.Delete("email") {
		t.Errorf("Delete(email) = false; want true")
	}
	if s.Delete("firstname") {
		t.Errorf("Delete(firstname) = true; want false")
	}
	got, err := Encode(secs)
	if err != nil {
		t.Fatal(err)
	}
	want := "user: a@pbs\n\tcomment x\n\t# about email\n\tenable false\n\texpire 5\n"
	if string(got) != want {
		t.Errorf("after Set and Delete, Encode = %q; want %q", got, want)
	}
	if v, _ := orig.Get("email"); v != "a@example.com" || len(orig.Props) != 3 {
		t.Errorf("editing a section changed its Clone: %+v", orig)
	}
	s.Delete("enable")
	s.Delete("expire")
	s.Delete("comment")
	got, _ = Encode(secs)
	if want := "user: a@pbs\n\t# about email\n"; string(got) != want {
		t.Errorf("after deleting every property, Encode = %q; want %q", got, want)
	}
}

// equal compares parsed sections, ignoring line numbers (which Encode does not keep).
func equal(a, b []Section) bool {
	return reflect.DeepEqual(stripLines(a), stripLines(b))
}

func stripLines(secs []Section) []Section {
	out := make([]Section, len(secs))
	for i := range secs {
		s := secs[i].Clone()
		s.Line = 0
		for j := range s.Props {
			s.Props[j].Line = 0
		}
		out[i] = s
	}
	return out
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		pbsUserCfg,
		"",
		"# c\nuser: a@pbs\n\t# d\n\tcomment x\n#e\n\n#f\n",
		"user: a@pbs\r\n\tcomment\r\n",
		"datastore: store1\n\tpath /mnt/datastore/store1\n\tgc-schedule daily\n",
		"user: a@pbs\n\tcomment a\tb\n",
		"user: a@pbs\nuser: b@pbs\n",
		"\tx y\n",
		"user: a b\n",
		"matcher: m\n\tmatch-field exact:type=gc\n\tmatch-field exact:type=sync\n\tmode all\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		secs, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("Parse(%q) error = %v; want ErrSyntax", data, err)
			}
			return
		}
		out, err := Encode(secs)
		if err != nil {
			t.Fatalf("Encode(Parse(%q)) = %v; want what Parse accepts to encode", data, err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Encode(Parse(%q))) = %v", data, err)
		}
		if !equal(secs, again) {
			t.Fatalf("round trip of %q:\n got %+v\nwant %+v", data, again, secs)
		}
		out2, err := Encode(again)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("Encode is not stable for %q: %q, %v; want %q", data, out2, err, out)
		}
	})
}
