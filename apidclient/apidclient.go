// Package apidclient calls apid's HTTP API over its unix socket as the local administrator,
// for gatectl. apid treats a peer running as root (or as apid's own user, in demo mode) that
// sends no client address (forward.Rhost) as root@pam; this client never sends one, nor any
// other internal header, so it acts as root@pam or is refused at the socket.
//
// A call sends its parameters as a form (in the query string for GET), as PBS clients do, and
// returns the answer's "data" decoded. Failures are one of:
//
//   - *Error: apid answered, with a status other than 2xx; it carries the status, apid's
//     "message" and, for a 400 about parameters, the per-parameter "errors" (package reply).
//   - an error wrapping ErrUnreachable: no HTTP answer at all (no socket, connection refused,
//     permission denied on the socket, the connection closed by apid's SO_PEERCRED check, a
//     timeout).
//   - any other error: the answer was not PBS's JSON shape, or out could not hold "data".
//
// Answers over 64 MiB are refused; a call gives up after Timeout (30 s).
package apidclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Timeout bounds one call, connection included.
const Timeout = 30 * time.Second

// maxAnswer bounds an answer body.
const maxAnswer = 64 << 20

// ErrUnreachable is wrapped by every failure to get an HTTP answer from apid.
var ErrUnreachable = errors.New("apid unreachable")

// Error is apid's refusal or failure of a call.
type Error struct {
	Status  int               // HTTP status
	Message string            // apid's "message"
	Params  map[string]string // apid's per-parameter "errors", if any
}

// Error reads "<message>" or "<message>: <param>: <reason>; ..." with the parameters sorted.
func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if len(e.Params) == 0 {
		return msg
	}
	keys := make([]string, 0, len(e.Params))
	for k := range e.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ": " + e.Params[k]
	}
	return msg + ": " + strings.Join(parts, "; ")
}

// IsStatus reports whether err is an *Error with the given HTTP status.
func IsStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status
}

// Client calls apid over one unix socket. It is safe for concurrent use.
type Client struct {
	socket string
	hc     *http.Client
}

// New returns a Client for the socket at path (layout.Dirs.Socket).
func New(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
		DisableCompression: true,
	}
	return &Client{socket: socket, hc: &http.Client{Transport: tr, Timeout: Timeout}}
}

// Socket returns the socket path the Client calls.
func (c *Client) Socket() string { return c.socket }

// Call sends method to /api2/json/<path> with params and decodes the answer's "data" into out
// (unless out is nil). path must be escaped already (url.PathEscape for user and token ids).
func (c *Client) Call(ctx context.Context, method, path string, params url.Values, out any) error {
	u := "http://apid/api2/json/" + strings.TrimPrefix(path, "/")
	var body io.Reader
	if method == http.MethodGet || method == http.MethodHead {
		if len(params) > 0 {
			u += "?" + params.Encode()
		}
	} else if params != nil {
		body = strings.NewReader(params.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("making request %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.unreachable(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return c.unreachable(err)
	}
	if len(raw) > maxAnswer {
		return fmt.Errorf("reading apid's answer to %s %s: over %d bytes", method, path, maxAnswer)
	}
	if err := decodeAnswer(resp.StatusCode, raw, out); err != nil {
		var ae *Error
		if errors.As(err, &ae) {
			return ae
		}
		return fmt.Errorf("reading apid's answer to %s %s: %w", method, path, err)
	}
	return nil
}

// unreachable describes a failure to get an answer, with a hint for the usual causes.
func (c *Client) unreachable(err error) error {
	var op *net.OpError
	var errno syscall.Errno
	var ne net.Error
	switch {
	case errors.As(err, &op) && op.Op == "dial" && errors.As(err, &errno):
		hint := ""
		switch errno {
		case syscall.ENOENT, syscall.ECONNREFUSED:
			hint = " (is apid running, and is --run-dir right?)"
		case syscall.EACCES, syscall.EPERM:
			hint = " (run gatectl as root)"
		}
		return fmt.Errorf("%w at %s: %v%s", ErrUnreachable, c.socket, errno, hint)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%w at %s: no answer within %v", ErrUnreachable, c.socket, Timeout)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%w at %s: %w", ErrUnreachable, c.socket, err)
	}
	// Connected, but no answer: apid's SO_PEERCRED check closes the connection of a uid it
	// does not admit; apid stopping mid-call looks the same.
	return fmt.Errorf("%w at %s: connection closed without an answer (apid admits only root and its own user): %w", ErrUnreachable, c.socket, err)
}

// answer is PBS's JSON answer shape.
type answer struct {
	Data    json.RawMessage   `json:"data"`
	Message string            `json:"message"`
	Errors  map[string]string `json:"errors"`
}

// decodeAnswer reads an answer body: for a 2xx status it decodes "data" into out (when out is
// not nil); for any other status it returns an *Error, even when the body is not JSON (Go's
// mux answers "404 page not found" as text).
func decodeAnswer(status int, body []byte, out any) error {
	var a answer
	jsonErr := json.Unmarshal(body, &a)
	if status < 200 || status > 299 {
		e := &Error{Status: status, Message: a.Message, Params: a.Errors}
		if jsonErr != nil {
			e.Message, e.Params = plainMessage(body), nil
		}
		return e
	}
	if jsonErr != nil {
		return fmt.Errorf("status %d and a body that is not JSON: %w", status, jsonErr)
	}
	if out == nil {
		return nil
	}
	data := a.Data
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("decoding data: %w", err)
	}
	return nil
}

// plainMessage is the first line of a non-JSON error body, printable ASCII only, at most 200
// bytes, so a stray answer cannot garble a terminal.
func plainMessage(body []byte) string {
	line, _, _ := bytes.Cut(body, []byte("\n"))
	var b strings.Builder
	for _, c := range line {
		if b.Len() >= 200 {
			break
		}
		if c >= 0x20 && c < 0x7f {
			b.WriteByte(c)
		}
	}
	return strings.TrimSpace(b.String())
}
