package params

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	tests := []struct {
		name, ctype, body, query string
		want                     map[string]string
		bad                      string // parameter named in the *Error
	}{
		{"form", "application/x-www-form-urlencoded", "username=root%40pam&password=a%3Ab", "", map[string]string{"username": "root@pam", "password": "a:b"}, ""},
		{"form without content type", "", "username=root@pam&password=x", "", map[string]string{"username": "root@pam", "password": "x"}, ""},
		{"form with charset", "application/x-www-form-urlencoded; charset=UTF-8", "a=1", "", map[string]string{"a": "1"}, ""},
		{"json", "application/json", `{"username":"root@pam","http-only":true,"port":5900,"x":false}`, "", map[string]string{"username": "root@pam", "http-only": "1", "port": "5900", "x": "0"}, ""},
		{"json empty body", "application/json", "", "", map[string]string{}, ""},
		{"query and body", "", "b=2", "a=1", map[string]string{"a": "1", "b": "2"}, ""},
		{"duplicate", "", "a=1&a=2", "", nil, "a"},
		{"duplicate across query and body", "", "a=2", "a=1", nil, "a"},
		{"json nested", "application/json", `{"a":{"b":1}}`, "", nil, "a"},
		{"json array", "application/json", `[1]`, "", nil, "body"},
		{"json null", "application/json", `null`, "", nil, "body"},
		{"json truncated", "application/json", `{"a":`, "", nil, "body"},
		{"bad form", "", "a=%zz", "", nil, "body"},
		{"other type", "text/plain", "a=1", "", nil, "body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/x?"+tt.query, strings.NewReader(tt.body))
			if tt.ctype != "" {
				r.Header.Set("Content-Type", tt.ctype)
			}
			got, err := Read(r)
			if tt.bad != "" {
				var pe Error
				if !errors.As(err, &pe) || pe[tt.bad] == "" || !errors.Is(err, ErrInvalid) {
					t.Fatalf("Read(%q) = %v, %v; want an *Error naming %q", tt.body, got, err, tt.bad)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Read(%q) = %v, %v; want %v", tt.body, got, err, tt.want)
			}
		})
	}
}

// TestTooLarge: a body over MaxBody is ErrTooLarge (413), not an *Error (400), however it comes:
// with its length announced or not, form or JSON, read through http.MaxBytesReader (apid) or
// not (proxyd's ticket call). Exactly MaxBody bytes are read.
func TestTooLarge(t *testing.T) {
	over := strings.Repeat("x", MaxBody)
	tests := []struct {
		name, ctype, body string
		chunked, maxBytes bool
		want              error
	}{
		{"form", "application/x-www-form-urlencoded", "a=" + over, false, false, ErrTooLarge},
		{"form, length not announced", "", "a=" + over, true, false, ErrTooLarge},
		{"json", "application/json", `{"comment":"` + over + `"}`, false, false, ErrTooLarge},
		{"json through MaxBytesReader, length not announced", "application/json", `{"comment":"` + over + `"}`, true, true, ErrTooLarge},
		{"form through MaxBytesReader", "", "a=" + over, false, true, ErrTooLarge},
		{"exactly the limit", "", "a=" + over[:MaxBody-2], true, true, nil},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodPost, "/x", strings.NewReader(tt.body))
		if tt.chunked {
			r.ContentLength = -1
		}
		if tt.ctype != "" {
			r.Header.Set("Content-Type", tt.ctype)
		}
		if tt.maxBytes {
			r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, MaxBody)
		}
		_, err := Read(r)
		if !errors.Is(err, tt.want) || (tt.want != nil && errors.Is(err, ErrInvalid)) {
			t.Errorf("%s: Read(%d bytes) = %v; want %v", tt.name, len(tt.body), err, tt.want)
		}
	}
	if got, want := ErrTooLarge.Error(), "request body over 65536 bytes"; got != want {
		t.Errorf("ErrTooLarge = %q; want %q", got, want)
	}
}

func TestBoolAndOnly(t *testing.T) {
	p := map[string]string{"a": "Yes", "b": "off", "c": "2"}
	if v, err := Bool(p, "a"); !v || err != nil {
		t.Errorf("Bool(a=Yes) = %v, %v; want true", v, err)
	}
	if v, err := Bool(p, "b"); v || err != nil {
		t.Errorf("Bool(b=off) = %v, %v; want false", v, err)
	}
	if v, err := Bool(p, "missing"); v || err != nil {
		t.Errorf("Bool(missing) = %v, %v; want false, nil", v, err)
	}
	if _, err := Bool(p, "c"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Bool(c=2) = %v; want ErrInvalid", err)
	}
	var pe Error
	if err := Only(p, "a", "b"); !errors.As(err, &pe) || len(pe) != 1 || pe["c"] == "" {
		t.Errorf("Only(a, b) = %v; want an error naming c alone", err)
	}
	if err := Only(p, "a", "b", "c"); err != nil {
		t.Errorf("Only(a, b, c) = %v; want nil", err)
	}
}

func FuzzRead(f *testing.F) {
	f.Add("application/json", `{"a":"b","c":1}`, "x=1")
	f.Add("", "a=1&b=%20", "")
	f.Add("application/x-www-form-urlencoded", "a=1&a=2", "")
	f.Add("application/json", `{"a":"`+strings.Repeat("x", MaxBody)+`"}`, "")
	f.Fuzz(func(t *testing.T, ctype, body, query string) {
		r, err := http.NewRequest(http.MethodPost, "http://h/x", strings.NewReader(body))
		if err != nil {
			return
		}
		r.URL.RawQuery = query
		r.Header.Set("Content-Type", ctype)
		got, err := Read(r)
		if (len(body) > MaxBody) != errors.Is(err, ErrTooLarge) {
			t.Fatalf("Read of a %d-byte body: error %v; want ErrTooLarge exactly when over %d", len(body), err, MaxBody)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Read(%q, %q) error %v wraps neither ErrInvalid nor ErrTooLarge", ctype, body, err)
			}
			return
		}
		if got == nil {
			t.Fatal("Read returned nil map and nil error")
		}
	})
}
