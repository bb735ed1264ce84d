// Package tokenshadow keeps API token secrets: PBS's token.shadow file and, in each process, a
// cache of secrets already verified, invalidated through the shared generation counter.
//
// # File
//
// token.shadow is a JSON object {"user@realm!name": "<crypt(3) hash>"}, as in PBS. New secrets
// are random UUIDs (PBS style) hashed as SHA-256-crypt ($5$, 5000 rounds, set explicitly);
// verification accepts $5$ and $6$ (rounds 1000..10 000 000) and yescrypt ($y$). The file must be
// a regular file, not group-writable nor accessible by others (0600 or 0640, root:gatehouse),
// at most 64 MiB. A missing file means no tokens; an empty, truncated or non-JSON one is an
// error, and writers refuse to overwrite it (nothing is lost).
//
// # Writers
//
// Set, Generate, Rotate and Delete take the exclusive lock (lockfile, 10 s timeout), read the
// file, replace it atomically (temp, fsync, rename, fsync dir), bump the token_shadow
// generation in the shared ConfigVersionCache (shmem) and only then unlock and return.
// Hashing happens before the lock is taken.
//
// # Verified-secret cache
//
// Each Store holds an immutable snapshot behind an atomic pointer: the generation it was built
// at, the identity of the file it was read from, and per token id the SHA-256 digest of the
// secret that verified (never the secret). The entries are split in 64 copy-on-write shards so
// that adding one copies 1/64 of them; a per-process seeded 64-bit hash of the id, computed once
// per Verify, picks the shard and is the key within it, and each entry keeps its id so that
// colliding ids are told apart (a collision costs a slow path, never a wrong answer).
//
//   - Fast path (no allocation; 84-91 ns on the 2-core VM, of which SHA-256 of a 36-byte
//     secret takes 66-74 with github.com/minio/sha256-simd on SHA-NI, against 83 with
//     crypto/sha256, so the former is used):
//     g = gen; snapshot.gen == g, snapshot.epoch == the Store's epoch and id present; digest
//     the presented secret and compare in constant time; equal and gen still g: accept. Any
//     other outcome, a different digest included, goes to the slow path: the fast path only
//     ever accepts (see Timing).
//   - Slow path: g0 = gen; read and parse token.shadow (the parsed table is reused while the
//     generation and the file identity are unchanged); crypt-verify; g1 = gen; if g0 != g1 retry
//     (at most 8 times); remember the digest in the snapshot of g0 only if the generation did
//     not move. Concurrent slow paths for the same id and secret share one hash computation
//     (singleflight); a caller that joins a computation made at an older generation than the one
//     it started at retries, so a result from before a rotation is never handed to a verification
//     that started after it.
//
// Options.NoCache (proxyd's --token-cache=false, a benchmark and debugging switch) turns the
// cache off: every Verify takes the slow path on its own (no snapshot, no singleflight), that
// is a stat of the file (the parsed table is still reused while file and generation are
// unchanged) and a crypt verification, about 1 ms for $5$ on the 2-core VM.
//
// Stats counts the slow paths entered (misses), the slow-path computations running now and
// the crypt verifications started (one per computation; a shared one once); VerifyHit tells its
// caller whether the answer was a cache hit, which is always an acceptance. The fast path
// writes nothing shared (see counters).
//
// # Timing
//
// A refusal must not tell whether the token id exists, nor whether it is in use: an attacker
// measured an unknown id refused in 0.19 ms against 0.92 ms for a known one (no overlap; the
// 3 s failure delay comes on top and hides nothing), since an unknown id skipped the crypt, and
// a wrong secret for a cached id was refused from the cache in about 100 ns. So every answer
// but a cached acceptance costs one crypt verification of the cost of the hashes we write:
//
//   - An id not in the file is checked against a dummy hash made once per Store in Open: $5$,
//     5000 rounds, a random salt, of a random secret that is thrown away (about 1 ms at Open). The
//     result is discarded and the answer stays ErrNoToken. It goes through the same stat, table
//     lookup, singleflight and crypthash.Check (decode included) as a known id; SHA-crypt's cost
//     grows with the secret's length the same way for both. A missing file (no tokens) too.
//   - A wrong secret for a cached id is not refused from the cache: the fast path accepts only,
//     and a digest that differs takes the slow path, which checks the presented secret against
//     the stored hash (still refusing it). A miss, counted as such; the entry stays cached.
//   - Refusals decided before any lookup do not depend on the id: a secret over MaxSecretLen,
//     an empty one, a malformed id.
//
// Only a correct secret is fast, and that is an answer the caller sees anyway. What is left: a
// cached id's wrong secret also pays the fast path's digest and lookup (about 100 ns on a 1 ms
// crypt whose own jitter is larger); a token whose stored hash costs more or less than $5$ with
// 5000 rounds (imported $6$ or $y$ hashes, or other rounds) is told apart by its cost, as in PBS.
// A cached id's refusals cost a crypt each, where they used to cost 100 ns, as unknown and
// uncached ids' always did: proxyd's failure guard bounds them per client address (10 failures,
// then one per 6 s), so an attacker gains no new way to spend our CPU. The tests count the crypt
// verifications (Stats.Crypts, which proxyd exports) rather than time them; bench/ measures the
// latencies.
//
// Invariant: once a writer has returned, no Verify that starts afterwards, in any process
// sharing the generation file, accepts the replaced or deleted secret.
//
// Manual edits of token.shadow bump no generation; Watch notices them by polling the file's
// identity (inode, size, mtime, ctime) every 250 ms and drops the snapshot, so they take
// effect within 1 s (PBS: 60 s). A slow path that reads a changed file under an unchanged
// generation notices the edit too. Either moves the Store's epoch, a local counter of noticed
// edits: a digest is cached under the epoch read before its file was, and the fast path
// ignores a snapshot of an older epoch, so a slow path that read the file before an edit and
// ends after it was noticed cannot bring the old secret back (it did, for up to one poll,
// before the epoch: TestEditDuringSlowPath).
package tokenshadow

