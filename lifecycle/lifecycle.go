// Package lifecycle runs a daemon's HTTP server from start to exit under a service manager:
// it serves until the context is done, reloads on SIGHUP, drains on shutdown, and reports each
// step to systemd through sd_notify (Type=notify units).
//
// # Sequence
//
//  1. Serve is called with a bound listener. It subscribes to SIGHUP, then sends
//     READY=1 (with STATUS=serving) and serves: the kernel already queues connections on the
//     listener, so "ready" never precedes "accepting".
//  2. On SIGHUP (systemctl reload: ExecReload=/bin/kill -HUP $MAINPID) it sends RELOADING=1 with
//     MONOTONIC_USEC=<CLOCK_MONOTONIC in µs>, calls the reload function, then sends READY=1 with
//     STATUS=reloaded or STATUS=reload failed: <error>. A failed reload is logged at error level
//     and leaves the old state in force: the reload function must swap in new state only once
//     all of it has loaded. Reloads run one at a time on one goroutine; SIGHUPs arriving during
//     a reload coalesce into one more. Connections are untouched by a reload.
//  3. When the context is done it sends STOPPING=1 and calls http.Server.Shutdown: the listener
//     closes, idle keep-alive connections close, and handlers in flight get Drain (default 5 s)
//     to finish; after that the remaining connections are closed. Serve returns only after this,
//     so the caller may then close or unmap whatever the handlers use.
//
// Without NOTIFY_SOCKET in the environment nothing is sent and nothing fails; a failed send
// is logged as a warning and never stops the daemon.
//
// # File descriptor store
//
// A daemon can leave a descriptor with systemd across its restarts (FileDescriptorStoreMax= in
// the unit): Store sends it (FDSTORE=1 with FDNAME, the descriptor in SCM_RIGHTS, the way
// sd_pid_notify_with_fds does), and Stored takes it back at the next start from LISTEN_FDS,
// LISTEN_PID and LISTEN_FDNAMES (go-systemd's activation). apid keeps its page of generation
// counters there (package shmem).
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// DefaultDrain is how long Serve lets handlers in flight finish after the context is done.
const DefaultDrain = 5 * time.Second

// Options configure Serve.
type Options struct {
	// TLS serves HTTPS with the server's TLSConfig (which must hold a certificate or a
	// GetCertificate function) instead of plain HTTP.
	TLS bool
	// Reload re-reads configuration on SIGHUP. It returns an error, and changes nothing, when
	// the new configuration cannot be loaded. Nil: SIGHUP is logged and otherwise ignored.
	Reload func() error
	Drain  time.Duration // default DefaultDrain
	Log    *slog.Logger  // default: discard
}

// Serve serves srv on ln until ctx is done, then shuts it down and waits for the drain; see the
// package comment. It returns nil after a shutdown asked for by ctx, or the error that stopped
// serving.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, o Options) error {
	if o.Drain <= 0 {
		o.Drain = DefaultDrain
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	addr := ln.Addr().String()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	served := make(chan error, 1)
	go func() {
		var err error
		if o.TLS {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		served <- err
	}()
	notify(o.Log, daemon.SdNotifyReady, "STATUS=serving on "+addr)

	for {
		select {
		case <-hup:
			reload(o)
		case err := <-served:
			// Serving stopped without a shutdown: Serve's own error (ErrServerClosed only if
			// someone else closed srv).
			notify(o.Log, daemon.SdNotifyStopping, "STATUS=stopped: "+err.Error())
			return fmt.Errorf("serving %s: %w", addr, err)
		case <-ctx.Done():
			notify(o.Log, daemon.SdNotifyStopping, "STATUS=draining connections")
			return shutdown(srv, served, addr, o)
		}
	}
}

// reload runs one reload between RELOADING=1 and READY=1.
func reload(o Options) {
	notify(o.Log, daemon.SdNotifyReloading, fmt.Sprintf("MONOTONIC_USEC=%d", monotonicUsec()))
	if o.Reload == nil {
		o.Log.Info("SIGHUP: nothing to reload")
		notify(o.Log, daemon.SdNotifyReady, "STATUS=serving")
		return
	}
	if err := o.Reload(); err != nil {
		o.Log.Error("reload failed, keeping the old configuration", "err", err)
		notify(o.Log, daemon.SdNotifyReady, "STATUS=reload failed: "+err.Error())
		return
	}
	o.Log.Info("reloaded")
	notify(o.Log, daemon.SdNotifyReady, "STATUS=reloaded at "+time.Now().UTC().Format(time.RFC3339))
}

// shutdown drains srv for at most o.Drain, then closes what is left, and waits for the serving
// goroutine.
func shutdown(srv *http.Server, served <-chan error, addr string, o Options) error {
	sctx, cancel := context.WithTimeout(context.Background(), o.Drain)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		o.Log.Warn("drain incomplete, closing connections", "after", o.Drain, "err", err)
		srv.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving %s: %w", addr, err)
	}
	return nil
}

// notify sends one sd_notify datagram made of lines; a failure is logged.
func notify(log *slog.Logger, lines ...string) {
	msg := ""
	for _, l := range lines {
		msg += l + "\n"
	}
	if _, err := daemon.SdNotify(false, msg); err != nil {
		log.Warn("sd_notify", "err", err)
	}
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock systemd expects in
// MONOTONIC_USEC.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}

// Store hands f to systemd's file descriptor store under name (FDSTORE=1, FDNAME=name): the
// service manager keeps it open across the daemon's restarts and passes it back in LISTEN_FDS
// (see Stored). It reports whether it was sent: false without NOTIFY_SOCKET.
func Store(f *os.File, name string) (bool, error) {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return false, nil
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("storing %s with the service manager: %w", name, err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrUnix{Name: sock} // a leading '@' names an abstract socket, as systemd means it
	// Whatever the store holds under name is stale once a new one is stored: remove it first.
	if err := unix.Sendmsg(fd, []byte("FDSTOREREMOVE=1\nFDNAME="+name+"\n"), nil, to, 0); err != nil {
		return false, fmt.Errorf("storing %s with the service manager: %w", name, err)
	}
	msg := "FDSTORE=1\nFDNAME=" + name + "\n"
	if err := unix.Sendmsg(fd, []byte(msg), unix.UnixRights(int(f.Fd())), to, 0); err != nil {
		return false, fmt.Errorf("storing %s with the service manager: %w", name, err)
	}
	return true, nil
}

// Stored returns the descriptor named name that the service manager passed back (LISTEN_FDS,
// LISTEN_FDNAMES, for this process: LISTEN_PID), or nil. Descriptors of other names are
// closed: a daemon stores only what it takes back.
func Stored(name string) *os.File {
	var found *os.File
	for _, f := range activation.Files(true) {
		if f.Name() == name && found == nil {
			found = f
			continue
		}
		f.Close()
	}
	return found
}
