// Package crypthash makes and checks the crypt(3) hashes Gatehouse stores for secrets: API token
// secrets (token.shadow) and pbs-realm passwords (shadow.json), as PBS does.
//
// New hashes are SHA-256-crypt ($5$) with 5000 rounds, set explicitly (the crypt(3) default, so
// the rounds field is omitted as crypt(3) does; `openssl passwd -5 -salt <salt>` prints the same
// string). Check accepts $5$ and $6$ with 1000..10 000 000 rounds and yescrypt ($y$), the hashes
// openssl passwd -5/-6 and mkpasswd make. A value that is not one of those is refused with
// ErrBadHash, and no error ever contains the secret or a value that may be one.
package crypthash

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-crypt/crypt"
	"github.com/go-crypt/crypt/algorithm/scrypt"
	"github.com/go-crypt/crypt/algorithm/shacrypt"
)

// Hash parameters.
const (
	HashRounds = 5000       // rounds for new $5$ hashes, set explicitly (PBS: crypt(3) default)
	MinRounds  = 1000       // $5$/$6$ hashes with fewer rounds are refused
	MaxRounds  = 10_000_000 // and with more (a verification would take seconds)
)

// ErrBadHash is wrapped when a stored hash cannot be used: unknown scheme, malformed, or too few rounds.
var ErrBadHash = errors.New("unusable secret hash")

// Hasher makes and checks crypt(3) hashes. It is immutable after New and safe for concurrent use.
type Hasher struct {
	new     *shacrypt.Hasher
	decoder *crypt.Decoder
}

// New returns a Hasher.
func New() (*Hasher, error) {
	h, err := shacrypt.New(shacrypt.WithVariant(shacrypt.VariantSHA256), shacrypt.WithIterations(HashRounds))
	if err != nil {
		return nil, fmt.Errorf("setting up SHA-256-crypt: %w", err)
	}
	d := crypt.NewDecoder()
	if err := shacrypt.RegisterDecoder(d); err != nil {
		return nil, fmt.Errorf("registering SHA-crypt decoder: %w", err)
	}
	if err := scrypt.RegisterDecoderYescrypt(d); err != nil {
		return nil, fmt.Errorf("registering yescrypt decoder: %w", err)
	}
	return &Hasher{new: h, decoder: d}, nil
}

// Hash returns a new "$5$<salt>$<key>" hash of secret (5000 rounds, the PBS default, so the
// rounds field is omitted as crypt(3) does).
func (h *Hasher) Hash(secret string) (string, error) {
	d, err := h.new.Hash(secret)
	if err != nil {
		return "", fmt.Errorf("hashing secret: %w", err)
	}
	return d.Encode(), nil
}

// Check reports whether secret matches the crypt(3) hash. Accepted schemes: $5$, $6$, $y$.
// Errors never contain the secret.
func (h *Hasher) Check(hash, secret string) (bool, error) {
	if err := CheckScheme(hash); err != nil {
		return false, err
	}
	d, err := h.decoder.Decode(hash)
	if err != nil {
		return false, fmt.Errorf("decoding hash: %v: %w", err, ErrBadHash)
	}
	ok, err := d.MatchAdvanced(secret)
	if err != nil {
		return false, fmt.Errorf("checking hash: %v: %w", err, ErrBadHash)
	}
	return ok, nil
}

// CheckScheme accepts $5$, $6$ (with rounds in MinRounds..MaxRounds when given) and $y$.
func CheckScheme(hash string) error {
	var rest string
	switch {
	case strings.HasPrefix(hash, "$5$"), strings.HasPrefix(hash, "$6$"):
		rest = hash[3:]
	case strings.HasPrefix(hash, "$y$"):
		return nil
	default:
		// Name the scheme only when the value looks like one: a plaintext secret stored by
		// mistake must not reach a log.
		scheme, _, _ := strings.Cut(strings.TrimPrefix(hash, "$"), "$")
		if !strings.HasPrefix(hash, "$") || len(scheme) > 4 {
			return fmt.Errorf("value is not a crypt(3) hash ($5$, $6$ or $y$): %w", ErrBadHash)
		}
		return fmt.Errorf("hash scheme $%s$ is not one of $5$, $6$, $y$: %w", scheme, ErrBadHash)
	}
	r, ok := strings.CutPrefix(rest, "rounds=")
	if !ok {
		return nil // crypt(3) default: 5000
	}
	n, _, found := strings.Cut(r, "$")
	if !found {
		return fmt.Errorf("hash has rounds but no salt: %w", ErrBadHash)
	}
	rounds, err := strconv.Atoi(n)
	if err != nil {
		return fmt.Errorf("hash has a rounds field that is not a number: %w", ErrBadHash)
	}
	if rounds < MinRounds || rounds > MaxRounds {
		return fmt.Errorf("hash has rounds=%d, want %d..%d: %w", rounds, MinRounds, MaxRounds, ErrBadHash)
	}
	return nil
}
