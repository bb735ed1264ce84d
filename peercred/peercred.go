// Package peercred admits connections on a unix socket by the peer's kernel-reported uid.
//
// apid listens only on a unix socket (/run/gatehouse/apid.sock, mode 0660 root:gatehouse). Every
// accepted connection's peer credentials are read with SO_PEERCRED, which the kernel fills in at
// connect(2) time and the peer cannot forge. A connection whose uid is not in the allowed set
// (root and proxyd's uid) is closed before a single byte is read, and reported through the
// listener's Refused callback; admitted connections carry their credentials, which an
// http.Server puts in each request's context with ConnContext.
//
// Invariants: no connection is handed out without credentials; the socket file is created by
// Listen with the given mode and group, replacing only a stale socket (never a regular file or
// a socket another process is still serving).
package peercred

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// Cred is a connection's peer: process, user and group ids as the kernel reported them.
type Cred struct {
	PID int32
	UID uint32
	GID uint32
}

// ErrInUse is wrapped when the socket path is served by a running process.
var ErrInUse = errors.New("socket is in use")

// Listener accepts unix connections from allowed uids only.
type Listener struct {
	*net.UnixListener
	allowed []uint32
	refused func(Cred, error)
}

// Options configure Listen.
type Options struct {
	Mode    fs.FileMode       // socket file mode; default 0660
	GID     int               // group of the socket file; <= 0 keeps the process's group
	Allowed []uint32          // uids admitted; root (0) is always admitted
	Refused func(Cred, error) // called for each refused connection (optional)
}

// Listen creates the socket at path. A stale socket file (nobody accepting) is removed first;
// a live one or any other kind of file is an error.
func Listen(path string, o Options) (*Listener, error) {
	if err := clearStale(path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(true)
	mode := o.Mode
	if mode == 0 {
		mode = 0o660
	}
	if o.GID > 0 {
		if err := os.Chown(path, -1, o.GID); err != nil {
			ln.Close()
			return nil, fmt.Errorf("setting group of %s to %d: %w", path, o.GID, err)
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("setting mode of %s: %w", path, err)
	}
	allowed := append([]uint32{0}, o.Allowed...)
	return &Listener{UnixListener: ln, allowed: allowed, refused: o.Refused}, nil
}

func clearStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("creating socket %s: a file that is not a socket (%s) is in the way", path, fi.Mode().Type())
	}
	c, err := net.Dial("unix", path)
	if err == nil {
		c.Close()
		return fmt.Errorf("creating socket %s: %w (another apid is running?)", path, ErrInUse)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing stale socket %s: %w", path, err)
	}
	return nil
}

// Accept returns the next connection from an allowed uid. Refused connections are closed.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		cred, err := Of(c)
		if err == nil && !slices.Contains(l.allowed, cred.UID) {
			err = fmt.Errorf("uid %d is not allowed", cred.UID)
		}
		if err != nil {
			c.Close()
			if l.refused != nil {
				l.refused(cred, err)
			}
			continue
		}
		return &Conn{UnixConn: c, Cred: cred}, nil
	}
}

// Conn is an admitted connection and its peer.
type Conn struct {
	*net.UnixConn
	Cred Cred
}

// Of reads the peer credentials of a unix connection.
func Of(c *net.UnixConn) (Cred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Cred{}, fmt.Errorf("reading peer credentials: %w", err)
	}
	var uc *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		uc, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Cred{}, fmt.Errorf("reading peer credentials: %w", err)
	}
	if serr != nil {
		return Cred{}, fmt.Errorf("reading peer credentials: %w", serr)
	}
	return Cred{PID: uc.Pid, UID: uc.Uid, GID: uc.Gid}, nil
}

type ctxKey struct{}

// ConnContext is an http.Server ConnContext: it stores an admitted connection's Cred.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if pc, ok := c.(*Conn); ok {
		return context.WithValue(ctx, ctxKey{}, pc.Cred)
	}
	return ctx
}

// FromContext returns the peer stored by ConnContext.
func FromContext(ctx context.Context) (Cred, bool) {
	c, ok := ctx.Value(ctxKey{}).(Cred)
	return c, ok
}
