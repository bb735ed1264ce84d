package authid

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, in string
		want     Authid
		wantErr  bool
	}{
		{"root", "root@pam", Authid{Name: "root", Realm: "pam"}, false},
		{"token", "alice@pbs!backup-1", Authid{Name: "alice", Realm: "pbs", Token: "backup-1"}, false},
		{"at in name", "a@b@pbs", Authid{Name: "a@b", Realm: "pbs"}, false},
		{"bang in name", "a!b@pbs", Authid{Name: "a!b", Realm: "pbs"}, false},
		{"bang in name and token", "a!b@pbs!tok", Authid{Name: "a!b", Realm: "pbs", Token: "tok"}, false},
		{"unicode name", "jürgen@pbs", Authid{Name: "jürgen", Realm: "pbs"}, false},
		{"no realm", "root", Authid{}, true},
		{"empty", "", Authid{}, true},
		{"empty name", "@pam", Authid{}, true},
		{"short realm", "root@p", Authid{}, true},
		{"realm starts with dash", "root@-pam", Authid{}, true},
		{"space in name", "ro ot@pam", Authid{}, true},
		{"colon in name", "ro:ot@pam", Authid{}, true},
		{"slash in name", "ro/ot@pam", Authid{}, true},
		{"control in name", "ro\x01ot@pam", Authid{}, true},
		{"nbsp in name", "ro\u00a0ot@pam", Authid{}, true},
		{"invalid utf8", "ro\xffot@pam", Authid{}, true},
		{"short token", "root@pam!a", Authid{}, true},
		{"empty token", "root@pam!", Authid{}, true},
		{"token with colon", "root@pam!a:b", Authid{}, true},
		{"long userid", strings.Repeat("a", 62) + "@pam", Authid{}, true},
		{"long token", "root@pam!" + strings.Repeat("t", 65), Authid{}, true},
		{"max token", "root@pam!" + strings.Repeat("t", 64), Authid{Name: "root", Realm: "pam", Token: strings.Repeat("t", 64)}, false},
		{"huge", strings.Repeat("x", 1<<20), Authid{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrSyntax) {
					t.Fatalf("Parse(%q) error = %v; want ErrSyntax", clip(tt.in), err)
				}
				if len(err.Error()) > 400 {
					t.Errorf("Parse(%q) error is %d bytes long; want a short message", clip(tt.in), len(err.Error()))
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Parse(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			if got.String() != tt.in {
				t.Errorf("Parse(%q).String() = %q; want the input", tt.in, got.String())
			}
		})
	}
}

func TestParseTokenAndUserid(t *testing.T) {
	if _, err := ParseToken("root@pam"); !errors.Is(err, ErrSyntax) {
		t.Errorf("ParseToken(root@pam) error = %v; want ErrSyntax", err)
	}
	if a, err := ParseToken("root@pam!ci"); err != nil || a.Userid() != "root@pam" || !a.IsToken() {
		t.Errorf("ParseToken(root@pam!ci) = %+v, %v; want token of root@pam", a, err)
	}
	if _, err := ParseUserid("root@pam!ci"); !errors.Is(err, ErrSyntax) {
		t.Errorf("ParseUserid(root@pam!ci) error = %v; want ErrSyntax", err)
	}
}

// TestCheckTokenName: the error names what is wrong with the name itself (issue 18: for
// "a!b", joined to its user, Parse found the name "b" and said it was 1 byte).
func TestCheckTokenName(t *testing.T) {
	for _, tt := range []struct{ name, err string }{
		{"ci", ""},
		{"_backup-2.old", ""},
		{strings.Repeat("a", 64), ""},
		{"a!b", "token name has '!' at byte 1"},
		{"x@pbs!ci", "token name has '@' at byte 1"},
		{"b", "token name is 1 bytes, want 2..64"},
		{strings.Repeat("a", 65), "token name is 65 bytes, want 2..64"},
		{"-ci", "token name has '-' at byte 0"},
		{".ci", "token name has '.' at byte 0"},
		{"c i", "token name has ' ' at byte 1"},
	} {
		err := CheckTokenName(tt.name)
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.err) || !errors.Is(err, ErrSyntax)) {
			t.Errorf("CheckTokenName(%q) = %v; want %q", tt.name, err, tt.err)
		}
		if err == nil {
			if _, perr := ParseToken("a@pbs!" + tt.name); perr != nil {
				t.Errorf("CheckTokenName(%q) = nil, but ParseToken(a@pbs!%s) = %v", tt.name, tt.name, perr)
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"root@pam", "a@b@pbs!tok", "x!y@pve!t-1", "@", "!", "a@pam!", "\x00@pam"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrSyntax", s, err)
			}
			return
		}
		if a.String() != s {
			t.Fatalf("Parse(%q).String() = %q; want round trip", s, a.String())
		}
		b, err := Parse(a.String())
		if err != nil || b != a {
			t.Fatalf("Parse(Parse(%q).String()) = %+v, %v; want %+v", s, b, err, a)
		}
	})
}
