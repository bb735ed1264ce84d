package tokenshadow

import (
	"bytes"
	"cmp"
	"context"
	stdsha256 "crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/quick"
	"time"

	"gatehouse/authid"
	"gatehouse/lockfile"
	"gatehouse/shmem"
)

// newStore makes a Store on a fresh token.shadow and generation file in a temp dir.
func newStore(t testing.TB) *Store {
	t.Helper()
	dir := t.TempDir()
	gen, err := shmem.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gen.Close() })
	s, err := Open(Options{Path: filepath.Join(dir, "token.shadow"), Generations: gen})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newCachedToken makes a Store with one token whose secret has been verified once (cached).
func newCachedToken(t *testing.T) (s *Store, id, secret string) {
	t.Helper()
	s, id = newStore(t), "alice@pbs!ci"
	secret, err := s.Generate(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(id, secret); err != nil {
		t.Fatal(err)
	}
	return s, id, secret
}

// cached reports whether the current snapshot holds a digest for id at the current generation
// and epoch.
func cached(s *Store, id string) bool {
	sn := s.snap.Load()
	if sn == nil || sn.gen != s.gen.Load(shmem.TokenShadow) || sn.epoch != s.epoch.Load() {
		return false
	}
	k := s.key(id)
	m := sn.shards[k%shardCount].Load()
	if m == nil {
		return false
	}
	e, ok := (*m)[k]
	return ok && e.id == id
}

func TestGenerateVerifyRotateDelete(t *testing.T) {
	s := newStore(t)
	const id = "alice@pbs!ci"
	if err := s.Verify(id, "whatever"); !errors.Is(err, ErrNoToken) {
		t.Fatalf("Verify on missing file = %v; want ErrNoToken", err)
	}
	secret, err := s.Generate(id)
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) != 36 || strings.Count(secret, "-") != 4 {
		t.Errorf("Generate() secret = %q; want a UUID", secret)
	}
	raw, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), secret) || !strings.Contains(string(raw), `"`+id+`": "$5$`) {
		t.Fatalf("token.shadow = %s; want a $5$ hash and no plaintext", raw)
	}
	if fi, _ := os.Stat(s.Path()); fi.Mode().Perm() != 0o640 {
		t.Errorf("token.shadow mode = %04o; want 0640", fi.Mode().Perm())
	}
	for i := range 3 {
		if err := s.Verify(id, secret); err != nil {
			t.Fatalf("Verify(new secret) #%d = %v; want nil", i, err)
		}
		if !cached(s, id) {
			t.Fatalf("after Verify #%d the secret is not cached", i)
		}
	}
	if err := s.Verify(id, "wrong"); !errors.Is(err, ErrWrongSecret) {
		t.Errorf("Verify(wrong) = %v; want ErrWrongSecret", err)
	}
	if err := s.Verify(id, ""); !errors.Is(err, ErrWrongSecret) {
		t.Errorf("Verify(empty) = %v; want ErrWrongSecret", err)
	}
	if err := s.Verify("bob@pbs!ci", secret); !errors.Is(err, ErrNoToken) {
		t.Errorf("Verify(other id) = %v; want ErrNoToken", err)
	}

	rotated, err := s.Rotate(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(id, secret); !errors.Is(err, ErrWrongSecret) {
		t.Errorf("Verify(old secret after Rotate) = %v; want ErrWrongSecret", err)
	}
	if err := s.Verify(id, rotated); err != nil {
		t.Errorf("Verify(rotated) = %v; want nil", err)
	}
	if _, err := s.Rotate("bob@pbs!ci"); !errors.Is(err, ErrNoToken) {
		t.Errorf("Rotate(missing) = %v; want ErrNoToken", err)
	}
	if err := s.Delete(id); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(id, rotated); !errors.Is(err, ErrNoToken) {
		t.Errorf("Verify after Delete = %v; want ErrNoToken", err)
	}
	if err := s.Delete(id); !errors.Is(err, ErrNoToken) {
		t.Errorf("Delete twice = %v; want ErrNoToken", err)
	}
}

