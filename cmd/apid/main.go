// Command apid is Gatehouse's privileged daemon: passwords, PAM, ticket signing and every
// configuration write, served on a unix socket to proxyd and root only. See package authority.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"gatehouse/authority"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := authority.Main(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "apid:", err)
		os.Exit(1)
	}
}