import (
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	sha256 "github.com/minio/sha256-simd"
	"golang.org/x/sync/singleflight"

	"gatehouse/authid"
	"gatehouse/crypthash"
	"gatehouse/lockfile"
	"gatehouse/shmem"
)

// Limits and defaults.
const (
	MaxSecretLen  = 256                    // longer secrets are refused before any hashing
	WatchInterval = 250 * time.Millisecond // default poll interval of Watch
	maxAttempts   = 8                      // slow-path retries when the generation moves
	shardCount    = 64
)

// Verification results. Verify returns nil or an error wrapping one of these (or a file error).
var (
	ErrNoToken       = errors.New("no such token")
	ErrWrongSecret   = errors.New("wrong token secret")
	ErrSecretTooLong = errors.New("token secret too long")
	ErrBusy          = errors.New("token shadow changed during every verification attempt")
	ErrBadHash       = crypthash.ErrBadHash // a stored hash cannot be used
)

// Options configure a Store.
type Options struct {
	Path        string        // token.shadow
	LockPath    string        // lock file; default "<dir of Path>/.token.shadow.lck"
	Generations *shmem.Cache  // shared generation counters; required
	LockTimeout time.Duration // default lockfile.DefaultTimeout (10 s)
	Mode        os.FileMode   // mode of the written file; default 0640
	GID         int           // group to chown the written file to (root:gatehouse); <= 0 leaves the process's group
	NoCache     bool          // every Verify takes the slow path alone (benchmarks, debugging)
}

// Store reads and writes one token.shadow and caches verified secrets for this process.
type Store struct {
	path, lockPath string
	gen            *shmem.Cache
	lockTimeout    time.Duration
	mode           os.FileMode
	gid            int
	hasher         *crypthash.Hasher
	dummy          string // $5$ hash of a discarded random secret: checked for unknown ids (see Timing)
	seed           maphash.Seed
	noCache        bool

	snap   atomic.Pointer[snapshot] // nil: nothing cached
	table  atomic.Pointer[table]    // last parsed file, for the slow path
	epoch  atomic.Uint64            // file changes this process saw under one generation (manual edits)
	flight singleflight.Group

	stats counters
}

// counters are what Stats reports: slow-path events only. The fast path writes no shared
// memory: a counter there, even striped over 16 cache lines, doubled the parallel fast path on
// the 2-core VM (42 to 87 ns/op; one shared counter: 123), since concurrent atomic adds are
// that dear there. VerifyHit tells the caller instead, which counts hits where a request
// already pays for atomics.
type counters struct {
	misses   atomic.Uint64 // slow paths entered
	inFlight atomic.Int64  // slow-path hash computations running
	crypts   atomic.Uint64 // crypt verifications started, against a stored hash or the dummy one
}