// TestCachedMismatchTakesSlowPath checks that a wrong secret for a cached token is not refused
// from the cache but on the slow path, which reads the file (so a fast refusal cannot tell that
// the id exists and is in use; see Timing), while the right secret is still answered from the
// cache; and that a writer's bump sends the next Verify to the slow path.
func TestCachedMismatchTakesSlowPath(t *testing.T) {
	s, id, secret := newCachedToken(t)
	// Make the file unusable without bumping: the fast path still accepts from the cache, and a
	// refusal, which reads the file, says it is unusable.
	s.table.Store(nil)
	if err := os.Chmod(s.Path(), 0o644); err != nil {
		t.Fatal(err)
	}
	if hit, err := s.VerifyHit(id, secret); !hit || err != nil {
		t.Errorf("fast path VerifyHit(right) = %v, %v; want true, nil", hit, err)
	}
	if hit, err := s.VerifyHit(id, "wrong"); hit || !errors.Is(err, ErrPermissions) {
		t.Errorf("VerifyHit(wrong) of a cached token on an unusable file = %v, %v; want false, ErrPermissions (the slow path)", hit, err)
	}
	if err := os.Chmod(s.Path(), 0o640); err != nil {
		t.Fatal(err)
	}
	if hit, err := s.VerifyHit(id, "wrong"); hit || !errors.Is(err, ErrWrongSecret) {
		t.Errorf("VerifyHit(wrong) of a cached token = %v, %v; want false, ErrWrongSecret", hit, err)
	}
	if !cached(s, id) {
		t.Error("a refused wrong secret dropped the cached one")
	}
	// A bump invalidates: the slow path now reads the (unsafe) file and says so.
	if err := os.Chmod(s.Path(), 0o644); err != nil {
		t.Fatal(err)
	}
	s.gen.Bump(shmem.TokenShadow)
	if err := s.Verify(id, secret); !errors.Is(err, ErrPermissions) {
		t.Errorf("Verify after bump = %v; want ErrPermissions", err)
	}
}

// TestCachedMismatchSeesEdit: since a secret that differs from the cached one is checked on the
// slow path, a manual edit giving the token a new secret is honoured as soon as the new secret
// is presented, before any CheckFile, and the old secret is refused from then on.
func TestCachedMismatchSeesEdit(t *testing.T) {
	s, id, secret := newCachedToken(t)
	h, err := s.hasher.Hash("edited-secret")
	if err != nil {
		t.Fatal(err)
	}
	writeShadow(t, s, id, h)
	if err := s.Verify(id, "edited-secret"); err != nil {
		t.Errorf("Verify(edited) before any CheckFile = %v; want nil", err)
	}
	if err := s.Verify(id, secret); !errors.Is(err, ErrWrongSecret) {
		t.Errorf("Verify(old) after the edit was read = %v; want ErrWrongSecret", err)
	}
}

