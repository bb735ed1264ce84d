package main

import (
	"context"
	"net/http"
	"strings"

	"github.com/spf13/cobra"
)

// Dynamic shell completion: user ids, token names and second-factor ids come from apid (with
// the --run-dir on the command line). When apid cannot be asked, nothing is offered.

const noFiles = cobra.ShellCompDirectiveNoFileComp

func ctxOf(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

// userIDs lists the user ids starting with prefix.
func (a *app) userIDs(ctx context.Context, prefix string) []string {
	var list []struct {
		Userid string `json:"userid"`
	}
	if a.client().Call(ctx, http.MethodGet, "access/users", nil, &list) != nil {
		return nil
	}
	var out []string
	for _, u := range list {
		if strings.HasPrefix(u.Userid, prefix) {
			out = append(out, u.Userid)
		}
	}
	return out
}

// completeUserArgs completes the first argument with user ids.
func (a *app) completeUserArgs(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, noFiles
	}
	return a.userIDs(ctxOf(cmd), prefix), noFiles
}

// completeTokenArgs completes USERID, then the user's token names.
func (a *app) completeTokenArgs(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
	switch len(args) {
	case 0:
		return a.userIDs(ctxOf(cmd), prefix), noFiles
	case 1:
		var list []tokenJSON
		if a.client().Call(ctxOf(cmd), http.MethodGet, userPath(args[0])+"/token", nil, &list) != nil {
			return nil, noFiles
		}
		var out []string
		for _, t := range list {
			_, name, ok := strings.Cut(t.Tokenid, "!")
			if ok && strings.HasPrefix(name, prefix) {
				out = append(out, name)
			}
		}
		return out, noFiles
	}
	return nil, noFiles
}

// completeTFAArgs completes USERID, then the ids of the user's second factors.
func (a *app) completeTFAArgs(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
	switch len(args) {
	case 0:
		return a.userIDs(ctxOf(cmd), prefix), noFiles
	case 1:
		var list []tfaUserJSON
		if a.client().Call(ctxOf(cmd), http.MethodGet, "access/tfa", nil, &list) != nil {
			return nil, noFiles
		}
		var out []string
		for _, u := range list {
			if u.Userid != args[0] {
				continue
			}
			for _, e := range u.Entries {
				if strings.HasPrefix(e.ID, prefix) {
					out = append(out, e.ID+"\t"+e.Type+" "+e.Description)
				}
			}
		}
		return out, noFiles
	}
	return nil, noFiles
}
