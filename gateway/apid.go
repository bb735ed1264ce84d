package gateway

// proxyd's calls to apid (the ticket call, every forwarded call): how long each may wait, what
// the client is told when apid does not answer, and how such incidents are logged and counted.
//
// apid answers a call only once it is done, and some calls take seconds for good reasons: a
// config write waits up to apid's --lock-timeout (10 s) for its file's lock and then answers
// 503 naming the lock; a PAM check may take seconds (pam_unix's delay after a failure,
// pam_faildelay, a directory server). One deadline short enough to tell a frozen apid within a
// few seconds would cut those off, and a call cut off is no verdict: apid may still make the
// change once it gets to it. So each call has two bounds (proxyd's flags; Options):
//
//   - ApidTimeout (--apid-timeout, 2 s): when a call has had no answer for that long, proxyd
//     asks apid GET /api2/json/ping on its socket, which apid answers at once whatever else it
//     is doing. No answer to that either within ApidTimeout and the call is abandoned: apid is
//     stopped (SIGSTOP), hung or swamped. While apid answers, the check is made again every
//     ApidTimeout. Concurrent calls share a check in flight (singleflight), so a frozen apid
//     gets one check at a time, not one per waiting call. A frozen apid is told within
//     2 × ApidTimeout (4 s; issue 18 saw a forwarded call wait 71 s and a login 60 s).
//   - ApidMaxWait (--apid-max-wait, 15 s): the most a call may take while apid is alive. It is
//     above apid's default --lock-timeout (10 s) with room for the write, so apid's own 503
//     naming a lock arrives first; raise it with apid's --lock-timeout.
//
// A call abandoned, or one apid cannot be reached for (no socket, connection refused, the
// connection lost before the answer), is answered 503 with a message naming apid; an answer
// proxyd cannot use is 502. Each is counted (gatehouse_apid_failures_total by reason) and logged
// once per incident (apidIncidents), and the failure reserved for the call is given back: a
// timeout is no verdict on the credential. A client that goes away before the answer is none
// of apid's failures: nothing is answered, counted or logged. A request body over the limit is
// the client's, answered 413.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"gatehouse/params"
	"gatehouse/reply"
)

// Defaults of proxyd's --apid-timeout and --apid-max-wait; see above.
const (
	DefaultApidTimeout = 2 * time.Second
	DefaultApidMaxWait = 15 * time.Second
)

// apidLogEvery is how often an incident that goes on is logged again.
const apidLogEvery = 10 * time.Second

// apidReason is why a call to apid failed: the reason label of gatehouse_apid_failures_total.
type apidReason uint8

const (
	apidTimeout     apidReason = iota // no answer in time (the liveness check failed, or ApidMaxWait)
	apidUnreachable                   // no connection: no socket, connection refused
	apidBroken                        // the connection failed before a whole answer
	apidInvalid                       // an answer proxyd cannot use
	numApidReasons
)

func (r apidReason) String() string {
	switch r {
	case apidTimeout:
		return "timeout"
	case apidUnreachable:
		return "unreachable"
	case apidBroken:
		return "broken"
	case apidInvalid:
		return "invalid"
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// apidError is a call to apid that got no usable answer.
type apidError struct {
	reason apidReason
	after  time.Duration // apidTimeout: the bound that ran out
	err    error         // what the transport said, if anything
}

func (e *apidError) Error() string {
	_, msg := e.answer()
	if e.err != nil {
		msg += ": " + e.err.Error()
	}
	return msg
}

func (e *apidError) Unwrap() error { return e.err }

// answer is the status and message the client gets.
func (e *apidError) answer() (int, string) {
	switch e.reason {
	case apidTimeout:
		return http.StatusServiceUnavailable, fmt.Sprintf("authentication service (apid) did not answer within %v", e.after)
	case apidUnreachable:
		return http.StatusServiceUnavailable, "authentication service (apid) unreachable"
	case apidBroken:
		return http.StatusServiceUnavailable, "authentication service (apid) closed the connection without answering"
	}
	return http.StatusBadGateway, "authentication service (apid) gave an invalid answer"
}

// clientBodyError is a request body that could not be read while it was sent to apid: the
// client's doing (too large, cut short), not apid's.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return "reading request body: " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }

// apidTransport is the RoundTripper of every call to apid: inner's round trip, bounded as the
// file comment says. answered is told of every answer (apidIncidents.answered).
type apidTransport struct {
	inner            http.RoundTripper
	timeout, maxWait time.Duration
	answered         func()
	checks           singleflight.Group
}

func (t *apidTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	parent := req.Context()
	ctx, cancelMax := context.WithTimeoutCause(parent, t.maxWait, &apidError{reason: apidTimeout, after: t.maxWait})
	ctx, cancel := context.WithCancelCause(ctx)
	stopWatch := t.watch(ctx, cancel)
	end := sync.OnceFunc(func() {
		stopWatch()
		cancel(nil)
		cancelMax()
	})
	out := req.WithContext(ctx)
	var body *bodyReader
	if req.Body != nil && req.Body != http.NoBody {
		body = &bodyReader{ReadCloser: req.Body}
		out.Body = body
	}
	resp, err := t.inner.RoundTrip(out)
	if err != nil {
		end()
		return nil, t.failure(parent, ctx, body, err)
	}
	t.answered()
	resp.Body = &answerBody{ReadCloser: resp.Body, ctx: ctx, end: end}
	return resp, nil
}

// failure tells why a round trip failed: the client's context is done (err as it is), the
// client's body could not be read (*clientBodyError), or apid did not answer (*apidError).
func (t *apidTransport) failure(parent, ctx context.Context, body *bodyReader, err error) error {
	if parent.Err() != nil {
		return err
	}
	if body != nil {
		if berr := body.failed(); berr != nil {
			return &clientBodyError{berr}
		}
	}
	var ae *apidError
	if errors.As(context.Cause(ctx), &ae) {
		return &apidError{reason: ae.reason, after: ae.after, err: ae.err}
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return &apidError{reason: apidUnreachable, err: err}
	}
	return &apidError{reason: apidBroken, err: err}
}

// watch checks apid is alive every t.timeout until the returned stop is called, and cancels
// ctx with an *apidError when a check gets no answer.
func (t *apidTransport) watch(ctx context.Context, cancel context.CancelCauseFunc) (stop func()) {
	var mu sync.Mutex
	stopped := false
	mu.Lock()
	defer mu.Unlock()
	var timer *time.Timer
	timer = time.AfterFunc(t.timeout, func() {
		if ctx.Err() != nil {
			return
		}
		if err := t.alive(); err != nil {
			cancel(&apidError{reason: apidTimeout, after: t.timeout, err: fmt.Errorf("no answer, nor to a liveness check: %w", err)})
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			timer.Reset(t.timeout)
		}
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		timer.Stop()
	}
}

// alive asks apid GET /api2/json/ping and returns nil once any answer arrives within
// t.timeout. Concurrent callers share one check.
func (t *apidTransport) alive() error {
	_, err, _ := t.checks.Do("ping", func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), t.timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://apid/api2/json/ping", nil)
		if err != nil {
			return nil, err
		}
		resp, err := t.inner.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, nil
	})
	return err
}

// bodyReader remembers a read error of the client's body (io.EOF is none).
type bodyReader struct {
	io.ReadCloser
	mu  sync.Mutex
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.mu.Lock()
		b.err = err
		b.mu.Unlock()
	}
	return n, err
}