// TestRefusalCostsOneCrypt counts the crypt verifications of each kind of answer: every refusal
// of a well-formed id and a bounded secret costs exactly one, whether the id is unknown, known
// and uncached, or known and cached; only a cached correct secret costs none. (An unknown id cost
// none before the dummy hash: it was refused about 0.7 ms sooner, which told ids apart.)
func TestRefusalCostsOneCrypt(t *testing.T) {
	const wrong = "00000000-0000-0000-0000-000000000000"
	tests := []struct {
		name    string
		noCache bool
		noFile  bool   // no token.shadow at all
		uncache bool   // Forget before the call
		id      string // "" is the known token
		secret  string // "" is its secret
		want    error
		crypts  uint64
		hit     bool
	}{
		{name: "unknown id", id: "bob@pbs!ci", secret: wrong, want: ErrNoToken, crypts: 1},
		{name: "unknown id, the known secret", id: "bob@pbs!ci", want: ErrNoToken, crypts: 1},
		{name: "unknown id of the known user", id: "alice@pbs!other", secret: wrong, want: ErrNoToken, crypts: 1},
		{name: "unknown id, no file", noFile: true, id: "bob@pbs!ci", secret: wrong, want: ErrNoToken, crypts: 1},
		{name: "known id, uncached, wrong secret", uncache: true, secret: wrong, want: ErrWrongSecret, crypts: 1},
		{name: "known id, cached, wrong secret", secret: wrong, want: ErrWrongSecret, crypts: 1},
		{name: "known id, cached, right secret", hit: true},
		{name: "known id, uncached, right secret", uncache: true, crypts: 1},
		{name: "NoCache, unknown id", noCache: true, id: "bob@pbs!ci", secret: wrong, want: ErrNoToken, crypts: 1},
		{name: "NoCache, known id, wrong secret", noCache: true, secret: wrong, want: ErrWrongSecret, crypts: 1},
		{name: "NoCache, known id, right secret", noCache: true, crypts: 1},
		// Refused before any lookup, whatever the id: no crypt, for known and unknown ids alike.
		{name: "known id, secret too long", secret: strings.Repeat("x", MaxSecretLen+1), want: ErrSecretTooLong},
		{name: "unknown id, secret too long", id: "bob@pbs!ci", secret: strings.Repeat("x", MaxSecretLen+1), want: ErrSecretTooLong},
		{name: "malformed id", id: "alice@pbs", secret: wrong, want: authid.ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			gen, err := shmem.New()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { gen.Close() })
			s, err := Open(Options{Path: filepath.Join(dir, "token.shadow"), Generations: gen, NoCache: tt.noCache})
			if err != nil {
				t.Fatal(err)
			}
			const known = "alice@pbs!ci"
			secret := ""
			if !tt.noFile {
				if secret, err = s.Generate(known); err != nil {
					t.Fatal(err)
				}
				if err := s.Verify(known, secret); err != nil {
					t.Fatal(err)
				}
			}
			if tt.uncache {
				s.Forget()
			}
			id, presented := cmp.Or(tt.id, known), cmp.Or(tt.secret, secret)
			before := s.Stats().Crypts
			hit, err := s.VerifyHit(id, presented)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("VerifyHit(%s) = %v; want %v", id, err, tt.want)
			}
			if got := s.Stats().Crypts - before; got != tt.crypts {
				t.Errorf("VerifyHit(%s) = %v with %d crypt verifications; want %d", id, err, got, tt.crypts)
			}
			if hit != tt.hit {
				t.Errorf("VerifyHit(%s) hit = %v; want %v", id, hit, tt.hit)
			}
			if !tt.noFile && !tt.noCache && tt.id == "" && (!tt.uncache || tt.want == nil) {
				// The verified secret is cached (a refusal leaves it so): accepted with no crypt.
				before := s.Stats().Crypts
				if hit, err := s.VerifyHit(known, secret); !hit || err != nil || s.Stats().Crypts != before {
					t.Errorf("then VerifyHit(right) = %v, %v with %d crypts; want true, nil with none", hit, err, s.Stats().Crypts-before)
				}
			}
		})
	}
}

// TestDummyHash: the hash an unknown id is checked against is made as a stored one is ($5$, 5000
// rounds, a salt of the same length), so that checking it costs the same; each Store has its
// own, and its secret is not one a client could guess.
func TestDummyHash(t *testing.T) {
	s, other := newStore(t), newStore(t)
	stored, err := s.hasher.Hash("00000000-0000-0000-0000-000000000000")
	if err != nil {
		t.Fatal(err)
	}
	shape := func(h string) []int { // lengths of the $-separated fields
		var n []int
		for _, f := range strings.Split(h, "$") {
			n = append(n, len(f))
		}
		return n
	}
	if !strings.HasPrefix(s.dummy, "$5$") || fmt.Sprint(shape(s.dummy)) != fmt.Sprint(shape(stored)) {
		t.Errorf("dummy hash %q; want the shape of a stored hash %q ($5$, 5000 rounds implied, same salt length)", s.dummy, stored)
	}
	if s.dummy == other.dummy {
		t.Errorf("two Stores have the same dummy hash %q; want a random salt each", s.dummy)
	}
	for _, guess := range []string{"", "x", "00000000-0000-0000-0000-000000000000"} {
		if ok, err := s.hasher.Check(s.dummy, guess); ok || err != nil {
			t.Errorf("Check(dummy, %q) = %v, %v; want false, nil", guess, ok, err)
		}
	}
}