// Stats are a Store's slow-path counters since Open. Cache hits are not counted here: see
// VerifyHit.
type Stats struct {
	Misses   uint64 // Verify took the slow path
	InFlight int64  // slow-path computations (file read and crypt) running now
	Crypts   uint64 // crypt verifications started, against a stored hash or, for an unknown id, the dummy one
}

// Stats returns the counters. Each is read atomically; together they are not a snapshot.
func (s *Store) Stats() Stats {
	return Stats{Misses: s.stats.misses.Load(), InFlight: s.stats.inFlight.Load(), Crypts: s.stats.crypts.Load()}
}

// snapshot is the verified-secret cache of one generation, epoch and file version. gen, epoch
// and fid never change; each shard map is immutable and replaced whole (copy on write). The
// fast path uses a snapshot only while both its generation and its epoch are current.
type snapshot struct {
	gen    uint64
	epoch  uint64
	fid    lockfile.FileID
	shards [shardCount]atomic.Pointer[shard]
}

// shard maps the seeded hash of a token id (see Store.key) to the id and its digest. The id is
// stored to tell colliding ids apart: an entry for another id is a miss, and remember lets the
// newer one replace it. Hashing the id once per Verify, for both the shard and the map, is what
// keeps the fast path within budget.
type shard map[uint64]entry

type entry struct {
	id  string
	sum [sha256.Size]byte
}

// Open returns a Store for o.Path. It does not read the file: that happens on first use.
func Open(o Options) (*Store, error) {
	if o.Path == "" {
		return nil, errors.New("opening token shadow: no path given")
	}
	if o.Generations == nil {
		return nil, fmt.Errorf("opening token shadow %s: no generation cache given", o.Path)
	}
	h, err := crypthash.New()
	if err != nil {
		return nil, fmt.Errorf("opening token shadow %s: %w", o.Path, err)
	}
	throwaway, err := newSecret()
	if err != nil {
		return nil, fmt.Errorf("opening token shadow %s: making the dummy secret: %w", o.Path, err)
	}
	dummy, err := h.Hash(throwaway)
	if err != nil {
		return nil, fmt.Errorf("opening token shadow %s: making the dummy hash: %w", o.Path, err)
	}
	s := &Store{
		path:        o.Path,
		lockPath:    o.LockPath,
		gen:         o.Generations,
		lockTimeout: o.LockTimeout,
		mode:        o.Mode,
		gid:         o.GID,
		hasher:      h,
		dummy:       dummy,
		seed:        maphash.MakeSeed(),
		noCache:     o.NoCache,
	}
	if s.lockPath == "" {
		s.lockPath = filepath.Join(filepath.Dir(o.Path), ".token.shadow.lck")
	}
	if s.lockTimeout <= 0 {
		s.lockTimeout = lockfile.DefaultTimeout
	}
	if s.mode == 0 {
		s.mode = 0o640
	}
	return s, nil
}

// Path returns the token.shadow path.
func (s *Store) Path() string { return s.path }

// Verify checks secret for the token id. It returns nil when it matches, an error wrapping
// ErrNoToken, ErrWrongSecret or ErrSecretTooLong when it does not, and another error when the
// file cannot be used. Errors name the id, never the secret.
func (s *Store) Verify(id, secret string) error {
	_, err := s.VerifyHit(id, secret)
	return err
}

// VerifyHit is Verify, also reporting whether the answer came from the verified-secret cache
// without a slow path: a cache hit, for the caller to count. A hit is always an acceptance;
// every refusal takes the slow path (see Timing in the package comment).
func (s *Store) VerifyHit(id, secret string) (hit bool, err error) {
	if len(secret) > MaxSecretLen {
		return false, ErrSecretTooLong
	}
	sum := digest(secret)
	g := s.gen.Load(shmem.TokenShadow)
	if sn := s.snap.Load(); sn != nil && sn.gen == g && sn.epoch == s.epoch.Load() {
		k := s.key(id)
		if m := sn.shards[k%shardCount].Load(); m != nil {
			// A different digest is not refused here: it goes to the slow path, which costs the
			// crypt an unknown or uncached id costs, so a fast refusal cannot tell that this id
			// exists and is in use.
			if e, ok := (*m)[k]; ok && e.id == id && equal(&sum, &e.sum) && s.gen.Load(shmem.TokenShadow) == g {
				return true, nil
			}
		}
	}
	s.stats.misses.Add(1)
	return false, s.verifySlow(id, secret, sum, g)
}

