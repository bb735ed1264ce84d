package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"gatehouse/shmem"
	"gatehouse/tokenshadow"

	sha256 "github.com/minio/sha256-simd"
)

// fixture is a token.shadow with n tokens and a Store on it, in its own temp dir.
type fixture struct {
	dir    string
	gen    *shmem.Cache
	store  *tokenshadow.Store
	ids    []string
	secret string // the secret of every token
}

// newFixture writes a token.shadow with n tokens. The first one gets a real Generate (a fresh
// $5$ hash, 5000 rounds); the others reuse that hash, which keeps building a 100 000-token
// file fast without changing what is parsed or verified.
func newFixture(n int) (_ *fixture, err error) {
	dir, err := os.MkdirTemp("", "gatehouse-bench-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	gen, err := shmem.New()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			gen.Close()
		}
	}()
	path := filepath.Join(dir, "token.shadow")
	s, err := tokenshadow.Open(tokenshadow.Options{Path: path, Generations: gen})
	if err != nil {
		return nil, err
	}
	f := &fixture{dir: dir, gen: gen, store: s, ids: tokenIDs("bench@pbs", n)}
	if f.secret, err = s.Generate(f.ids[0]); err != nil {
		return nil, err
	}
	if n > 1 {
		hash, err := firstHash(path)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, shadowFile(f.ids, hash), 0o640); err != nil {
			return nil, err
		}
		gen.Bump(shmem.TokenShadow) // as a writer would
	}
	return f, nil
}

// tokenIDs returns n token ids of user: user!t0, user!t1, ...
func tokenIDs(user string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = user + "!t" + strconv.Itoa(i)
	}
	return ids
}

// shadowFile is a token.shadow giving every id the same hash.
func shadowFile(ids []string, hash string) []byte {
	var b strings.Builder
	b.WriteString("{\n")
	for i, id := range ids {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, "  %q: %q", id, hash)
	}
	b.WriteString("\n}\n")
	return []byte(b.String())
}

// firstHash returns the hash of the first token in a token.shadow file.
func firstHash(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	_, hash, ok := strings.Cut(string(raw), `": "`)
	hash, _, ok2 := strings.Cut(hash, `"`)
	if !ok || !ok2 {
		return "", fmt.Errorf("no hash in %s", path)
	}
	return hash, nil
}

func (f *fixture) close() {
	f.gen.Close()
	os.RemoveAll(f.dir)
}

// warm verifies the first k tokens once so they are cached.
func (f *fixture) warm(k int) error {
	for _, id := range f.ids[:min(k, len(f.ids))] {
		if err := f.store.Verify(id, f.secret); err != nil {
			return err
		}
	}
	return nil
}

// A benchmark case: a name for the table and a body usable by both testing.Benchmark (the
// harness) and go test -bench (bench_test.go).
type benchCase struct {
	name     string
	tokens   int  // tokens in token.shadow
	cached   int  // tokens verified once before timing
	parallel bool // runs b.RunParallel (GOMAXPROCS goroutines)
	ratio    bool // show the ratio to the baseline on this row
	baseline bool // the single-goroutine $5$ slow path the ratios divide
	target   bool // the cached verify the targets judge
	run      func(b *testing.B, f *fixture)
}

func cases(sizes []int) []benchCase {
	cs := []benchCase{
		{name: "generation check (shmem Load)", tokens: 1, run: benchGenCheck},
		{name: "SHA-256 of a 36-byte secret (inside cached verify)", tokens: 1, run: benchSHA256},
		{name: "verify, slow path ($5$, 5000 rounds, file read)", tokens: 10, baseline: true, run: benchSlow},
		{name: "verify, slow path, parallel", tokens: 10, parallel: true, run: benchSlowParallel},
		{name: "verify, cached", tokens: 10, cached: 10, ratio: true, target: true, run: benchCached},
		{name: "verify, cached, parallel", tokens: 10, cached: 10, parallel: true, ratio: true, run: benchCachedParallel},
		// Refusals, each to cost one crypt like the slow path (tokenshadow's package comment,
		// Timing): slow/this near 1.
		{name: "verify, refused: cached id, wrong secret", tokens: 10, cached: 10, ratio: true, run: benchCachedWrong},
		{name: "verify, refused: uncached id, wrong secret", tokens: 10, cached: 10, ratio: true, run: benchUncachedWrong},
		{name: "verify, refused: unknown id", tokens: 10, cached: 10, ratio: true, run: benchUnknown},
	}
	for _, n := range sizes {
		cs = append(cs,
			benchCase{name: fmt.Sprintf("load token.shadow, %d tokens", n), tokens: n, run: benchLoad},
			benchCase{name: fmt.Sprintf("verify, slow path, %d tokens", n), tokens: n, run: benchSlow},
			benchCase{name: fmt.Sprintf("verify, cached, %d tokens (%d cached)", n, min(n, 1000)), tokens: n, cached: 1000, ratio: true, run: benchCachedSpread},
		)
	}
	return cs
}