func TestManualEditNoticed(t *testing.T) {
	s, id, secret := newCachedToken(t)
	// An admin replaces the hash with one for another secret, in place, bumping nothing.
	h, err := s.hasher.Hash("edited-secret")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path(), []byte(`{"`+id+`": "`+h+`"}`), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckFile(); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(id, secret); !errors.Is(err, ErrWrongSecret) {
		t.Errorf("Verify(old) after edit and CheckFile = %v; want ErrWrongSecret", err)
	}
	if err := s.Verify(id, "edited-secret"); err != nil {
		t.Errorf("Verify(edited) after edit and CheckFile = %v; want nil", err)
	}
	// An unchanged file keeps the cache.
	if err := s.CheckFile(); err != nil {
		t.Fatal(err)
	}
	if !cached(s, id) {
		t.Errorf("CheckFile on an unchanged file dropped the cache")
	}
}

func TestBadFiles(t *testing.T) {
	const id = "alice@pbs!ci"
	good := `{"` + id + `": "$5$abc$W6SISEcmf6GfVdGFK0lGBXz2NPDhGZ.FBBMOz418YA7"}`
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    error
	}{
		{"empty", "", 0o600, ErrCorrupt},
		{"whitespace", " \n", 0o600, ErrCorrupt},
		{"truncated", good[:len(good)/2], 0o600, ErrCorrupt},
		{"not json", "alice@pbs!ci:$5$abc$x\n", 0o600, ErrCorrupt},
		{"null", "null", 0o600, ErrCorrupt},
		{"array", `["a"]`, 0o600, ErrCorrupt},
		{"number value", `{"alice@pbs!ci": 5}`, 0o600, ErrCorrupt},
		{"trailing", good + "{}", 0o600, ErrCorrupt},
		{"bad id", `{"alice!ci": "$5$abc$x"}`, 0o600, ErrCorrupt},
		{"empty hash", `{"alice@pbs!ci": ""}`, 0o600, ErrCorrupt},
		{"world readable", good, 0o644, ErrPermissions},
		{"group writable", good, 0o660, ErrPermissions},
		{"few rounds", `{"alice@pbs!ci": "$5$rounds=999$abc$W6SISEcmf6GfVdGFK0lGBXz2NPDhGZ.FBBMOz418YA7"}`, 0o600, ErrBadHash},
		{"md5", `{"alice@pbs!ci": "$1$abc$xyz"}`, 0o600, ErrBadHash},
		{"plain", `{"alice@pbs!ci": "hello"}`, 0o600, ErrBadHash},
		{"garbage 5", `{"alice@pbs!ci": "$5$"}`, 0o600, ErrBadHash},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			if err := os.WriteFile(s.Path(), []byte(tt.content), tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(s.Path(), tt.mode); err != nil {
				t.Fatal(err)
			}
			err := s.Verify(id, "hello")
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify on %s file = %v; want %v", tt.name, err, tt.want)
			}
			if strings.Contains(err.Error(), "hello") {
				t.Errorf("error %q contains the secret", err)
			}
			if tt.want != ErrBadHash && !strings.Contains(err.Error(), s.Path()) {
				t.Errorf("error %q does not name the file", err)
			}
			// A writer must refuse to overwrite a file it cannot read, and leave it untouched.
			if tt.want != ErrBadHash {
				if _, err := s.Generate("bob@pbs!ci"); err == nil {
					t.Errorf("Generate over a %s file succeeded; want an error", tt.name)
				}
				after, _ := os.ReadFile(s.Path())
				if string(after) != tt.content {
					t.Errorf("file changed by a refused write: %q; want %q", after, tt.content)
				}
			}
		})
	}
}