// digest returns SHA-256(secret) without allocating: secret is at most MaxSecretLen bytes and
// is copied to the stack (converting it to []byte would allocate past 32 bytes; only shmem/
// may use unsafe).
func digest(secret string) [sha256.Size]byte {
	if len(secret) <= 64 { // a PBS secret is a 36-byte UUID; skip zeroing the large buffer
		var buf [64]byte
		n := copy(buf[:], secret)
		return sha256.Sum256(buf[:n])
	}
	var buf [MaxSecretLen]byte
	n := copy(buf[:], secret)
	return sha256.Sum256(buf[:n])
}

// equal compares two digests in constant time: no branch or memory access depends on their
// contents (checked against bytes.Equal in the tests).
func equal(a, b *[sha256.Size]byte) bool {
	var x uint64
	for i := 0; i < sha256.Size; i += 8 {
		x |= binary.LittleEndian.Uint64(a[i:]) ^ binary.LittleEndian.Uint64(b[i:])
	}
	return subtle.ConstantTimeEq(int32(uint32(x>>32)|uint32(x)), 0) == 1
}

// key is the per-process seeded hash of a token id: its low bits pick the shard, the whole
// value is the key within it.
func (s *Store) key(id string) uint64 {
	return maphash.String(s.seed, id)
}

type verdict struct {
	gen   uint64
	found bool
	match bool
}

// verifySlow is the slow path; gStart is the generation read when the Verify began.
func (s *Store) verifySlow(id, secret string, sum [sha256.Size]byte, gStart uint64) error {
	if _, err := authid.ParseToken(id); err != nil {
		return fmt.Errorf("verifying token: %w", err)
	}
	if secret == "" {
		return fmt.Errorf("verifying token %s: empty secret: %w", id, ErrWrongSecret)
	}
	if s.noCache {
		v, err := s.compute(id, secret, sum)
		return v.err(id, err)
	}
	key := id + "\x00" + string(sum[:])
	for range maxAttempts {
		v, err, _ := s.flight.Do(key, func() (any, error) { return s.compute(id, secret, sum) })
		if err != nil {
			return err
		}
		r := v.(verdict)
		if r.gen < gStart {
			// We joined a computation that began before our Verify did, at an older generation.
			continue
		}
		return r.err(id, nil)
	}
	return fmt.Errorf("verifying token %s: %w", id, ErrBusy)
}

// err is Verify's answer for a verdict computed with error err.
func (r verdict) err(id string, err error) error {
	switch {
	case err != nil:
		return err
	case !r.found:
		return fmt.Errorf("verifying token %s: %w", id, ErrNoToken)
	case !r.match:
		return fmt.Errorf("verifying token %s: %w", id, ErrWrongSecret)
	}
	return nil
}

// compute reads the file, checks the hash and caches the digest, retrying while writers move
// the generation.
func (s *Store) compute(id, secret string, sum [sha256.Size]byte) (verdict, error) {
	s.stats.inFlight.Add(1)
	defer s.stats.inFlight.Add(-1)
	for range maxAttempts {
		g0 := s.gen.Load(shmem.TokenShadow)
		t, e, err := s.load(g0)
		if err != nil {
			return verdict{}, err
		}
		hash, found := t.hashes[id]
		if !found {
			hash = s.dummy // the crypt a known id costs; its result is discarded (see Timing)
		}
		s.stats.crypts.Add(1)
		match, err := s.hasher.Check(hash, secret)
		if err != nil {
			return verdict{}, fmt.Errorf("verifying token %s in %s: %w", id, s.path, err)
		}
		match = match && found
		if s.gen.Load(shmem.TokenShadow) != g0 {
			continue
		}
		if match && !s.noCache {
			s.remember(g0, e, t.fid, id, sum)
		}
		return verdict{gen: g0, found: found, match: match}, nil
	}
	return verdict{}, fmt.Errorf("verifying token %s: %w", id, ErrBusy)
}

