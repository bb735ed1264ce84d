package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/spf13/cobra"

	"gatehouse/apidclient"
)

// tfaUserJSON is one user's entries and lock state (GET /access/tfa).
type tfaUserJSON struct {
	Userid  string `json:"userid"`
	Entries []struct {
		Type        string `json:"type"`
		ID          string `json:"id"`
		Description string `json:"description"`
		Created     int64  `json:"created"`
		Enable      *bool  `json:"enable"`
	} `json:"entries"`
	TOTPLocked     bool  `json:"totp-locked"`
	TFALockedUntil int64 `json:"tfa-locked-until"`
}

func (p printer) tfaTable(list []tfaUserJSON) error {
	var rows [][]string
	for _, u := range list {
		lock := p.lock(u.TOTPLocked, u.TFALockedUntil)
		if len(u.Entries) == 0 {
			rows = append(rows, []string{u.Userid, "", "", "", "", "", lock})
		}
		for _, e := range u.Entries {
			rows = append(rows, []string{u.Userid, e.Type, e.ID, e.Description, p.when(e.Created), yesNo(e.Enable == nil || *e.Enable), lock})
		}
	}
	return p.table([]string{"USERID", "TYPE", "ID", "DESCRIPTION", "CREATED", "ENABLED", "LOCK"}, rows)
}

func tfaPath(userid string) string { return "access/tfa/" + url.PathEscape(userid) }

func (a *app) tfaCommand() *cobra.Command {
	cmd := group("tfa", "Manage second factors: list, remove, unlock, recovery codes")
	cmd.AddCommand(a.tfaList(), a.tfaRemove(), a.tfaUnlock(), a.tfaRecovery())
	return cmd
}

func (a *app) tfaList() *cobra.Command {
	return &cobra.Command{
		Use:   "list [USERID]",
		Short: "List second factors and lock state, of every user or of one",
		Long: `List second factors and their lock state (GET /access/tfa), of every user who has any,
or of USERID only. JSON: a list of {"userid", "entries", "totp-locked", "tfa-locked-until"}.`,
		Args:              argsNamed("[USERID]"),
		ValidArgsFunction: a.completeUserArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			only := ""
			if len(args) == 1 {
				u, err := userArg(cmd, args[0])
				if err != nil {
					return err
				}
				// apid lists only users who have entries; an unknown user is "not found".
				if _, err := a.getUser(cmd.Context(), u.Userid()); err != nil {
					return err
				}
				only = u.Userid()
			}
			var list []json.RawMessage
			if err := a.client().Call(cmd.Context(), http.MethodGet, "access/tfa", nil, &list); err != nil {
				return fmt.Errorf("listing second factors: %w", err)
			}
			if only != "" {
				var mine []json.RawMessage
				for _, raw := range list {
					var head struct {
						Userid string `json:"userid"`
					}
					if json.Unmarshal(raw, &head) == nil && head.Userid == only {
						mine = append(mine, raw)
					}
				}
				list = mine
			}
			if list == nil {
				list = []json.RawMessage{}
			}
			raw, err := json.Marshal(list)
			if err != nil {
				return err
			}
			p := a.printer()
			return show(p, raw, p.tfaTable)
		},
	}
}

func (a *app) tfaRemove() *cobra.Command {
	return &cobra.Command{
		Use:               "remove USERID ID",
		Short:             "Remove one second factor (ID from tfa list; \"recovery\" for the recovery codes)",
		Args:              argsNamed("USERID", "ID"),
		ValidArgsFunction: a.completeTFAArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := userArg(cmd, args[0])
			if err != nil {
				return err
			}
			if err := a.client().Call(cmd.Context(), http.MethodDelete, tfaPath(u.Userid())+"/"+url.PathEscape(args[1]), nil, nil); err != nil {
				return fmt.Errorf("removing second factor %s of %s: %w", args[1], u.Userid(), err)
			}
			return nil
		},
	}
}

func (a *app) tfaUnlock() *cobra.Command {
	return &cobra.Command{
		Use:               "unlock USERID",
		Short:             "Lift a user's TOTP lock and second-factor lockout",
		Args:              argsNamed("USERID"),
		ValidArgsFunction: a.completeUserArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := userArg(cmd, args[0])
			if err != nil {
				return err
			}
			// apid unlocks unknown users without complaint; a script should hear "not found".
			if _, err := a.getUser(cmd.Context(), u.Userid()); err != nil {
				return err
			}
			var was bool
			if err := a.client().Call(cmd.Context(), http.MethodPut, userPath(u.Userid())+"/unlock-tfa", nil, &was); err != nil {
				return fmt.Errorf("unlocking second factors of %s: %w", u.Userid(), err)
			}
			p := a.printer()
			if !p.text() {
				return p.json(map[string]any{"userid": u.Userid(), "was-locked": was})
			}
			msg := u.Userid() + " was not locked"
			if was {
				msg = u.Userid() + " was locked and is unlocked"
			}
			_, err = fmt.Fprintln(a.stdout, msg)
			return err
		},
	}
}

// recoveryJSON is apid's answer to POST /access/tfa/{userid} type=recovery.
type recoveryJSON struct {
	ID       string   `json:"id"`
	Recovery []string `json:"recovery"`
}

func (a *app) tfaRecovery() *cobra.Command {
	var replace bool
	cmd := &cobra.Command{
		Use:   "recovery USERID",
		Short: "Make a user's 10 recovery codes and print them, once",
		Long: `Make USERID's 10 one-time recovery codes and print them, once, one per line (JSON:
{"id": "recovery", "recovery": [...]}). A user who has codes keeps them unless --replace is
given, which removes the old set first (if making the new set then fails, the user has none).`,
		Args:              argsNamed("USERID"),
		ValidArgsFunction: a.completeUserArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := userArg(cmd, args[0])
			if err != nil {
				return err
			}
			c := a.client()
			if replace {
				err := c.Call(cmd.Context(), http.MethodDelete, tfaPath(u.Userid())+"/recovery", nil, nil)
				if err != nil && !apidclient.IsStatus(err, http.StatusNotFound) {
					return fmt.Errorf("removing the recovery codes of %s: %w", u.Userid(), err)
				}
			}
			var raw json.RawMessage
			if err := c.Call(cmd.Context(), http.MethodPost, tfaPath(u.Userid()), url.Values{"type": {"recovery"}}, &raw); err != nil {
				if apidclient.IsStatus(err, http.StatusBadRequest) && !replace {
					return fmt.Errorf("making recovery codes for %s (--replace replaces a set): %w", u.Userid(), err)
				}
				return fmt.Errorf("making recovery codes for %s: %w", u.Userid(), err)
			}
			a.secretWarning("the recovery codes of " + u.Userid() + " are")
			p := a.printer()
			return show(p, raw, func(r recoveryJSON) error {
				for _, code := range r.Recovery {
					if _, err := fmt.Fprintln(a.stdout, clean(code)); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&replace, "replace", false, "remove the user's existing recovery codes first")
	return cmd
}