func TestBadPaths(t *testing.T) {
	t.Run("symlink", func(t *testing.T) {
		s := newStore(t)
		target := filepath.Join(t.TempDir(), "real")
		if err := os.WriteFile(target, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, s.Path()); err != nil {
			t.Fatal(err)
		}
		if err := s.Verify("a@pbs!ci", "x"); !errors.Is(err, ErrPermissions) {
			t.Errorf("Verify through a symlink = %v; want ErrPermissions", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		s := newStore(t)
		if err := os.Mkdir(s.Path(), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := s.Verify("a@pbs!ci", "x"); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Verify on a directory = %v; want ErrCorrupt", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		s := newStore(t)
		f, err := os.OpenFile(s.Path(), os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(MaxFileSize + 1); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if err := s.Verify("a@pbs!ci", "x"); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Verify on a %d byte file = %v; want ErrCorrupt", MaxFileSize+1, err)
		}
	})
	t.Run("unreadable", func(t *testing.T) {
		if os.Getuid() == 0 {
			t.Skip("root reads any file; the unprivileged case is covered by the daemons' tests")
		}
		s := newStore(t)
		if err := os.WriteFile(s.Path(), []byte("{}"), 0o000); err != nil {
			t.Fatal(err)
		}
		if err := s.Verify("a@pbs!ci", "x"); !errors.Is(err, os.ErrPermission) {
			t.Errorf("Verify on an unreadable file = %v; want a permission error", err)
		}
	})
}

func TestBadArguments(t *testing.T) {
	s := newStore(t)
	huge := strings.Repeat("s", 1<<20)
	if err := s.Verify("alice@pbs!ci", huge); !errors.Is(err, ErrSecretTooLong) {
		t.Errorf("Verify(1 MB secret) = %v; want ErrSecretTooLong", err)
	}
	if err := s.Set("alice@pbs!ci", huge); err == nil || strings.Contains(err.Error(), "sss") {
		t.Errorf("Set(1 MB secret) = %v; want a short error", err)
	}
	for _, id := range []string{"alice@pbs", "alice", "alice@pbs!", "al ice@pbs!ci", "alice@pbs!c:i", ""} {
		if err := s.Verify(id, "x"); !errors.Is(err, authid.ErrSyntax) {
			t.Errorf("Verify(%q) = %v; want authid.ErrSyntax", id, err)
		}
		if err := s.Set(id, "x"); !errors.Is(err, authid.ErrSyntax) {
			t.Errorf("Set(%q) = %v; want authid.ErrSyntax", id, err)
		}
		if err := s.Delete(id); !errors.Is(err, authid.ErrSyntax) {
			t.Errorf("Delete(%q) = %v; want authid.ErrSyntax", id, err)
		}
	}
	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused writes created %s", s.Path())
	}
}

func TestFastPathAllocs(t *testing.T) {
	s, id, secret := newCachedToken(t)
	if n := testing.AllocsPerRun(100, func() {
		if s.Verify(id, secret) != nil {
			t.Fatal("cached Verify failed")
		}
	}); n != 0 {
		t.Errorf("cached Verify allocates %v times; want 0", n)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"alice@pbs!ci": "$5$abc$W6SISEcmf6GfVdGFK0lGBXz2NPDhGZ.FBBMOz418YA7"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(``))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"a@b!c": 1}`))
	f.Add([]byte(`{"root@pam!x1": "$y$j9T$a$b", "root@pam!x2": "$6$rounds=1000$a$b"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parse(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("parse(%q) error %v does not wrap ErrCorrupt", data, err)
			}
			return
		}
		enc, err := encode(m)
		if err != nil {
			t.Fatalf("encode(parse(%q)) = %v", data, err)
		}
		m2, err := parse(enc)
		if err != nil || len(m2) != len(m) {
			t.Fatalf("parse(encode(parse(%q))) = %v, %v; want round trip", data, m2, err)
		}
		for k, v := range m {
			if m2[k] != v {
				t.Fatalf("round trip changed %q: %q -> %q", k, v, m2[k])
			}
		}
	})
}

// TestEqual checks the constant-time digest comparison against bytes.Equal.
func TestEqual(t *testing.T) {
	f := func(a, b [32]byte, flip uint8) bool {
		if flip%2 == 0 {
			b = a
			b[flip%32] ^= byte(1 << (flip % 8)) // differ in exactly one bit
		}
		return equal(&a, &b) == bytes.Equal(a[:], b[:]) && equal(&a, &a)
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 10000}); err != nil {
		t.Error(err)
	}
}

// TestDigestIsSHA256 checks the cache digest against crypto/sha256 at every length up to
// MaxSecretLen, which covers each padding case (55, 56, 63, 64 bytes and beyond).
func TestDigestIsSHA256(t *testing.T) {
	in := make([]byte, MaxSecretLen)
	for i := range in {
		in[i] = byte(i*7 + 1)
	}
	for n := 0; n <= MaxSecretLen; n++ {
		if got, want := digest(string(in[:n])), stdsha256.Sum256(in[:n]); got != want {
			t.Fatalf("digest of %d bytes = %x; want SHA-256 %x", n, got, want)
		}
	}
}