// load returns the parsed file for generation g, reusing the last one while the generation and
// the file identity are unchanged, and the epoch read before the file was: a digest verified
// against the table may be cached under that epoch. A file that changed under the same
// generation (a manual edit) moves the epoch first, so digests of slow paths still running on
// the old content are never used.
func (s *Store) load(g uint64) (*table, uint64, error) {
	e := s.epoch.Load()
	if t := s.table.Load(); t != nil && t.gen == g {
		fid, err := s.stat()
		if err != nil {
			return nil, 0, err
		}
		if fid == t.fid {
			return t, e, nil
		}
		e = s.epoch.Add(1)
	}
	t, err := readTable(s.path)
	if err != nil {
		return nil, 0, err
	}
	t.gen = g
	s.table.Store(t)
	return t, e, nil
}

// remember adds id's digest to the snapshot of generation g, epoch ep and file fid, starting a
// new snapshot when the current one is older, and never replacing a newer one. A digest of an
// epoch that has passed is dropped. Two files under one generation and epoch (an edit nobody
// has counted yet, seen by two slow paths) cannot be ordered: the epoch moves and neither is kept.
func (s *Store) remember(g, ep uint64, fid lockfile.FileID, id string, sum [sha256.Size]byte) {
	k := s.key(id)
	i := k % shardCount
	e := entry{id: id, sum: sum}
	for {
		if s.epoch.Load() != ep {
			return
		}
		sn := s.snap.Load()
		if sn != nil && (sn.gen > g || sn.gen == g && sn.epoch > ep) {
			return
		}
		if sn != nil && sn.gen == g && sn.epoch == ep && sn.fid != fid {
			s.epoch.CompareAndSwap(ep, ep+1)
			return
		}
		if sn == nil || sn.gen != g || sn.epoch != ep {
			fresh := &snapshot{gen: g, epoch: ep, fid: fid}
			m := shard{k: e}
			fresh.shards[i].Store(&m)
			if s.snap.CompareAndSwap(sn, fresh) {
				return
			}
			continue
		}
		old := sn.shards[i].Load()
		var m shard
		if old == nil {
			m = make(shard, 1)
		} else {
			m = make(shard, len(*old)+1)
			for k, v := range *old {
				m[k] = v
			}
		}
		m[k] = e
		if sn.shards[i].CompareAndSwap(old, &m) {
			return
		}
	}
}

// Forget drops this process's verified-secret cache; the next Verify of each token takes the
// slow path.
func (s *Store) Forget() {
	s.snap.Store(nil)
	s.table.Store(nil)
}

// CheckFile drops the cache when token.shadow is no longer the file it, or the last parsed
// table, was built from (an edit that bumped no generation): it moves the epoch, so neither the
// cache nor a slow path still verifying against the old content is used again. Watch calls it
// periodically.
func (s *Store) CheckFile() error {
	fid, err := s.stat()
	if err != nil {
		return err
	}
	sn, t := s.snap.Load(), s.table.Load()
	if (sn != nil && sn.fid != fid) || (t != nil && t.fid != fid) {
		s.epoch.Add(1)
		s.snap.CompareAndSwap(sn, nil)
	}
	return nil
}

// stat returns the identity of token.shadow, zero if it does not exist.
func (s *Store) stat() (lockfile.FileID, error) {
	fid, err := lockfile.Stat(s.path)
	if err != nil {
		return fid, fmt.Errorf("checking token shadow %s: %w", s.path, err)
	}
	return fid, nil
}

// Watch calls CheckFile every interval (WatchInterval if <= 0) until ctx is done. Errors are
// passed to report (which may be nil) and do not stop the watch. Tests inject the ticks with
// lockfile.PollTicks.
func (s *Store) Watch(ctx context.Context, interval time.Duration, report func(error)) {
	if interval <= 0 {
		interval = WatchInterval
	}
	lockfile.Poll(ctx, interval, s.CheckFile, report)
}

// Set stores secret as the token's secret, creating the token entry if needed.
func (s *Store) Set(id, secret string) error {
	if _, err := authid.ParseToken(id); err != nil {
		return fmt.Errorf("setting token secret: %w", err)
	}
	if secret == "" || len(secret) > MaxSecretLen {
		return fmt.Errorf("setting token secret of %s: secret is %d bytes, want 1..%d", id, len(secret), MaxSecretLen)
	}
	h, err := s.hasher.Hash(secret)
	if err != nil {
		return fmt.Errorf("setting token secret of %s: %w", id, err)
	}
	return s.update("setting token secret of "+id, func(m map[string]string) error {
		m[id] = h
		return nil
	})
}