func (b *bodyReader) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// answerBody is apid's answer body: still under the call's bounds until it is closed; a read
// cut off by them returns the *apidError.
type answerBody struct {
	io.ReadCloser
	ctx context.Context
	end func()
}

func (b *answerBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		var ae *apidError
		if errors.As(context.Cause(b.ctx), &ae) {
			err = ae
		}
	}
	return n, err
}

func (b *answerBody) Close() error {
	err := b.ReadCloser.Close()
	b.end()
	return err
}

// apidIncidents logs failed calls to apid once per incident rather than once per call (a
// frozen apid under load would write a line per request): the first failure after an answer
// (or since proxyd started) with its reason and error; while failures go on, one line at most
// every apidLogEvery with how many failed; at the first answer after them, how many failed
// and for how long.
type apidIncidents struct {
	log     *slog.Logger
	now     func() time.Time
	failing atomic.Bool // answered's fast path
	mu      sync.Mutex
	since   time.Time // the incident's first failure
	logged  time.Time // its last line
	failed  int       // failures in the incident
}

func (in *apidIncidents) failure(e *apidError, path string) {
	now := in.now()
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.failing.Load() {
		in.failing.Store(true)
		in.since, in.logged, in.failed = now, now, 1
		in.log.Error("apid calls failing", "reason", e.reason.String(), "path", path, "err", e.Error())
		return
	}
	in.failed++
	if now.Sub(in.logged) >= apidLogEvery {
		in.logged = now
		in.log.Warn("apid calls still failing", "reason", e.reason.String(), "failed", in.failed,
			"for", now.Sub(in.since).Round(time.Millisecond).String(), "err", e.Error())
	}
}

func (in *apidIncidents) answered() {
	if !in.failing.Load() {
		return
	}
	now := in.now()
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.failing.Load() {
		return
	}
	in.failing.Store(false)
	in.log.Info("apid calls answered again", "failed", in.failed, "for", now.Sub(in.since).Round(time.Millisecond).String())
}

// apidFailed answers a call to apid that got no usable answer (err from the apid transport,
// or from the check of its answer): nothing when the client went away; 413 or 400 when the
// client's body could not be read; else the *apidError's status and message, counted and
// logged (once per incident).
func (s *Server) apidFailed(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client went away: nobody to answer, and no failure of apid's
	}
	var be *clientBodyError
	if errors.As(err, &be) {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			reply.Error(w, http.StatusRequestEntityTooLarge, params.ErrTooLarge.Error())
			return
		}
		reply.Error(w, http.StatusBadRequest, "cannot read request body")
		return
	}
	var ae *apidError
	if !errors.As(err, &ae) {
		ae = &apidError{reason: apidBroken, err: err}
	}
	s.o.Metrics.apidFailure(ae.reason)
	s.apidLog.failure(ae, r.URL.Path)
	code, msg := ae.answer()
	reply.Error(w, code, msg)
}