// TestCachedKeyCollision plants, under the hash key of one token, the cache entry of another
// (what a collision of the 64-bit seeded hashes would leave): the fast path must not answer
// for the wrong id, and the next slow-path verification replaces the entry.
func TestCachedKeyCollision(t *testing.T) {
	s, alice, aliceSecret := newCachedToken(t)
	const bob = "bob@pbs!ci"
	bobSecret, err := s.Generate(bob)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(alice, aliceSecret); err != nil { // cache again after the bump
		t.Fatal(err)
	}
	sn := s.snap.Load()
	kb := s.key(bob)
	m := shard{kb: {id: alice, sum: digest(aliceSecret)}}
	if old := sn.shards[kb%shardCount].Load(); old != nil {
		for k, v := range *old {
			if k != kb {
				m[k] = v
			}
		}
	}
	sn.shards[kb%shardCount].Store(&m)

	if err := s.Verify(bob, aliceSecret); !errors.Is(err, ErrWrongSecret) {
		t.Errorf("Verify(bob, alice's secret) with alice's entry under bob's key = %v; want ErrWrongSecret", err)
	}
	if cached(s, bob) {
		t.Fatal("bob cached after a refused verification")
	}
	if err := s.Verify(bob, bobSecret); err != nil {
		t.Errorf("Verify(bob) = %v; want nil", err)
	}
	if !cached(s, bob) {
		t.Error("bob not cached after the slow path accepted his secret")
	}
	if err := s.Verify(alice, aliceSecret); err != nil || !cached(s, alice) {
		t.Errorf("Verify(alice) = %v, cached %v; want nil, true", err, cached(s, alice))
	}
}

