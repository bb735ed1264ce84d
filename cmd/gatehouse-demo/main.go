// Command gatehouse-demo runs the demo stack of `make run`: apid and proxyd in a local folder
// with a bootstrap administrator, until Ctrl-C or SIGTERM. See package demostack.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"gatehouse/demostack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := demostack.Main(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "gatehouse-demo:", err)
		os.Exit(1)
	}
}
