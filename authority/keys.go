package authority

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	"gatehouse/params"
	"gatehouse/reply"
	"gatehouse/shmem"
	"gatehouse/ticket"
)

// KeyFiles are the files apid's keys come from.
type KeyFiles struct {
	Key, Pub, Retired, CSRF string // authkey.key, authkey.pub, authkey.retired, csrf.key
	GID                     int    // group of the public files (proxyd's); <= 0: unchanged
}

// keySet is what signs tickets and CSRF tokens.
type keySet struct {
	signer *ticket.Signer // its Public() also accepts the live retired keys
	csrf   *ticket.CSRFKey
}

// retiredSkew is added to a rotation's time to make the retirement time of the old key: apid
// stamps a ticket up to 1 s ahead of now after a revocation (revocation.NotBefore), and such a
// ticket, signed just before the rotation, must stay valid.
const retiredSkew = time.Second

func (s *Server) verifier() *ticket.Verifier {
	s.keyMu.RLock()
	defer s.keyMu.RUnlock()
	return s.keys.signer.Public()
}

func (s *Server) signTFA(userid, challenge string, stamp time.Time) (string, error) {
	s.keyMu.RLock()
	defer s.keyMu.RUnlock()
	return s.keys.signer.SignTFA(s.o.Prefix, userid, challenge, stamp)
}

func (s *Server) csrfKey() *ticket.CSRFKey {
	s.keyMu.RLock()
	defer s.keyMu.RUnlock()
	return s.keys.csrf
}

func (s *Server) csrfToken(userid string, now time.Time) string {
	s.keyMu.RLock()
	defer s.keyMu.RUnlock()
	return s.keys.csrf.Token(userid, now)
}

// errNoKeyFiles refuses rotation and reload for a Server made without KeyFiles.
var errNoKeyFiles = errors.New("no key files configured")

// Reload reads the signing key (with the retired keys) and the CSRF key again, for SIGHUP after
// an administrator replaced them, and drops the cached users, ACL and token secrets. When a key
// changed, it bumps the keys generation so that every proxyd reloads too. On error the keys in
// use stay.
func (s *Server) Reload() error {
	f := s.o.KeyFiles
	if f.Key == "" {
		return fmt.Errorf("reloading keys: %w", errNoKeyFiles)
	}
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	if _, err := ticket.EnsurePublic(f.Key, f.Pub, f.GID); err != nil {
		return fmt.Errorf("reloading keys: %w", err)
	}
	signer, err := ticket.LoadSignerRing(f.Key, f.Retired, s.o.Now())
	if err != nil {
		return fmt.Errorf("reloading keys: %w", err)
	}
	csrf, err := ticket.LoadCSRFKey(f.CSRF)
	if err != nil {
		return fmt.Errorf("reloading keys: %w", err)
	}
	changed := signer.Public().Fingerprint() != s.keys.signer.Public().Fingerprint() || !csrf.Equal(s.keys.csrf)
	s.keys = keySet{signer: signer, csrf: csrf}
	s.tickets.SetVerifier(signer.Public())
	if changed {
		s.o.Generations.Bump(shmem.Keys)
	}
	s.o.Users.Forget()
	s.o.Tokens.Forget()
	if s.o.ACL != nil {
		s.o.ACL.Forget()
	}
	s.o.Log.Info("reloaded", "key", signer.Public().Fingerprint(), "keys_changed", changed)
	return nil
}

type keyJSON struct {
	Algorithm   string     `json:"algorithm"`
	Fingerprint string     `json:"fingerprint"`
	Previous    []retiredJ `json:"previous"`
}

type retiredJ struct {
	Fingerprint string `json:"fingerprint"`
	ValidUntil  int64  `json:"valid-until"`
}

func showKey(v *ticket.Verifier, now time.Time) keyJSON {
	k := keyJSON{Algorithm: v.Algorithm(), Fingerprint: v.Fingerprint(), Previous: []retiredJ{}}
	for _, r := range v.Retired() {
		if !now.After(r.ValidUntil()) {
			k.Previous = append(k.Previous, retiredJ{r.Verifier.Fingerprint(), r.ValidUntil().Unix()})
		}
	}
	return k
}

// rotateKeys is POST /keys/rotate (administrators): a new Ed25519 signing key. Tickets signed
// with the old key keep working as sessions until they expire (2 h at most) but are never
// renewed (ticket.Verifier.Current); with revoke-sessions=1 the old keys are dropped and every
// ticket issued before the rotation ends at once, everywhere (see ticket.RotateKeys). Every
// proxyd picks up the new public key through the keys generation before apid signs with it.
func (s *Server) rotateKeys(w http.ResponseWriter, r *http.Request, c who) {
	if !c.superuser() {
		reply.Error(w, http.StatusForbidden, "only administrators may rotate the signing key")
		return
	}
	p, err := readParams(w, r, "revoke-sessions")
	if err != nil {
		reply.Invalid(w, err)
		return
	}
	revoke, err := params.Bool(p, "revoke-sessions")
	if err != nil {
		reply.Invalid(w, err)
		return
	}
	f := s.o.KeyFiles
	if f.Key == "" {
		s.internal(w, errNoKeyFiles, "rotating keys")
		return
	}
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	// Under the write lock no ticket is being signed, so every ticket the old key signed was
	// stamped at or before now + retiredSkew.
	now := s.o.Now()
	signer, err := ticket.RotateKeys(f.Key, f.Pub, f.Retired, f.GID, now.Add(retiredSkew), revoke)
	if err != nil {
		s.internal(w, err, "rotating keys")
		return
	}
	s.o.Generations.Bump(shmem.Keys)
	old := s.keys.signer.Public().Fingerprint()
	s.keys.signer = signer
	s.tickets.SetVerifier(signer.Public())
	s.o.Log.Info("rotated ticket signing key", "old", old, "new", signer.Public().Fingerprint(), "revoke_sessions", revoke)
	reply.Data(w, showKey(signer.Public(), now))
}

type statusJSON struct {
	Version     string            `json:"version"`
	PID         int               `json:"pid"`
	Started     int64             `json:"started"`
	Uptime      int64             `json:"uptime"`
	Generations map[string]uint64 `json:"generations"`
	Key         keyJSON           `json:"key"`
}

// status is GET /status (root only): apid's health, the shared generations and the key.
func (s *Server) status(w http.ResponseWriter, r *http.Request, c who) {
	if !c.superuser() {
		reply.Error(w, http.StatusForbidden, "only administrators may read apid's status")
		return
	}
	now := s.o.Now()
	st := statusJSON{
		Version: buildVersion(), PID: os.Getpid(), Started: s.started.Unix(),
		Uptime: int64(time.Since(s.started) / time.Second), Key: showKey(s.verifier(), now),
	}
	g := s.o.Generations
	st.Generations = map[string]uint64{
		"user": g.Load(shmem.User), "token-shadow": g.Load(shmem.TokenShadow), "tfa": g.Load(shmem.TFA), "keys": g.Load(shmem.Keys),
	}
	reply.Data(w, st)
}

// buildVersion is the module version and VCS revision the binary was built from.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, kv := range bi.Settings {
		if kv.Key == "vcs.revision" && len(kv.Value) >= 12 {
			v += "+" + kv.Value[:12]
		}
		if kv.Key == "vcs.modified" && kv.Value == "true" {
			v += "-dirty"
		}
	}
	return v
}