// TestWatch drives the watch loop with injected ticks: an editor-style replacement of the file
// (write a new file, rename it over) is noticed at the next tick.
func TestWatch(t *testing.T) {
	if WatchInterval > time.Second/2 {
		t.Fatalf("WatchInterval = %v; want at most 500ms so edits are noticed within 1s", WatchInterval)
	}
	s, id, secret := newCachedToken(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tick := make(chan time.Time)
	done := make(chan struct{})
	checked := make(chan struct{})
	check := func() error {
		defer func() { checked <- struct{}{} }()
		return s.CheckFile()
	}
	go func() {
		lockfile.PollTicks(ctx, tick, check, func(err error) { t.Errorf("watch reported %v", err) })
		close(done)
	}()
	// tickAndWait returns once the check of its tick has run (a second send alone would only
	// wait for the first check, leaving the second one racing with what the test does next).
	tickAndWait := func() { tick <- time.Time{}; <-checked }

	tickAndWait()
	if !cached(s, id) {
		t.Fatal("a tick on an unchanged file dropped the cache")
	}
	h, err := s.hasher.Hash("edited-secret")
	if err != nil {
		t.Fatal(err)
	}
	tmp := s.Path() + ".swp"
	if err := os.WriteFile(tmp, []byte(`{"`+id+`": "`+h+`"}`), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, s.Path()); err != nil {
		t.Fatal(err)
	}
	// Before the tick the cache answers as before the edit. (Verify(edited) would take the slow
	// path, which reads the new file and notices the edit itself: TestCachedMismatchSeesEdit.)
	if hit, err := s.VerifyHit(id, secret); !hit || err != nil {
		t.Fatalf("before the tick VerifyHit(old) = %v, %v; want the cached answer true, nil", hit, err)
	}
	tickAndWait()
	if err := s.Verify(id, "edited-secret"); err != nil {
		t.Errorf("after the tick Verify(edited) = %v; want nil", err)
	}
	if err := s.Verify(id, secret); !errors.Is(err, ErrWrongSecret) {
		t.Errorf("after the tick Verify(old) = %v; want ErrWrongSecret", err)
	}
	cancel()
	<-done
}

func TestStatsAndHits(t *testing.T) {
	s, id, secret := newCachedToken(t) // one slow path
	wantMisses := uint64(1)
	verify := func(step, secret string, wantHit bool, wantErr error) {
		t.Helper()
		hit, err := s.VerifyHit(id, secret)
		if hit != wantHit || !errors.Is(err, wantErr) {
			t.Fatalf("%s: VerifyHit = %v, %v; want %v, %v", step, hit, err, wantHit, wantErr)
		}
		if got := s.Stats(); got != (Stats{Misses: wantMisses, Crypts: wantMisses}) {
			t.Fatalf("after %s: Stats() = %+v; want %d misses and crypts, none in flight", step, got, wantMisses)
		}
	}
	verify("a cached secret", secret, true, nil)
	wantMisses++
	verify("a wrong secret of a cached token (refused on the slow path)", "00000000-0000-0000-0000-000000000000", false, ErrWrongSecret)
	verify("a too long secret", strings.Repeat("x", MaxSecretLen+1), false, ErrSecretTooLong)
	if _, err := s.Rotate(id); err != nil {
		t.Fatal(err)
	}
	wantMisses++
	verify("the old secret after a rotation (the generation moved)", secret, false, ErrWrongSecret)
	wantMisses++
	if hit, err := s.VerifyHit("alice@pbs!other", secret); hit || !errors.Is(err, ErrNoToken) {
		t.Fatalf("VerifyHit(unknown) = %v, %v; want false, ErrNoToken", hit, err)
	}
	if got := s.Stats(); got != (Stats{Misses: wantMisses, Crypts: wantMisses}) {
		t.Fatalf("after an unknown token: Stats() = %+v; want %d misses and crypts", got, wantMisses)
	}
}

// TestStatsInFlight runs slow paths (the cache dropped before each) on several goroutines until
// Stats has seen one running, then checks that none is counted once they have all returned.
func TestStatsInFlight(t *testing.T) {
	s, id, secret := newCachedToken(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				s.Forget()
				if err := s.Verify(id, secret); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	seen := false
	for deadline := time.Now().Add(10 * time.Second); !seen && time.Now().Before(deadline); {
		seen = s.Stats().InFlight > 0
	}
	close(stop)
	wg.Wait()
	if !seen {
		t.Error("Stats().InFlight never rose above 0 while slow paths ran")
	}
	if st := s.Stats(); st.InFlight != 0 || st.Misses < 2 {
		t.Errorf("Stats() = %+v after the slow paths returned; want InFlight 0 and Misses >= 2", st)
	}
}

// TestNoCache checks that with Options.NoCache every Verify is a slow path (a miss, never a
// hit), nothing is cached, and the answers are those of the cached Store: right secret
// accepted, wrong and rotated-away ones refused.
func TestNoCache(t *testing.T) {
	dir := t.TempDir()
	gen, err := shmem.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gen.Close() })
	s, err := Open(Options{Path: filepath.Join(dir, "token.shadow"), Generations: gen, NoCache: true})
	if err != nil {
		t.Fatal(err)
	}
	id := "alice@pbs!bench"
	secret, err := s.Generate(id)
	if err != nil {
		t.Fatal(err)
	}
	wantMisses := uint64(0)
	verify := func(step, secret string, wantErr error) {
		t.Helper()
		wantMisses++
		hit, err := s.VerifyHit(id, secret)
		if hit || !errors.Is(err, wantErr) {
			t.Fatalf("%s: VerifyHit = %v, %v; want false, %v", step, hit, err, wantErr)
		}
		if got := s.Stats(); got != (Stats{Misses: wantMisses, Crypts: wantMisses}) {
			t.Fatalf("after %s: Stats() = %+v; want %d misses and crypts, none in flight", step, got, wantMisses)
		}
		if cached(s, id) {
			t.Fatalf("after %s: the token is cached; want nothing cached", step)
		}
	}
	for i := range 3 {
		verify(fmt.Sprintf("the right secret, call %d", i+1), secret, nil)
	}
	verify("a wrong secret", "00000000-0000-0000-0000-000000000000", ErrWrongSecret)
	next, err := s.Rotate(id)
	if err != nil {
		t.Fatal(err)
	}
	verify("the old secret after a rotation", secret, ErrWrongSecret)
	verify("the new secret", next, nil)
}
