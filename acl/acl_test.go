package acl

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gatehouse/shmem"
)

func TestParseEncode(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"blank lines and spaces", "\n  acl:1:/:admin@pbs:Admin  \r\n\n", "acl:1:/:admin@pbs:Admin\n"},
		{"pbs grouping", "acl:1:/:b@pbs:Audit\nacl:1:/:a@pbs:Audit\nacl:0:/:a@pbs,b@pbs:DatastoreAdmin\n",
			"acl:0:/:a@pbs,b@pbs:DatastoreAdmin\nacl:1:/:a@pbs,b@pbs:Audit\n"},
		{"roles of one list share a line", "acl:1:/x:a@pbs:TapeAdmin\nacl:1:/x:a@pbs:Audit\n", "acl:1:/x:a@pbs:Audit,TapeAdmin\n"},
		{"items trimmed", "acl:1:/:a@pbs , @ops: Audit , Admin\n", "acl:1:/:@ops,a@pbs:Admin,Audit\n"},
		{"paths depth first", "acl:1:/datastore-x:a@pbs:Audit\nacl:1:/datastore/s1:a@pbs:Audit\nacl:1:/datastore:a@pbs:Audit\nacl:1:/:a@pbs:Audit\n",
			"acl:1:/:a@pbs:Audit\nacl:1:/datastore:a@pbs:Audit\nacl:1:/datastore/s1:a@pbs:Audit\nacl:1:/datastore-x:a@pbs:Audit\n"},
		{"path cleaned", "acl:1://datastore//s1/:a@pbs:Audit\n", "acl:1:/datastore/s1:a@pbs:Audit\n"},
		{"last flag wins", "acl:1:/:a@pbs:Audit\nacl:0:/:a@pbs:Audit\n", "acl:0:/:a@pbs:Audit\n"},
		{"NoAccess replaces", "acl:1:/:a@pbs:Audit,Admin\nacl:1:/:a@pbs:NoAccess\n", "acl:1:/:a@pbs:NoAccess\n"},
		{"NoAccess replaced", "acl:1:/:a@pbs:NoAccess\nacl:1:/:a@pbs:Audit\n", "acl:1:/:a@pbs:Audit\n"},
		{"unknown role kept", "acl:1:/:a@pbs:FutureRole\n", "acl:1:/:a@pbs:FutureRole\n"},
		{"root@pam dropped", "acl:1:/:root@pam,a@pbs:Admin\n", "acl:1:/:a@pbs:Admin\n"},
		{"root's token kept", "acl:1:/:root@pam!tk:Admin\n", "acl:1:/:root@pam!tk:Admin\n"},
	}
	for _, tt := range tests {
		c, err := Parse([]byte(tt.in))
		if err != nil {
			t.Errorf("%s: Parse(%q) = %v", tt.name, tt.in, err)
			continue
		}
		if got := string(c.Encode()); got != tt.want {
			t.Errorf("%s: Encode(Parse(%q)) = %q; want %q", tt.name, tt.in, got, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"fields", "acl:1:/:a@pbs\n", "line 1: 4 ':'-separated fields"},
		{"second line", "acl:1:/:a@pbs:Admin\nacl:1:/:a@pbs:Admin:x\n", "line 2: 6 ':'"},
		{"first field", "acm:1:/:a@pbs:Admin", `starts with "acm"`},
		{"propagate", "acl:2:/:a@pbs:Admin", `propagate flag "2"`},
		{"relative path", "acl:1:datastore:a@pbs:Admin", "does not start with '/'"},
		{"path component", "acl:1:/data store:a@pbs:Admin", "component"},
		{"bad user", "acl:1:/:alice:Admin", `user or token "alice"`},
		{"empty user", "acl:1:/::Admin", `user or token ""`},
		{"bad group", "acl:1:/:@-x:Admin", `group "-x"`},
		{"empty role", "acl:1:/:a@pbs:Admin,", `role ""`},
		{"bad role", "acl:1:/:a@pbs:Ad min", `role "Ad min"`},
		{"comment", "# hello", "comments are not allowed"},
		{"utf8", "acl:1:/:a@pbs:\xff", "not UTF-8"},
		{"long line", "acl:1:/:a@pbs:" + strings.Repeat("A", MaxLineLen), "over the 65536 byte limit"},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.in))
		if err == nil || !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Parse(%.40q) = %v; want ErrSyntax containing %q", tt.name, tt.in, err, tt.want)
		}
	}
}

