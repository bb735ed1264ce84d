package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/spf13/cobra"

	"gatehouse/authid"
)

// tokenJSON is a token entry as apid shows it.
type tokenJSON struct {
	Tokenid string `json:"tokenid"`
	Enable  bool   `json:"enable"`
	Expire  int64  `json:"expire"`
	Comment string `json:"comment"`
	Secret  string `json:"secret"` // "" (there), "missing" (rotate makes one), "unreadable"
}

func (p printer) tokenTable(list []tokenJSON) error {
	rows := make([][]string, len(list))
	for i, t := range list {
		secret := t.Secret
		if secret == "" {
			secret = "ok"
		}
		rows[i] = []string{t.Tokenid, yesNo(t.Enable), p.when(t.Expire), secret, t.Comment}
	}
	return p.table([]string{"TOKENID", "ENABLED", "EXPIRE", "SECRET", "COMMENT"}, rows)
}

// tokenArgs checks USERID NAME and returns the user and the full token id.
func tokenArgs(cmd *cobra.Command, args []string) (userid, tokenid string, err error) {
	u, err := userArg(cmd, args[0])
	if err != nil {
		return "", "", err
	}
	if err := authid.CheckTokenName(args[1]); err != nil {
		return "", "", usagef(cmd, "token NAME %q: %v", args[1], err)
	}
	t, err := authid.ParseToken(u.Userid() + "!" + args[1])
	if err != nil {
		return "", "", usagef(cmd, "token NAME %q: %v", args[1], err)
	}
	return u.Userid(), t.String(), nil
}

func tokenPath(userid, name string) string {
	return userPath(userid) + "/token/" + url.PathEscape(name)
}

// secretWarning goes to stderr before a secret that is shown once; what names it, with its verb.
func (a *app) secretWarning(what string) {
	fmt.Fprintf(a.stderr, "gatectl: warning: %s shown only this once: apid keeps only a hash\n", what)
}

func (a *app) tokenCommand() *cobra.Command {
	cmd := group("token", "Manage API tokens: list, generate, update, rotate, remove")
	cmd.AddCommand(a.tokenList(), a.tokenGenerate(), a.tokenUpdate(), a.tokenRotate(), a.tokenRemove())
	return cmd
}

func (a *app) tokenList() *cobra.Command {
	return &cobra.Command{
		Use:               "list USERID",
		Short:             "List a user's API tokens",
		Args:              argsNamed("USERID"),
		ValidArgsFunction: a.completeUserArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := userArg(cmd, args[0])
			if err != nil {
				return err
			}
			// apid lists no tokens for an unknown user; a script should hear "not found".
			if _, err := a.getUser(cmd.Context(), u.Userid()); err != nil {
				return err
			}
			var raw json.RawMessage
			if err := a.client().Call(cmd.Context(), http.MethodGet, userPath(u.Userid())+"/token", nil, &raw); err != nil {
				return fmt.Errorf("listing tokens of %s: %w", u.Userid(), err)
			}
			p := a.printer()
			return show(p, raw, p.tokenTable)
		},
	}
}

// tokenFlags are the properties generate and update take.
type tokenFlags struct {
	comment, expire string
	enable          bool
}

func (f *tokenFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.comment, "comment", "", "comment")
	fl.StringVar(&f.expire, "expire", "", "token expiry: never, a unix time, a date (2006-01-02) or an RFC 3339 time")
	fl.BoolVar(&f.enable, "enable", true, "enable the token (--enable=false disables it)")
}

