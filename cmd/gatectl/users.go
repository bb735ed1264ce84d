package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"gatehouse/apidclient"
	"gatehouse/authid"
)

// userJSON is a user as apid shows it (GET /access/users).
type userJSON struct {
	Userid         string `json:"userid"`
	Enable         bool   `json:"enable"`
	Expire         int64  `json:"expire"`
	Comment        string `json:"comment"`
	Email          string `json:"email"`
	Firstname      string `json:"firstname"`
	Lastname       string `json:"lastname"`
	TOTPLocked     bool   `json:"totp-locked"`
	TFALockedUntil int64  `json:"tfa-locked-until"`
}

func (u userJSON) name() string { return strings.TrimSpace(u.Firstname + " " + u.Lastname) }

// lock describes the user's second-factor lock state.
func (p printer) lock(totpLocked bool, until int64) string {
	var parts []string
	if totpLocked {
		parts = append(parts, "totp locked")
	}
	if until != 0 {
		parts = append(parts, "all factors locked until "+p.when(until))
	}
	return strings.Join(parts, "; ")
}

func (p printer) userTable(list []userJSON) error {
	rows := make([][]string, len(list))
	for i, u := range list {
		rows[i] = []string{u.Userid, yesNo(u.Enable), p.when(u.Expire), u.name(), u.Email, u.Comment, p.lock(u.TOTPLocked, u.TFALockedUntil)}
	}
	return p.table([]string{"USERID", "ENABLED", "EXPIRE", "NAME", "EMAIL", "COMMENT", "TFA LOCK"}, rows)
}

func (p printer) userFields(u userJSON) error {
	return p.fields([]field{
		{"userid", u.Userid}, {"enabled", yesNo(u.Enable)}, {"expire", p.when(u.Expire)},
		{"firstname", u.Firstname}, {"lastname", u.Lastname}, {"email", u.Email}, {"comment", u.Comment},
		{"tfa lock", p.lock(u.TOTPLocked, u.TFALockedUntil)},
	})
}

// show prints raw as JSON, or decodes it into T and hands it to text.
func show[T any](p printer, raw json.RawMessage, text func(T) error) error {
	if !p.text() {
		return p.json(raw)
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("reading apid's answer: %w", err)
	}
	return text(v)
}

// userArg checks a USERID argument (usage error when malformed) and returns it normalized.
func userArg(cmd *cobra.Command, s string) (authid.Authid, error) {
	a, err := authid.ParseUserid(s)
	if err != nil {
		return authid.Authid{}, usagef(cmd, "USERID %q: want name@realm: %v", s, err)
	}
	return a, nil
}

func userPath(userid string) string { return "access/users/" + url.PathEscape(userid) }

// getUser is GET /access/users/{userid}: a 404 names the user.
func (a *app) getUser(ctx context.Context, userid string) (json.RawMessage, error) {
	var raw json.RawMessage
	if err := a.client().Call(ctx, http.MethodGet, userPath(userid), nil, &raw); err != nil {
		return nil, fmt.Errorf("reading user %s: %w", userid, err)
	}
	return raw, nil
}

func (a *app) userCommand() *cobra.Command {
	cmd := group("user", "List, add, update and remove users; set pbs-realm passwords")
	cmd.AddCommand(a.userList(), a.userShow(), a.userAdd(), a.userUpdate(), a.userRemove(), a.userPasswd())
	return cmd
}

func (a *app) userList() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List users (GET /access/users)",
		Args:  argsNamed(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var raw json.RawMessage
			if err := a.client().Call(cmd.Context(), http.MethodGet, "access/users", nil, &raw); err != nil {
				return fmt.Errorf("listing users: %w", err)
			}
			p := a.printer()
			return show(p, raw, p.userTable)
		},
	}
}

func (a *app) userShow() *cobra.Command {
	return &cobra.Command{
		Use:               "show USERID",
		Short:             "Show one user",
		Args:              argsNamed("USERID"),
		ValidArgsFunction: a.completeUserArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := userArg(cmd, args[0])
			if err != nil {
				return err
			}
			raw, err := a.getUser(cmd.Context(), u.Userid())
			if err != nil {
				return err
			}
			p := a.printer()
			return show(p, raw, p.userFields)
		},
	}
}

