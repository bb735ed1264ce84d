// Package realm checks user passwords in the two built-in realms of Proxmox Backup Server,
// "pbs" (Gatehouse's own password file) and "pam" (the host's accounts through PAM), and picks
// the realm from the user id. Only apid uses it: it reads secrets that proxyd must never see.
//
// # Realms
//
// A user id is "<name>@<realm>" (authid.ParseUserid). [Realms.Check] sends "<name>@pbs" to
// [Passwords] and "<name>@pam" to [PAM] (with the bare name, as PBS does); any other realm is
// refused with an error wrapping ErrNoRealm (LDAP, AD and OpenID realms are not built in).
//
// # The pbs realm: shadow.json
//
// /etc/gatehouse/shadow.json is PBS's /etc/proxmox-backup/shadow.json, byte-compatible: a
// JSON object mapping the user NAME, without "@pbs", to its crypt(3) hash,
//
//	{
//	  "alice": "$5$Gh.dummy.salt.16$.SuEz0y1ujKRvv/cSSO2IkOOQeBNBJmEcybSySfk7X1"
//	}
//
// (PBS src/auth.rs and proxmox-auth-api password_authenticator.rs index it with
// userid.name()). New hashes are SHA-256-crypt ($5$, 5000 rounds, crypthash); $5$, $6$ and
// yescrypt ($y$) verify, so hashes from PBS, `openssl passwd -5/-6` and `mkpasswd -m yescrypt`
// work. The file is written pretty-printed with sorted keys, mode 0600, owner as created
// (root:root when apid runs as root, as PBS writes it), and read strictly:
//   - a missing file means no passwords (PBS: file_get_json with default {});
//   - it must be a regular file (not a symbolic link: opened with O_NOFOLLOW), owned by root
//     or by the reading process, with no group or other permission bits (0600; 0400 passes),
//     else ErrUnsafeFile;
//   - at most MaxFileSize (16 MiB) of valid UTF-8 holding exactly one JSON object whose keys
//     are user names valid in a user id (1..60 bytes, no white space, ':', '/' or control
//     characters), each once, and whose values are non-empty strings; anything else (empty,
//     truncated, null, nested values, duplicate keys, trailing data) is ErrCorrupt.
//
// Writers (Set, Delete) hash first, then take the exclusive lock (lockfile, default
// "<dir>/.shadow.json.lck", 10 s timeout), read the file, change one entry, replace the file
// atomically (temp, fsync, rename, fsync dir) and unlock. A file that cannot be read as above
// is never overwritten: the write fails and the file stays byte-identical. Readers take no
// lock: the atomic replace means they see the old or the new file, whole.
//
// # Passwords
//
// Every password, in both realms, must fit PBS's PASSWORD_SCHEMA (pbs-api-types): 1..1024
// characters (Unicode code points, as proxmox-schema counts; so at most 4096 bytes) of valid
// UTF-8 with no ASCII control character (PASSWORD_REGEX ^[[:^cntrl:]]*$). This also keeps a
// NUL byte from cutting a password short on its way into C (PAM). Others are refused before any
// hashing or PAM call with ErrInvalidPassword (by Check also wrapped in ErrBadPassword). PBS's
// user-creation API asks for 5..64 characters (PBS_PASSWORD_SCHEMA), while its password change
// takes PASSWORD_SCHEMA; that narrower rule belongs to the API layer: see MinNewPasswordLen.
// No error ever contains a password or a hash.
//
// # Timing
//
// A pbs user with no entry costs the same as a wrong password: Check verifies the password
// against a fixed dummy $5$ hash (same rounds, salt and key length as the hashes Set writes)
// and returns the same error, so neither the result nor the time tells a missing user from a
// wrong password. Both cases return an error wrapping ErrBadPassword with the same text.
// (Entries holding an older $6$ or $y$ hash take their own scheme's time.)
//
// # The pam realm
//
// [PAM.Check] runs pam_start(service, name), pam_authenticate and pam_acct_mgmt, both with
// PAM_SILENT|PAM_DISALLOW_NULL_AUTHTOK. Without that flag Debian's "pam_unix.so nullok" lets an
// account whose password field is empty in with ANY password (tested; PBS, through the pam
// crate, passes no flags). The conversation answers echo-off prompts with the
// password, echo-on prompts with the user name, and ignores info and error messages. An
// authentication failure (wrong password, unknown user) wraps ErrBadPassword; an account that
// PAM refuses after a correct password (expired, locked, must change its password) wraps
// ErrAccountDenied. pam_unix does not look at the login shell: an account with
// /usr/sbin/nologin authenticates (tested).
//
// The service is "gatehouse" by default (DefaultPAMService; PBS uses "proxmox-backup-auth").
// PBS installs no file for its service, so PAM falls back to /etc/pam.d/other, which on Debian
// includes common-auth, -account, -password and -session; Gatehouse installs PAMServiceFile as
// /etc/pam.d/gatehouse, with only the auth and account stacks.
package realm

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"gatehouse/authid"
	"gatehouse/crypthash"
)

