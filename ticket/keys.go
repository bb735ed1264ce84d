package ticket

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"gatehouse/lockfile"
)

// Key file limits and modes.
const (
	MaxKeyFileSize = 64 << 10
	MinRSABits     = 2048
	KeyFileMode    = 0o600 // authkey.key, root only
	PubFileMode    = 0o640 // authkey.pub, root:gatehouse
	keyForbidden   = 0o077 // LoadSigner: no access for group or others
	pubForbidden   = 0o022 // LoadVerifier: no writing by group or others
	maxSigLen      = 2048  // decoded signature bytes (RSA 16384); longer ones never verify
)

// Key errors.
var (
	// ErrFileMode is wrapped when a key file may be read or written by more users than its
	// content allows.
	ErrFileMode = errors.New("insecure file mode")
	// ErrBadKey is wrapped when a key file's content is not a key this package can use.
	ErrBadKey = errors.New("unusable key")
)

// Signer signs tickets with the private auth key. It is safe for concurrent use.
type Signer struct {
	ed  ed25519.PrivateKey
	rsa *rsa.PrivateKey
	ec  *ecdsa.PrivateKey
	pub *Verifier
}

// Verifier verifies ticket signatures with the public auth key. It is immutable and safe for
// concurrent use.
type Verifier struct {
	ed     ed25519.PublicKey
	rsa    *rsa.PublicKey
	ec     *ecdsa.PublicKey
	sigLen int    // usual signature length in bytes, to size buffers
	alg    string // "Ed25519", "RSA-4096", "ECDSA-P256"
	fp     string // "SHA256:<unpadded base64 of SHA-256(SPKI DER)>"
	// retired are earlier keys (after a rotation) that still verify the tickets they signed;
	// see Retire.
	retired []RetiredKey
}

// Public returns the Verifier for s's public key.
func (s *Signer) Public() *Verifier { return s.pub }

// Algorithm names the key type, e.g. "Ed25519", "RSA-4096" or "ECDSA-P256".
func (v *Verifier) Algorithm() string { return v.alg }

// Fingerprint is "SHA256:" and the unpadded standard base64 of the SHA-256 of the public key's
// SPKI DER encoding (the form ssh-keygen -l uses).
func (v *Verifier) Fingerprint() string { return v.fp }

// sign signs msg: Ed25519 pure, RSA PKCS #1 v1.5 over SHA-256, ECDSA over SHA-256 (DER), which
// is what openssl's Signer does for proxmox-auth-api (src/auth_key.rs: new_without_digest for
// Ed25519, MessageDigest::sha256 otherwise).
func (s *Signer) sign(msg []byte) ([]byte, error) {
	switch {
	case s.ed != nil:
		return ed25519.Sign(s.ed, msg), nil
	case s.rsa != nil:
		h := sha256.Sum256(msg)
		return rsa.SignPKCS1v15(nil, s.rsa, crypto.SHA256, h[:])
	default:
		h := sha256.Sum256(msg)
		return ecdsa.SignASN1(rand.Reader, s.ec, h[:])
	}
}

// verifySig checks that sigB64 (unpadded standard base64) is a valid signature of text,
// followed by ":" and aad when aad is set. Errors wrap ErrMalformed (not base64) or
// ErrSignature.
func (v *Verifier) verifySig(text, aad, sigB64 string) error {
	if b64.DecodedLen(len(sigB64)) > maxSigLen {
		return fmt.Errorf("signature longer than %d bytes: %w", maxSigLen, ErrSignature)
	}
	if strings.ContainsAny(sigB64, "\r\n") { // Go's decoder skips CR and LF; PBS's does not
		return fmt.Errorf("signature is not unpadded standard base64: %w", ErrMalformed)
	}
	sig := make([]byte, b64.DecodedLen(len(sigB64)))
	n, err := b64.Decode(sig, []byte(sigB64))
	if err != nil {
		return fmt.Errorf("signature is not unpadded standard base64: %w", ErrMalformed)
	}
	sig = sig[:n]
	msg := signedMessage(text, aad)
	var ok bool
	switch {
	case v.ed != nil:
		ok = ed25519.Verify(v.ed, msg, sig)
	case v.rsa != nil:
		h := sha256.Sum256(msg)
		ok = rsa.VerifyPKCS1v15(v.rsa, crypto.SHA256, h[:], sig) == nil
	default:
		h := sha256.Sum256(msg)
		ok = ecdsa.VerifyASN1(v.ec, h[:], sig)
	}
	if !ok {
		return ErrSignature
	}
	return nil
}