// userFlags are the properties add and update take.
type userFlags struct {
	comment, email, firstname, lastname, expire string
	enable                                      bool
}

func (f *userFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.comment, "comment", "", "comment")
	fl.StringVar(&f.email, "email", "", "e-mail address")
	fl.StringVar(&f.firstname, "firstname", "", "first name")
	fl.StringVar(&f.lastname, "lastname", "", "last name")
	fl.StringVar(&f.expire, "expire", "", "account expiry: never, a unix time, a date (2006-01-02) or an RFC 3339 time")
	fl.BoolVar(&f.enable, "enable", true, "enable the account (--enable=false disables it)")
}

// params returns the parameters of the flags given on the command line.
func (f *userFlags) params(cmd *cobra.Command, a *app) (url.Values, error) {
	p := url.Values{}
	fl := cmd.Flags()
	for name, v := range map[string]string{"comment": f.comment, "email": f.email, "firstname": f.firstname, "lastname": f.lastname} {
		if fl.Changed(name) {
			p.Set(name, v)
		}
	}
	if fl.Changed("expire") {
		n, err := parseExpire(f.expire, a.loc)
		if err != nil {
			return nil, usagef(cmd, "%v", err)
		}
		p.Set("expire", strconv.FormatInt(n, 10))
	}
	if fl.Changed("enable") {
		p.Set("enable", boolParam(f.enable))
	}
	return p, nil
}