// Generate gives the token a new random secret (a UUID, as PBS makes), creating the entry if
// needed, and returns the secret. It is shown to the caller once and stored only hashed.
func (s *Store) Generate(id string) (string, error) {
	secret, err := newSecret()
	if err != nil {
		return "", fmt.Errorf("generating secret for token %s: %w", id, err)
	}
	if err := s.Set(id, secret); err != nil {
		return "", err
	}
	return secret, nil
}

// Rotate replaces the secret of an existing token with a new random one and returns it.
// It fails with ErrNoToken when the token has no secret yet.
func (s *Store) Rotate(id string) (string, error) {
	if _, err := authid.ParseToken(id); err != nil {
		return "", fmt.Errorf("rotating token secret: %w", err)
	}
	secret, err := newSecret()
	if err != nil {
		return "", fmt.Errorf("rotating token %s: %w", id, err)
	}
	h, err := s.hasher.Hash(secret)
	if err != nil {
		return "", fmt.Errorf("rotating token %s: %w", id, err)
	}
	err = s.update("rotating token "+id, func(m map[string]string) error {
		if _, ok := m[id]; !ok {
			return ErrNoToken
		}
		m[id] = h
		return nil
	})
	if err != nil {
		return "", err
	}
	return secret, nil
}

// Delete removes the token's secret. It fails with ErrNoToken when there is none.
func (s *Store) Delete(id string) error {
	if _, err := authid.ParseToken(id); err != nil {
		return fmt.Errorf("deleting token secret: %w", err)
	}
	return s.update("deleting token "+id, func(m map[string]string) error {
		if _, ok := m[id]; !ok {
			return ErrNoToken
		}
		delete(m, id)
		return nil
	})
}

// Has reports whether token.shadow holds a secret for id, as the file is now: no lock is
// taken (writers replace the file whole), and the parse is the one the slow path uses while
// the file and the generation are unchanged.
func (s *Store) Has(id string) (bool, error) {
	t, _, err := s.load(s.gen.Load(shmem.TokenShadow))
	if err != nil {
		return false, err
	}
	_, ok := t.hashes[id]
	return ok, nil
}

// IDs returns the token ids in the file, read under a shared lock.
func (s *Store) IDs() ([]string, error) {
	lk, err := lockfile.Shared(s.lockPath, s.lockTimeout)
	if err != nil {
		return nil, fmt.Errorf("listing tokens in %s: %w", s.path, err)
	}
	defer lk.Unlock()
	t, err := readTable(s.path)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(t.hashes))
	for id := range t.hashes {
		ids = append(ids, id)
	}
	return ids, nil
}

// update runs change on the file's contents under the exclusive lock, writes the result
// atomically and bumps the generation before unlocking.
func (s *Store) update(what string, change func(map[string]string) error) (err error) {
	lk, err := lockfile.Exclusive(s.lockPath, s.lockTimeout)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer func() {
		if uerr := lk.Unlock(); uerr != nil && err == nil {
			err = fmt.Errorf("%s: %w", what, uerr)
		}
	}()
	t, err := readTable(s.path)
	if err != nil {
		return fmt.Errorf("%s: refusing to overwrite: %w", what, err)
	}
	if err := change(t.hashes); err != nil {
		return fmt.Errorf("%s in %s: %w", what, s.path, err)
	}
	data, err := encode(t.hashes)
	if err != nil {
		return fmt.Errorf("%s: encoding %s: %w", what, s.path, err)
	}
	dir, base := filepath.Split(s.path)
	if err := lockfile.CleanTemps(filepath.Clean(dir), base); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	opt := lockfile.DefaultOptions(s.mode)
	if s.gid > 0 {
		opt.GID = s.gid
	}
	if err := lockfile.Replace(s.path, data, opt); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	s.gen.Bump(shmem.TokenShadow)
	return nil
}

func newSecret() (string, error) {
	u, err := uuid.NewRandom()
	if err != nil {
		return "", err
	}
	return u.String(), nil
}