// GenerateKeys writes a new Ed25519 key pair: the private key to keyPath (PKCS#8 PEM, mode
// 0600) and the public key to pubPath (SPKI PEM, mode 0640, group gid when gid > 0), each
// atomically with lockfile.Replace. It refuses, wrapping fs.ErrExist, when either path exists;
// callers serialize key generation (the check and the writes are not one atomic step). When
// writing the public key fails, the new private key is removed again.
func GenerateKeys(keyPath, pubPath string, gid int) error {
	if keyPath == pubPath {
		return fmt.Errorf("generating auth keys: key and public key path are both %s", keyPath)
	}
	for _, p := range []string{keyPath, pubPath} {
		if err := refuseExisting(p); err != nil {
			return fmt.Errorf("generating auth keys: %w", err)
		}
	}
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return fmt.Errorf("generating auth keys: %w", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("generating auth keys: encoding private key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return fmt.Errorf("generating auth keys: encoding public key: %w", err)
	}
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	if err := lockfile.Replace(keyPath, privPEM, lockfile.DefaultOptions(KeyFileMode)); err != nil {
		return fmt.Errorf("generating auth keys: %w", err)
	}
	if err := replaceFile(pubPath, pubPEM, PubFileMode, gid); err != nil {
		_ = os.Remove(keyPath)
		return fmt.Errorf("generating auth keys: %w", err)
	}
	return nil
}

// replaceFile writes path atomically with mode, chowning it to group gid when gid > 0.
func replaceFile(path string, data []byte, mode os.FileMode, gid int) error {
	o := lockfile.DefaultOptions(mode)
	if gid > 0 {
		o.GID = gid
	}
	return lockfile.Replace(path, data, o)
}

// refuseExisting fails, wrapping fs.ErrExist, when anything (even a dangling symbolic link)
// is at path.
func refuseExisting(path string) error {
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return fmt.Errorf("%s already exists, refusing to overwrite it: %w", path, fs.ErrExist)
	case errors.Is(err, fs.ErrNotExist):
		return nil
	default:
		return err
	}
}

// LoadSigner reads the private auth key from keyPath. The file must be a regular file (not a
// symbolic link) that neither group nor others may access.
func LoadSigner(keyPath string) (*Signer, error) {
	data, err := readKeyFile(keyPath, keyForbidden)
	if err != nil {
		return nil, fmt.Errorf("loading auth key %s: %w", keyPath, err)
	}
	s, err := ParseSigner(data)
	if err != nil {
		return nil, fmt.Errorf("loading auth key %s: %w", keyPath, err)
	}
	return s, nil
}

// LoadVerifier reads the public auth key from pubPath. The file must be a regular file (not a
// symbolic link) that neither group nor others may write.
func LoadVerifier(pubPath string) (*Verifier, error) {
	data, err := readKeyFile(pubPath, pubForbidden)
	if err != nil {
		return nil, fmt.Errorf("loading public auth key %s: %w", pubPath, err)
	}
	v, err := ParseVerifier(data)
	if err != nil {
		return nil, fmt.Errorf("loading public auth key %s: %w", pubPath, err)
	}
	return v, nil
}

// readKeyFile reads a regular file of at most MaxKeyFileSize bytes whose permission bits have
// none of forbidden set. The checks use the opened file, so they hold for what is read.
func readKeyFile(path string, forbidden os.FileMode) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("is a symbolic link: %w", lockfile.ErrNotRegular)
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("file type %v: %w", fi.Mode().Type(), lockfile.ErrNotRegular)
	}
	if perm := fi.Mode().Perm(); perm&forbidden != 0 {
		return nil, fmt.Errorf("mode %#o: %s; want no bits of %#o (chmod %#o): %w",
			uint32(perm), describeForbidden(perm&forbidden), uint32(forbidden), uint32(perm&^forbidden), ErrFileMode)
	}
	if fi.Size() > MaxKeyFileSize {
		return nil, fmt.Errorf("%d bytes, at most %d: %w", fi.Size(), MaxKeyFileSize, ErrBadKey)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxKeyFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxKeyFileSize {
		return nil, fmt.Errorf("more than %d bytes: %w", MaxKeyFileSize, ErrBadKey)
	}
	return data, nil
}

// describeForbidden says who the offending bits let in.
func describeForbidden(bits os.FileMode) string {
	var who []string
	if bits&0o040 != 0 {
		who = append(who, "group may read")
	}
	if bits&0o020 != 0 {
		who = append(who, "group may write")
	}
	if bits&0o010 != 0 {
		who = append(who, "group may execute")
	}
	if bits&0o007 != 0 {
		who = append(who, "others have access")
	}
	return strings.Join(who, ", ")
}