func benchGenCheck(b *testing.B, f *fixture) {
	var sum uint64
	for b.Loop() {
		sum += f.gen.Load(shmem.TokenShadow)
	}
	_ = sum
}

func benchSHA256(b *testing.B, f *fixture) {
	secret := []byte(f.secret)
	var sum [sha256.Size]byte
	for b.Loop() {
		sum = sha256.Sum256(secret)
	}
	_ = sum
}

// benchSlow drops the cache before each Verify: file read, parse, crypt.
func benchSlow(b *testing.B, f *fixture) {
	for b.Loop() {
		f.store.Forget()
		if err := f.store.Verify(f.ids[0], f.secret); err != nil {
			b.Fatal(err)
		}
	}
}

// benchSlowParallel runs the slow path in every goroutine, each on its own token so no hash
// computation is shared (Forget drops the cache before each call; only a goroutine's own
// Verify could have put its token back).
func benchSlowParallel(b *testing.B, f *fixture) {
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		id := f.ids[int(next.Add(1)-1)%len(f.ids)]
		for pb.Next() {
			f.store.Forget()
			if err := f.store.Verify(id, f.secret); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func benchCached(b *testing.B, f *fixture) {
	id, secret := f.ids[0], f.secret
	for b.Loop() {
		if f.store.Verify(id, secret) != nil {
			b.Fatal("cached verify failed")
		}
	}
}

func benchCachedParallel(b *testing.B, f *fixture) {
	id, secret := f.ids[0], f.secret
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if f.store.Verify(id, secret) != nil {
				b.Fatal("cached verify failed")
			}
		}
	})
}

// refusedSecret is the secret the refusal rows present.
const refusedSecret = "00000000-0000-0000-0000-000000000000"

// benchCachedWrong presents a wrong secret for a cached token: refused on the slow path.
func benchCachedWrong(b *testing.B, f *fixture) {
	refuse(b, f, f.ids[0], tokenshadow.ErrWrongSecret)
}

// benchUncachedWrong presents a wrong secret for a token not verified at the current
// generation: the generation is bumped once first (the file is read again on the first call,
// then reused), and a refusal caches nothing. The next row's warm-up caches the tokens again.
func benchUncachedWrong(b *testing.B, f *fixture) {
	f.gen.Bump(shmem.TokenShadow)
	refuse(b, f, f.ids[0], tokenshadow.ErrWrongSecret)
}

// benchUnknown presents a secret for a well-formed id that has no token.
func benchUnknown(b *testing.B, f *fixture) {
	refuse(b, f, "bench@pbs!nosuch", tokenshadow.ErrNoToken)
}

func refuse(b *testing.B, f *fixture, id string, want error) {
	for b.Loop() {
		if err := f.store.Verify(id, refusedSecret); !errors.Is(err, want) {
			b.Fatalf("Verify(%s, wrong secret) = %v; want %v", id, err, want)
		}
	}
}

// benchCachedSpread verifies the cached tokens in turn.
func benchCachedSpread(b *testing.B, f *fixture) {
	ids := f.ids[:min(len(f.ids), 1000)]
	i := 0
	for b.Loop() {
		if f.store.Verify(ids[i], f.secret) != nil {
			b.Fatal("cached verify failed")
		}
		if i++; i == len(ids) {
			i = 0
		}
	}
}

// benchLoad reads and parses the whole file (under the shared lock), as the slow path does
// when the file changed.
func benchLoad(b *testing.B, f *fixture) {
	for b.Loop() {
		ids, err := f.store.IDs()
		if err != nil {
			b.Fatal(err)
		}
		if len(ids) != len(f.ids) {
			b.Fatalf("IDs() = %d ids; want %d", len(ids), len(f.ids))
		}
	}
}