func TestAdmin(t *testing.T) {
	c, err := Parse([]byte("acl:1:/:a@pbs,b@pbs!tk:Admin\nacl:0:/:c@pbs:Admin\nacl:1:/x:d@pbs:Admin\nacl:1:/:e@pbs:Audit\nacl:1:/:@g:Admin\n"))
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]bool{
		"a@pbs": true, "a@pbs!tk": false, // the user's Admin does not pass to its token
		"b@pbs!tk": true, "b@pbs": false, // nor the token's to its user
		"c@pbs": false, "d@pbs": false, "e@pbs": false, "g": false, "@g": false, "root@pam": false,
	} {
		if got := c.Admin(id); got != want {
			t.Errorf("Admin(%q) = %v; want %v", id, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { c.Admin("a@pbs") }); n != 0 {
		t.Errorf("Admin allocates %v times; want 0", n)
	}
	var nilCfg *Config
	if nilCfg.Admin("a@pbs") {
		t.Error("nil Config: Admin = true")
	}
}

func TestEditAndEntries(t *testing.T) {
	c, err := Parse([]byte("acl:1:/:a@pbs,a@pbs!tk,b@pbs:Admin\nacl:0:/x:@g,a@pbs:Audit\n"))
	if err != nil {
		t.Fatal(err)
	}
	c.Set("/y", "b@pbs", false, "Audit", true)
	if !c.Delete("/", "b@pbs", false, "Admin") || c.Delete("/", "b@pbs", false, "Admin") {
		t.Error("Delete: want true once, then false")
	}
	if !c.RemoveUser("a@pbs") || c.RemoveUser("a@pbs") {
		t.Error("RemoveUser: want true once, then false")
	}
	got := c.Entries()
	want := []Entry{
		{Path: "/x", UGID: "g", Group: true, Role: "Audit"},
		{Path: "/y", UGID: "b@pbs", Role: "Audit", Propagate: true},
	}
	if len(got) != len(want) {
		t.Fatalf("Entries() = %+v; want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Entries()[%d] = %+v; want %+v", i, got[i], want[i])
		}
	}
	c.Set("/", "t@pbs!x", false, "Admin", true)
	if !c.RemoveAuthid("t@pbs!x") || c.Admin("t@pbs!x") {
		t.Error("RemoveAuthid did not remove the token's Admin")
	}
}

func newStores(t *testing.T, n int) (string, []*Store) {
	t.Helper()
	dir := t.TempDir()
	var out []*Store
	page, err := shmem.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { page.Close() })
	for range n {
		gen, err := page.View() // each "process" maps the page itself
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { gen.Close() })
		s, err := Open(Options{Path: filepath.Join(dir, "acl.cfg"), Generations: gen})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return dir, out
}

func TestStore(t *testing.T) {
	dir, ss := newStores(t, 2)
	a, b := ss[0], ss[1]
	if ok, err := b.Admin("x@pbs"); err != nil || ok {
		t.Fatalf("missing file: Admin = %v, %v; want false, nil", ok, err)
	}
	before := a.Generations().Load(shmem.User)
	if err := a.Update(func(c *Config) error { c.Set("/", "x@pbs", false, RoleAdmin, true); return nil }); err != nil {
		t.Fatal(err)
	}
	if a.Generations().Load(shmem.User) != before+1 {
		t.Errorf("Update bumped the user generation %d -> %d; want +1", before, a.Generations().Load(shmem.User))
	}
	// b cached "no file" at the old generation: the bump makes it read the file again.
	if ok, err := b.Admin("x@pbs"); err != nil || !ok {
		t.Errorf("other store after Update: Admin = %v, %v; want true", ok, err)
	}
	fi, err := os.Stat(a.Path())
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("acl.cfg mode = %v, %v; want 0640", fi.Mode().Perm(), err)
	}
	if got, _ := os.ReadFile(a.Path()); string(got) != "acl:1:/:x@pbs:Admin\n" {
		t.Errorf("acl.cfg = %q", got)
	}
	// An unchanged update writes nothing and bumps nothing.
	g := a.Generations().Load(shmem.User)
	if err := a.Update(func(c *Config) error { c.Set("/", "x@pbs", false, RoleAdmin, true); return nil }); err != nil || a.Generations().Load(shmem.User) != g {
		t.Errorf("no-op Update: %v, generation %d -> %d", err, g, a.Generations().Load(shmem.User))
	}
	if err := a.Update(func(c *Config) error { c.RemoveUser("x@pbs"); return nil }); err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.Admin("x@pbs"); ok {
		t.Error("other store after removal: still Admin")
	}

	// A manual edit (no bump) is noticed by CheckFile; a broken file is refused, not overwritten.
	if _, err := b.Config(); err != nil {
		t.Fatal(err)
	}
	bad := "acl:1:/:x@pbs:Admin\nbroken\n"
	tmp := filepath.Join(dir, "edit")
	if err := os.WriteFile(tmp, []byte(bad), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, a.Path()); err != nil {
		t.Fatal(err)
	}
	if err := b.CheckFile(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Config(); !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("broken file: Config = %v; want ErrSyntax naming line 2", err)
	}
	if err := a.Update(func(c *Config) error { return nil }); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Errorf("Update of a broken file = %v; want a refusal", err)
	}
	if got, _ := os.ReadFile(a.Path()); string(got) != bad {
		t.Errorf("broken file was changed to %q", got)
	}
	if err := os.Chmod(a.Path(), 0o666); err != nil {
		t.Fatal(err)
	}
	a.Generations().Bump(shmem.User)
	if _, err := a.Config(); !errors.Is(err, ErrPermissions) {
		t.Errorf("world-writable file: Config = %v; want ErrPermissions", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"acl:1:/:admin@pbs:Admin\n",
		"acl:0:/datastore/s1:@backup,a@pbs!tk:DatastoreReader,NoAccess\nacl:1:/:root@pam:Admin",
		"acl:1://x//:a@pbs : Audit\r\n\n",
		"acl:1:/:a@pbs",
		"# c\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), "line ") && !strings.Contains(err.Error(), "limit") {
				t.Fatalf("Parse error %v does not wrap ErrSyntax or name the line", err)
			}
			return
		}
		out := c.Encode()
		c2, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Encode()) = %v for %q", err, out)
		}
		if out2 := c2.Encode(); string(out2) != string(out) {
			t.Fatalf("Encode not stable:\n%q\n%q", out, out2)
		}
	})
}
