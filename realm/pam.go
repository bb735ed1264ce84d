package realm

import (
	"errors"
	"fmt"

	"github.com/msteinert/pam/v2"

	"gatehouse/authid"
)

// DefaultPAMService is the PAM service name of the pam realm when PAM.Service is empty.
// PBS uses "proxmox-backup-auth" (src/auth.rs: proxmox_auth_api::Pam::new("proxmox-backup-auth")).
const DefaultPAMService = "gatehouse"

// PAMServiceFile is the content of /etc/pam.d/gatehouse (or of the file for PAM.Service):
// Debian's shared auth and account stacks, so that the pam realm accepts exactly the
// passwords and accounts that a console login would (pam_unix: /etc/shadow, expiry, locks).
// PBS ships no file for "proxmox-backup-auth" and so gets /etc/pam.d/other, which on Debian
// includes the same two stacks (plus password and session, which a check never runs).
const PAMServiceFile = `# PAM service of Gatehouse's "pam" realm (apid checks user passwords).
# Same stacks as a console login; PBS's "proxmox-backup-auth" falls back to /etc/pam.d/other.
auth    include common-auth
account include common-account
`

// pamFlags are passed to pam_authenticate and pam_acct_mgmt: no messages, and no login for an
// account with an empty password field even where the stack says "nullok".
const pamFlags = pam.Silent | pam.DisallowNullAuthtok

// PAM is the pam realm: the host's accounts, checked through PAM.
type PAM struct {
	Service string // PAM service name; "" means DefaultPAMService
}

// Check checks password for the host account user (the name without "@pam") with
// pam_authenticate and pam_acct_mgmt. It returns nil when both succeed; an error wrapping
// ErrBadPassword when authentication fails (wrong password, unknown user, or a password that
// does not fit PBS's schema, then also ErrInvalidPassword); ErrAccountDenied when the account
// may not log in (expired, locked, password change required); authid.ErrSyntax for a name
// that is not valid in a user id; and other errors, wrapping the pam.Error, when PAM itself
// fails. Errors never contain the password.
func (p PAM) Check(user, password string) error {
	service := p.Service
	if service == "" {
		service = DefaultPAMService
	}
	// A user id's name has no NUL, control character, white space, ':' or '/'.
	if _, err := authid.ParseUserid(user + "@" + RealmPAM); err != nil {
		return fmt.Errorf("checking PAM password: %w", err)
	}
	if err := CheckPassword(password); err != nil {
		return fmt.Errorf("checking PAM password of %s: %w: %w", user, err, ErrBadPassword)
	}
	conv := func(s pam.Style, _ string) (string, error) {
		switch s {
		case pam.PromptEchoOff:
			return password, nil
		case pam.PromptEchoOn:
			return user, nil
		case pam.ErrorMsg, pam.TextInfo:
			return "", nil
		}
		return "", fmt.Errorf("unsupported PAM message style %d", s)
	}
	tx, err := pam.StartFunc(service, user, conv)
	if err != nil {
		return fmt.Errorf("starting PAM service %s for %s: %w", service, user, err)
	}
	err = authenticate(tx, service, user)
	if eerr := tx.End(); eerr != nil && err == nil {
		err = fmt.Errorf("ending PAM transaction of service %s for %s: %w", service, user, eerr)
	}
	return err
}

// authenticate runs pam_authenticate and pam_acct_mgmt and classifies their errors.
func authenticate(tx *pam.Transaction, service, user string) error {
	if err := tx.Authenticate(pamFlags); err != nil {
		var perr pam.Error
		if errors.As(err, &perr) {
			switch perr {
			case pam.ErrAuth, pam.ErrUserUnknown, pam.ErrCredInsufficient, pam.ErrMaxtries:
				return fmt.Errorf("PAM authentication of %s (service %s): %w: %w", user, service, err, ErrBadPassword)
			}
		}
		return fmt.Errorf("PAM authentication of %s (service %s): %w", user, service, err)
	}
	if err := tx.AcctMgmt(pamFlags); err != nil {
		var perr pam.Error
		if errors.As(err, &perr) {
			switch perr {
			case pam.ErrAcctExpired, pam.ErrNewAuthtokReqd, pam.ErrAuthtokExpired, pam.ErrPermDenied,
				pam.ErrUserUnknown, pam.ErrAuth:
				return fmt.Errorf("PAM account check of %s (service %s): %w: %w", user, service, err, ErrAccountDenied)
			}
		}
		return fmt.Errorf("PAM account check of %s (service %s): %w", user, service, err)
	}
	return nil
}