// pemKey returns the one key block in data: "EC PARAMETERS" blocks (openssl ecparam writes
// one) are skipped, encrypted keys and further blocks refused.
func pemKey(data []byte) (*pem.Block, error) {
	var key *pem.Block
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "EC PARAMETERS" {
			continue
		}
		if key != nil {
			return nil, fmt.Errorf("more than one PEM block (%q, %q): %w", key.Type, b.Type, ErrBadKey)
		}
		if len(b.Headers) != 0 {
			return nil, fmt.Errorf("PEM block %q has headers (encrypted?): %w", b.Type, ErrBadKey)
		}
		key = b
	}
	if key == nil {
		return nil, fmt.Errorf("no PEM key block: %w", ErrBadKey)
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, fmt.Errorf("trailing data after the PEM block: %w", ErrBadKey)
	}
	return key, nil
}

// ParseSigner parses a PEM private key: "PRIVATE KEY" (PKCS#8: Ed25519, RSA or ECDSA),
// "RSA PRIVATE KEY" (PKCS#1) or "EC PRIVATE KEY" (SEC 1).
func ParseSigner(data []byte) (*Signer, error) {
	b, err := pemKey(data)
	if err != nil {
		return nil, err
	}
	var key any
	switch b.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key: %w", b.Type, ErrBadKey)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing %q: %w: %w", b.Type, ErrBadKey, err)
	}
	switch k := key.(type) {
	case ed25519.PrivateKey:
		v, err := newVerifier(k.Public())
		if err != nil {
			return nil, err
		}
		return &Signer{ed: k, pub: v}, nil
	case *rsa.PrivateKey:
		v, err := newVerifier(&k.PublicKey)
		if err != nil {
			return nil, err
		}
		if err := k.Validate(); err != nil {
			return nil, fmt.Errorf("RSA key: %w: %w", ErrBadKey, err)
		}
		return &Signer{rsa: k, pub: v}, nil
	case *ecdsa.PrivateKey:
		v, err := newVerifier(&k.PublicKey)
		if err != nil {
			return nil, err
		}
		return &Signer{ec: k, pub: v}, nil
	default:
		return nil, fmt.Errorf("private key of type %T: %w", key, ErrBadKey)
	}
}

// ParseVerifier parses a PEM public key: "PUBLIC KEY" (SPKI: Ed25519, RSA or ECDSA) or
// "RSA PUBLIC KEY" (PKCS#1).
func ParseVerifier(data []byte) (*Verifier, error) {
	b, err := pemKey(data)
	if err != nil {
		return nil, err
	}
	var key any
	switch b.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(b.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(b.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a public key: %w", b.Type, ErrBadKey)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing %q: %w: %w", b.Type, ErrBadKey, err)
	}
	return newVerifier(key)
}

// newVerifier checks a public key and wraps it, with its fingerprint.
func newVerifier(key any) (*Verifier, error) {
	v, err := checkPublic(key)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w: %w", ErrBadKey, err)
	}
	sum := sha256.Sum256(der)
	v.fp = "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
	return v, nil
}

// checkPublic checks a public key and wraps it.
func checkPublic(key any) (*Verifier, error) {
	switch k := key.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("Ed25519 public key of %d bytes: %w", len(k), ErrBadKey)
		}
		return &Verifier{ed: k, sigLen: ed25519.SignatureSize, alg: "Ed25519"}, nil
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < MinRSABits {
			return nil, fmt.Errorf("RSA key of %d bits, at least %d: %w", bits, MinRSABits, ErrBadKey)
		}
		if k.Size() > maxSigLen {
			return nil, fmt.Errorf("RSA key of %d bits, at most %d: %w", k.N.BitLen(), 8*maxSigLen, ErrBadKey)
		}
		return &Verifier{rsa: k, sigLen: k.Size(), alg: fmt.Sprintf("RSA-%d", k.N.BitLen())}, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return nil, fmt.Errorf("ECDSA key on curve %s: %w", k.Curve.Params().Name, ErrBadKey)
		}
		name := strings.ReplaceAll(k.Curve.Params().Name, "-", "")
		// DER: SEQUENCE of two INTEGERs, each at most the curve size plus a leading zero.
		sigLen := 2*((k.Curve.Params().BitSize+7)/8+3) + 3
		return &Verifier{ec: k, sigLen: sigLen, alg: "ECDSA-" + name}, nil
	default:
		return nil, fmt.Errorf("public key of type %T: %w", key, ErrBadKey)
	}
}
