// Package params reads the parameters of an API call the way PBS clients send them: in the
// query string and in the body, as a JSON object (Content-Type: application/json) or as a form
// (application/x-www-form-urlencoded, or no Content-Type at all, as some Proxmox clients send).
//
// Values are strings; JSON numbers are written in decimal and JSON booleans as "1"/"0", as PBS's
// schema would accept them. A parameter given twice, a nested JSON value, a malformed form and an
// unknown content type are each an *Error naming the parameter, answered 400 with PBS's
// {"errors": {name: message}} shape; a body over 64 KiB is ErrTooLarge, answered 413.
package params

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// MaxBody bounds a request body.
const MaxBody = 64 << 10

// ErrInvalid is wrapped by every *Error.
var ErrInvalid = errors.New("parameter verification failed")

// ErrTooLarge is a body over MaxBody (read through http.MaxBytesReader or not). Its message is
// what the client is told, with 413 (reply.Invalid).
var ErrTooLarge = fmt.Errorf("request body over %d bytes", MaxBody)

// Error names the parameters that failed and why, as PBS's 400 answer does.
type Error map[string]string

func (e Error) Error() string {
	var b strings.Builder
	for k, v := range e {
		fmt.Fprintf(&b, "%s: %s; ", k, v)
	}
	return strings.TrimSuffix(b.String(), "; ")
}

// Unwrap returns ErrInvalid.
func (e Error) Unwrap() error { return ErrInvalid }

// Read returns r's parameters; see the package comment. A body that cannot be read is an error
// that is not an *Error.
func Read(r *http.Request) (map[string]string, error) {
	out := map[string]string{}
	add := func(k, v string) error {
		if _, dup := out[k]; dup {
			return Error{k: "given more than once"}
		}
		out[k] = v
		return nil
	}
	for k, vs := range r.URL.Query() {
		for _, v := range vs {
			if err := add(k, v); err != nil {
				return nil, err
			}
		}
	}
	if r.Body == nil || r.Method == http.MethodGet || r.Method == http.MethodHead {
		return out, nil
	}
	if r.ContentLength > MaxBody {
		return nil, ErrTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	var mb *http.MaxBytesError
	if errors.As(err, &mb) || len(body) > MaxBody {
		return nil, ErrTooLarge
	}
	if err != nil {
		return nil, fmt.Errorf("reading request body: %w", err)
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		if len(strings.TrimSpace(string(body))) == 0 {
			return out, nil
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil || m == nil {
			return nil, Error{"body": "not a JSON object"}
		}
		for k, v := range m {
			s, ok := scalar(v)
			if !ok {
				return nil, Error{k: "not a string, number or boolean"}
			}
			if err := add(k, s); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	if ct != "" && ct != "application/x-www-form-urlencoded" {
		return nil, Error{"body": "unsupported content type " + strconv.Quote(ct)}
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, Error{"body": "malformed form data"}
	}
	for k, vs := range form {
		for _, v := range vs {
			if err := add(k, v); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		if x {
			return "1", true
		}
		return "0", true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	}
	return "", false
}

// Bool parses parameter k as a PBS boolean (1/0, true/false, yes/no, on/off, any case); absent is false.
func Bool(m map[string]string, k string) (bool, error) {
	v, ok := m[k]
	if !ok {
		return false, nil
	}
	switch strings.ToLower(v) {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	return false, Error{k: "not a boolean"}
}

// Only refuses parameters not in allowed.
func Only(m map[string]string, allowed ...string) error {
	bad := Error{}
outer:
	for k := range m {
		for _, a := range allowed {
			if k == a {
				continue outer
			}
		}
		bad[k] = "schema does not allow additional properties"
	}
	if len(bad) > 0 {
		return bad
	}
	return nil
}