func (f *tokenFlags) params(cmd *cobra.Command, a *app) (url.Values, error) {
	p := url.Values{}
	fl := cmd.Flags()
	if fl.Changed("comment") {
		p.Set("comment", f.comment)
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

// secretJSON is apid's answer to generate ({tokenid, value}) and rotate ({tokenid, secret},
// and repaired when the token had no secret).
type secretJSON struct {
	Tokenid  string `json:"tokenid"`
	Value    string `json:"value"`
	Secret   string `json:"secret"`
	Repaired bool   `json:"repaired"`
}

func (a *app) tokenGenerate() *cobra.Command {
	var f tokenFlags
	cmd := &cobra.Command{
		Use:   "generate USERID NAME",
		Short: "Make an API token and print its secret, once",
		Long: `Make the API token USERID!NAME and print its secret, once (JSON: {"tokenid", "value"}).
Clients send it as "Authorization: PBSAPIToken=USERID!NAME:SECRET".`,
		Args:              argsNamed("USERID", "NAME"),
		ValidArgsFunction: a.completeUserArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			userid, tokenid, err := tokenArgs(cmd, args)
			if err != nil {
				return err
			}
			p, err := f.params(cmd, a)
			if err != nil {
				return err
			}
			var raw json.RawMessage
			if err := a.client().Call(cmd.Context(), http.MethodPost, tokenPath(userid, args[1]), p, &raw); err != nil {
				return fmt.Errorf("generating token %s: %w", tokenid, err)
			}
			a.secretWarning("the secret of " + tokenid + " is")
			pr := a.printer()
			return show(pr, raw, func(s secretJSON) error {
				return pr.fields([]field{{"tokenid", s.Tokenid}, {"value", s.Value}})
			})
		},
	}
	f.register(cmd)
	return cmd
}

func (a *app) tokenUpdate() *cobra.Command {
	var f tokenFlags
	cmd := &cobra.Command{
		Use:               "update USERID NAME",
		Short:             "Change a token's comment, expiry or enable flag (only the flags given)",
		Args:              argsNamed("USERID", "NAME"),
		ValidArgsFunction: a.completeTokenArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			userid, tokenid, err := tokenArgs(cmd, args)
			if err != nil {
				return err
			}
			p, err := f.params(cmd, a)
			if err != nil {
				return err
			}
			if len(p) == 0 {
				return usagef(cmd, "nothing to update: give at least one of --comment, --expire, --enable")
			}
			if err := a.client().Call(cmd.Context(), http.MethodPut, tokenPath(userid, args[1]), p, nil); err != nil {
				return fmt.Errorf("updating token %s: %w", tokenid, err)
			}
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func (a *app) tokenRotate() *cobra.Command {
	return &cobra.Command{
		Use:   "rotate USERID NAME",
		Short: "Give a token a new secret and print it, once; the old one stops working at once",
		Long: `Give the API token USERID!NAME a new secret (PUT .../token/NAME regenerate=1) and print
it, once (JSON: {"tokenid", "secret"}). The old secret is refused everywhere as soon as this returns.
A token whose secret is missing from token.shadow ("token list" shows SECRET missing) gets a new
one, and gatectl says so on stderr (JSON: "repaired": true).`,
		Args:              argsNamed("USERID", "NAME"),
		ValidArgsFunction: a.completeTokenArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			userid, tokenid, err := tokenArgs(cmd, args)
			if err != nil {
				return err
			}
			var raw json.RawMessage
			if err := a.client().Call(cmd.Context(), http.MethodPut, tokenPath(userid, args[1]), url.Values{"regenerate": {"1"}}, &raw); err != nil {
				return fmt.Errorf("rotating token %s: %w", tokenid, err)
			}
			var s secretJSON
			if json.Unmarshal(raw, &s) == nil && s.Repaired {
				fmt.Fprintf(a.stderr, "gatectl: %s had no secret in token.shadow: this new one repairs it\n", tokenid)
			}
			a.secretWarning("the new secret of " + tokenid + " is")
			pr := a.printer()
			return show(pr, raw, func(s secretJSON) error {
				return pr.fields([]field{{"tokenid", s.Tokenid}, {"secret", s.Secret}})
			})
		},
	}
}

func (a *app) tokenRemove() *cobra.Command {
	return &cobra.Command{
		Use:               "remove USERID NAME",
		Short:             "Remove an API token; its secret stops working at once",
		Args:              argsNamed("USERID", "NAME"),
		ValidArgsFunction: a.completeTokenArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			userid, tokenid, err := tokenArgs(cmd, args)
			if err != nil {
				return err
			}
			if err := a.client().Call(cmd.Context(), http.MethodDelete, tokenPath(userid, args[1]), nil, nil); err != nil {
				return fmt.Errorf("removing token %s: %w", tokenid, err)
			}
			return nil
		},
	}
}
