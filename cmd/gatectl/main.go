// Command gatectl is Gatehouse's admin CLI. It talks to apid over apid's unix socket
// (<run-dir>/apid.sock) as the local administrator, whom apid treats as root@pam (package
// apidclient), and reads the generation counters straight from the shared-memory file.
//
// Commands: user list|show|add|update|remove|passwd, token list|generate|update|rotate|remove,
// tfa list|remove|unlock|recovery, status, key rotate, completion bash|zsh|fish|powershell.
// Output: --output-format text (aligned tables for lists, "key: value" for one object), json
// (one line) or json-pretty (proxmox-backup-manager's names). Secrets (token secrets, recovery
// codes) are printed once, on stdout, with a warning on stderr. Errors go to stderr as
// "gatectl: <what>: <apid's message>". Exit codes: see exitHelp.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"gatehouse/apidclient"
	"gatehouse/layout"
)

// Exit codes scripts can rely on.
const (
	exitOK          = 0 // success
	exitFailed      = 1 // apid refused or failed the operation, or anything else went wrong
	exitUsage       = 2 // unknown command or flag, wrong arguments, bad value
	exitUnreachable = 3 // apid unreachable: no socket, connection refused, not permitted
	exitNotFound    = 4 // the user, token or entry does not exist (apid answered 404)
)

const exitHelp = `Exit codes:
  0  success
  1  apid refused or failed the operation (its message is printed)
  2  usage error: unknown command or flag, wrong arguments, bad value
  3  apid unreachable: no socket, connection refused, not permitted (run as root)
  4  not found: the user, token or second factor does not exist`

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// app is one invocation: its global flags and streams.
type app struct {
	dirs     layout.Dirs
	format   string
	proxyURL string
	stdin    io.Reader
	stdout   io.Writer
	stderr   io.Writer
	loc      *time.Location // for times in text output
}

// run executes args and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, loc: time.Local}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "gatectl: %v\n", err)
	code := exitCode(err)
	var ue *usageError
	if errors.As(err, &ue) && ue.cmd != nil {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", ue.cmd.CommandPath())
	}
	return code
}

// exitCode maps an error to the documented exit codes.
func exitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, apidclient.ErrUnreachable):
		return exitUnreachable
	case apidclient.IsStatus(err, http.StatusNotFound):
		return exitNotFound
	}
	return exitFailed
}

// usageError is a mistake in the command line (exit code 2).
type usageError struct {
	cmd *cobra.Command
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{cmd: cmd, err: fmt.Errorf(format, args...)}
}

// client is the apid client for the --run-dir in effect.
func (a *app) client() *apidclient.Client { return apidclient.New(a.dirs.Socket()) }

func (a *app) rootCommand() *cobra.Command {
	root := group("gatectl", "Administer Gatehouse: users, API tokens, second factors, keys")
	root.Long = `gatectl administers Gatehouse through apid's unix socket (<run-dir>/apid.sock), as root@pam.
Run it as root (or as apid's own user in demo mode).

Output formats (--output-format): text (tables for lists, "key: value" for one object),
json (one line), json-pretty. Secrets are printed once, on stdout.

` + exitHelp
	root.SilenceErrors = true
	root.SilenceUsage = true
	pf := root.PersistentFlags()
	pf.StringVar(&a.dirs.Config, "config-dir", layout.DefaultConfigDir, "configuration directory")
	pf.StringVar(&a.dirs.Run, "run-dir", layout.DefaultRunDir, "runtime directory (apid.sock, generation file)")
	pf.StringVar(&a.format, "output-format", "text", "output format: text, json or json-pretty")
	root.RegisterFlagCompletionFunc("output-format", cobra.FixedCompletions([]string{"text", "json", "json-pretty"}, cobra.ShellCompDirectiveNoFileComp))
	root.MarkPersistentFlagDirname("config-dir")
	root.MarkPersistentFlagDirname("run-dir")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		switch a.format {
		case "text", "json", "json-pretty":
			return nil
		}
		return usagef(cmd, "--output-format %q: want text, json or json-pretty", a.format)
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return &usageError{cmd: cmd, err: err} })
	root.AddCommand(a.userCommand(), a.tokenCommand(), a.tfaCommand(), a.statusCommand(), a.keyCommand())
	return root
}

// group is a command that only holds subcommands: called alone or with an unknown subcommand,
// it is a usage error (cobra would print help and exit 0, which scripts cannot tell apart).
func group(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:                        use,
		Short:                      short,
		Args:                       cobra.ArbitraryArgs,
		SuggestionsMinimumDistance: 2,
		RunE: func(cmd *cobra.Command, args []string) error {
			var names []string
			for _, c := range cmd.Commands() {
				if c.IsAvailableCommand() {
					names = append(names, c.Name())
				}
			}
			if len(args) == 0 {
				return usagef(cmd, "%s needs a command: %s", cmd.CommandPath(), strings.Join(names, ", "))
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += "; did you mean " + strings.Join(s, " or ") + "?"
			}
			return usagef(cmd, "%s (commands: %s)", msg, strings.Join(names, ", "))
		},
	}
}

// argsNamed accepts exactly the named arguments, the last optional when it is in [brackets].
func argsNamed(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		lo := len(names)
		if lo > 0 && strings.HasPrefix(names[lo-1], "[") {
			lo--
		}
		if len(args) >= lo && len(args) <= len(names) {
			return nil
		}
		want := "no arguments"
		if len(names) > 0 {
			want = strings.Join(names, " ")
		}
		return usagef(cmd, "%s takes %s; got %d argument(s)", cmd.CommandPath(), want, len(args))
	}
}