// Realm names, as in PBS.
const (
	RealmPBS = "pbs"
	RealmPAM = "pam"
)

// Password limits of PBS (pbs-api-types).
const (
	MinPasswordLen    = 1    // PASSWORD_SCHEMA min_length: login and password change
	MaxPasswordLen    = 1024 // PASSWORD_SCHEMA max_length, in characters
	MinNewPasswordLen = 5    // PBS_PASSWORD_SCHEMA min_length: password given when creating a user
	MaxNewPasswordLen = 64   // PBS_PASSWORD_SCHEMA max_length (enforced by the API layer, not here)
)

// Errors. Expected failures are checked with errors.Is.
var (
	ErrBadPassword     = errors.New("wrong password")                              // wrong password, unknown user
	ErrInvalidPassword = errors.New("password does not fit PBS's password schema") // length, control characters, UTF-8
	ErrAccountDenied   = errors.New("account refused by PAM")                      // pam_acct_mgmt failed after a correct password
	ErrNoRealm         = errors.New("no such realm")                               // realm not built in, or not configured
	ErrWrongRealm      = errors.New("user id is not in this realm")                // e.g. alice@pam given to Passwords
	ErrNoPassword      = errors.New("user has no password")                        // Delete of a user without an entry
	ErrCorrupt         = errors.New("password file is corrupt")                    // shadow.json contents
	ErrUnsafeFile      = errors.New("password file is not a private regular file") // symlink, mode, owner, type
	ErrBadHash         = crypthash.ErrBadHash                                      // a stored hash cannot be used
)

// CheckPassword reports whether password fits PBS's PASSWORD_SCHEMA: 1..1024 characters of
// valid UTF-8, none of them an ASCII control character. The error wraps ErrInvalidPassword and
// never contains the password.
func CheckPassword(password string) error {
	if !utf8.ValidString(password) {
		return fmt.Errorf("password is not valid UTF-8: %w", ErrInvalidPassword)
	}
	n := 0
	for _, r := range password {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("password contains a control character: %w", ErrInvalidPassword)
		}
		n++
		if n > MaxPasswordLen {
			break
		}
	}
	if n < MinPasswordLen || n > MaxPasswordLen {
		what := fmt.Sprint(n)
		if n > MaxPasswordLen {
			what = "more than " + what
		}
		return fmt.Errorf("password is %s characters, want %d..%d: %w", what, MinPasswordLen, MaxPasswordLen, ErrInvalidPassword)
	}
	return nil
}

// Realms checks passwords by realm. The zero value knows the pam realm (service "gatehouse")
// and no pbs realm.
type Realms struct {
	Passwords *Passwords // the pbs realm; nil: not configured
	PAM       PAM        // the pam realm
}

// Check checks password for userid ("name@realm"). It returns nil when it matches, an error
// wrapping ErrBadPassword when it does not (or the user is unknown), ErrNoRealm for a realm
// other than pbs and pam (or pbs when no Passwords is configured), authid.ErrSyntax for a
// malformed id, and other errors when a file or PAM fails.
func (r *Realms) Check(userid, password string) error {
	u, err := authid.ParseUserid(userid)
	if err != nil {
		return fmt.Errorf("checking password: %w", err)
	}
	switch u.Realm {
	case RealmPBS:
		if r.Passwords == nil {
			return fmt.Errorf("checking password of %s: realm %s is not configured: %w", userid, RealmPBS, ErrNoRealm)
		}
		return r.Passwords.Check(userid, password)
	case RealmPAM:
		return r.PAM.Check(u.Name, password)
	}
	return fmt.Errorf("checking password of %s: realm %q is not one of %s, %s: %w", userid, u.Realm, RealmPBS, RealmPAM, ErrNoRealm)
}
