package shmem

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// dialTimeout bounds Dial: a connect, one message.
const dialTimeout = 2 * time.Second

// rightsConn is a connection that can carry descriptors: *net.UnixConn, or a type embedding it
// (peercred's admitted connections).
type rightsConn interface {
	WriteMsgUnix(b, oob []byte, addr *net.UnixAddr) (n, oobn int, err error)
}

// Serve hands the page to every connection ln accepts, until ln is closed (it then returns
// nil; a failed Accept is retried after a growing pause, up to 1 s): one message, the magic, with a descriptor of the page, then the connection is closed.
// writable says whether the peer of a connection gets the read-write descriptor; everyone
// else gets the read-only one. Only the owner (New, Adopt) can serve. Admission (which peers
// may connect) is the listener's: apid's admits root and proxyd's uid by SO_PEERCRED.
func (c *Cache) Serve(ln net.Listener, writable func(net.Conn) bool) error {
	m := c.current()
	if m == nil || m.ro == nil {
		return errors.New("serving the config version page: this process does not own it")
	}
	var delay time.Duration // after a failed Accept (out of descriptors, say), as net/http does
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		f := m.ro
		if writable(conn) {
			f = m.file
		}
		send(conn, f)
		conn.Close()
	}
}

// send writes the magic with f's descriptor; a peer that went away is its own problem.
func send(conn net.Conn, f *os.File) {
	rc, ok := conn.(rightsConn)
	if !ok {
		return
	}
	conn.SetWriteDeadline(time.Now().Add(dialTimeout))
	rc.WriteMsgUnix([]byte(Magic), unix.UnixRights(int(f.Fd())), nil)
}

// View returns another view of the page: a second mapping of the same memfd, read-write if
// this one is, as another process gets with Dial. It is for tests that play several processes
// in one; a view is no owner (it keeps no mirror and serves nothing).
func (c *Cache) View() (*Cache, error) {
	m := c.current()
	if m == nil || m.file == nil {
		return nil, errors.New("viewing the config version page: no page attached")
	}
	fd, err := unix.FcntlInt(m.file.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("viewing the config version page: %w", err)
	}
	f := os.NewFile(uintptr(fd), m.file.Name())
	v, err := mapFile(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("viewing the config version page: %w", err)
	}
	return newCacheFrom(v), nil
}

// Dial attaches to the page apid serves on the unix socket at path: read-write if apid hands
// this process the read-write descriptor (root, apid's own user), else read-only. The page is
// checked (a sealed memfd of Size bytes with a valid header) before it is mapped. Watch then
// follows apid's page (see "Following a new page").
func Dial(path string) (*Cache, error) {
	m, err := dial(path)
	if err != nil {
		return nil, err
	}
	return newCacheFrom(m), nil
}

func dial(path string) (*mapping, error) {
	f, err := receive(path)
	if err != nil {
		return nil, fmt.Errorf("attaching the config version page from %s: %w", path, err)
	}
	m, err := mapFile(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("attaching the config version page from %s: %w", path, err)
	}
	return m, nil
}

// receive connects to path and returns the one descriptor the message carries.
func receive(path string) (*os.File, error) {
	conn, err := net.DialTimeout("unix", path, dialTimeout)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	uc := conn.(*net.UnixConn)
	uc.SetReadDeadline(time.Now().Add(dialTimeout))
	buf := make([]byte, len(Magic)+1)
	oob := make([]byte, unix.CmsgSpace(4*4)) // room for a few descriptors, to close extras
	n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("reading the page's descriptor: %w", err)
	}
	var fds []int
	if msgs, perr := unix.ParseSocketControlMessage(oob[:oobn]); perr == nil {
		for _, msg := range msgs {
			if got, err := unix.ParseUnixRights(&msg); err == nil {
				fds = append(fds, got...)
			}
		}
	}
	if string(buf[:n]) != Magic || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("answer %q with %d descriptors, want %q with one: %w", buf[:n], len(fds), Magic, ErrBadMagic)
	}
	unix.CloseOnExec(fds[0])
	return os.NewFile(uintptr(fds[0]), "memfd:gatehouse-"+StoreName), nil
}