func boolParam(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func (a *app) userAdd() *cobra.Command {
	var f userFlags
	var fromStdin, noPassword bool
	cmd := &cobra.Command{
		Use:   "add USERID",
		Short: "Add a user; a pbs-realm user gets a password (prompted, or --password-stdin)",
		Long: `Add a user (POST /access/users). A user of the pbs realm gets a password: typed twice
on a terminal without echo, or read as one line from stdin with --password-stdin;
--no-password adds one without (for API tokens only). Users of other realms (pam) have the
system's passwords.`,
		Args: argsNamed("USERID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := userArg(cmd, args[0])
			if err != nil {
				return err
			}
			p, err := f.params(cmd, a)
			if err != nil {
				return err
			}
			p.Set("userid", u.Userid())
			switch {
			case u.Realm != "pbs" && (fromStdin || noPassword):
				return usagef(cmd, "--password-stdin and --no-password are for pbs-realm users; %s's password is the %s realm's", u.Userid(), u.Realm)
			case fromStdin && noPassword:
				return usagef(cmd, "--password-stdin and --no-password exclude each other")
			}
			// Everything that needs no apid first: a script with a bad password fails with 2.
			needPassword := u.Realm == "pbs" && !noPassword
			if needPassword && fromStdin {
				pw, err := a.readPassword(cmd, true, u.Userid())
				if err != nil {
					return err
				}
				p.Set("password", pw)
			} else if _, ok := a.terminal(); needPassword && !ok {
				return usagef(cmd, "stdin is not a terminal to type the password of %s on: give it with --password-stdin, or add --no-password", u.Userid())
			}
			// Ask first, so that nobody types a password for a user who exists (apid would
			// refuse the creation, and leave the existing password alone).
			err = a.client().Call(cmd.Context(), http.MethodGet, userPath(u.Userid()), nil, nil)
			if err == nil {
				return fmt.Errorf("adding user %s: user %s already exists", u.Userid(), u.Userid())
			} else if !apidclient.IsStatus(err, http.StatusNotFound) {
				return fmt.Errorf("adding user %s: %w", u.Userid(), err)
			}
			if needPassword && !fromStdin {
				pw, err := a.readPassword(cmd, false, u.Userid())
				if err != nil {
					return err
				}
				p.Set("password", pw)
			}
			if err := a.client().Call(cmd.Context(), http.MethodPost, "access/users", p, nil); err != nil {
				return fmt.Errorf("adding user %s: %w", u.Userid(), err)
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the password as one line from stdin")
	cmd.Flags().BoolVar(&noPassword, "no-password", false, "add a pbs-realm user without a password")
	return cmd
}

func (a *app) userUpdate() *cobra.Command {
	var f userFlags
	cmd := &cobra.Command{
		Use:               "update USERID",
		Short:             "Change a user's properties (only the flags given)",
		Args:              argsNamed("USERID"),
		ValidArgsFunction: a.completeUserArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := userArg(cmd, args[0])
			if err != nil {
				return err
			}
			p, err := f.params(cmd, a)
			if err != nil {
				return err
			}
			if len(p) == 0 {
				return usagef(cmd, "nothing to update: give at least one of --comment, --email, --firstname, --lastname, --expire, --enable")
			}
			if err := a.client().Call(cmd.Context(), http.MethodPut, userPath(u.Userid()), p, nil); err != nil {
				return fmt.Errorf("updating user %s: %w", u.Userid(), err)
			}
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func (a *app) userRemove() *cobra.Command {
	return &cobra.Command{
		Use:               "remove USERID",
		Short:             "Remove a user with their tokens, password and second factors",
		Args:              argsNamed("USERID"),
		ValidArgsFunction: a.completeUserArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := userArg(cmd, args[0])
			if err != nil {
				return err
			}
			if err := a.client().Call(cmd.Context(), http.MethodDelete, userPath(u.Userid()), nil, nil); err != nil {
				return fmt.Errorf("removing user %s: %w", u.Userid(), err)
			}
			return nil
		},
	}
}

func (a *app) userPasswd() *cobra.Command {
	var fromStdin bool
	cmd := &cobra.Command{
		Use:   "passwd USERID",
		Short: "Set a pbs-realm user's password (PUT /access/password); ends their older tickets",
		Long: `Set a pbs-realm user's password (PUT /access/password): typed twice on a terminal
without echo, or one line from stdin with --password-stdin. Tickets issued before the change
stop working everywhere at once.`,
		Args:              argsNamed("USERID"),
		ValidArgsFunction: a.completeUserArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := userArg(cmd, args[0])
			if err != nil {
				return err
			}
			if _, err := a.getUser(cmd.Context(), u.Userid()); err != nil {
				return err
			}
			if u.Realm != "pbs" {
				return fmt.Errorf("setting the password of %s: passwords of realm %q are not managed by Gatehouse", u.Userid(), u.Realm)
			}
			pw, err := a.readPassword(cmd, fromStdin, u.Userid())
			if err != nil {
				return err
			}
			p := url.Values{"userid": {u.Userid()}, "password": {pw}}
			if err := a.client().Call(cmd.Context(), http.MethodPut, "access/password", p, nil); err != nil {
				return fmt.Errorf("setting the password of %s: %w", u.Userid(), err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the password as one line from stdin")
	return cmd
}

// terminal returns stdin when it is a terminal.
func (a *app) terminal() (*os.File, bool) {
	f, ok := a.stdin.(*os.File)
	return f, ok && term.IsTerminal(int(f.Fd()))
}

// maxPassword bounds a password read from stdin.
const maxPassword = 4096

// readPassword reads userid's new password: one line of stdin with fromStdin, else typed twice
// on the terminal without echo (prompts on stderr).
func (a *app) readPassword(cmd *cobra.Command, fromStdin bool, userid string) (string, error) {
	if fromStdin {
		r := bufio.NewReaderSize(a.stdin, maxPassword+2)
		line, err := r.ReadSlice('\n')
		if err != nil && !(errors.Is(err, bufio.ErrBufferFull) || len(line) > 0) {
			return "", usagef(cmd, "reading the password from stdin: %v", err)
		}
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if len(line) > maxPassword {
			return "", usagef(cmd, "the password on stdin is over %d bytes", maxPassword)
		}
		if len(line) == 0 {
			return "", usagef(cmd, "the password on stdin is empty")
		}
		return string(line), nil
	}
	f, ok := a.terminal()
	if !ok {
		return "", usagef(cmd, "stdin is not a terminal to type the password of %s on: give it with --password-stdin", userid)
	}
	ask := func(prompt string) ([]byte, error) {
		fmt.Fprint(a.stderr, prompt)
		pw, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		if err != nil {
			return nil, fmt.Errorf("reading the password from the terminal: %w", err)
		}
		return pw, nil
	}
	pw, err := ask("New password for " + userid + ": ")
	if err != nil {
		return "", err
	}
	if len(pw) == 0 {
		return "", usagef(cmd, "the password is empty")
	}
	again, err := ask("Repeat the password: ")
	if err != nil {
		return "", err
	}
	if !bytes.Equal(pw, again) {
		return "", usagef(cmd, "the two passwords differ")
	}
	return string(pw), nil
}
