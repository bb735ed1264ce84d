package reply

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"gatehouse/params"
)

func TestReplies(t *testing.T) {
	tests := []struct {
		name  string
		write func(w http.ResponseWriter)
		code  int
		body  string
	}{
		{"data", func(w http.ResponseWriter) { Data(w, map[string]int{"a": 1}) }, 200, `{"data":{"a":1}}` + "\n"},
		{"null data", func(w http.ResponseWriter) { Data(w, nil) }, 200, `{"data":null}` + "\n"},
		{"error", func(w http.ResponseWriter) { Error(w, 401, "authentication failure") }, 401, `{"data":null,"message":"authentication failure"}` + "\n"},
		{"invalid params", func(w http.ResponseWriter) { Invalid(w, params.Error{"foo": "unknown"}) }, 400,
			`{"data":null,"errors":{"foo":"unknown"},"message":"parameter verification failed"}` + "\n"},
		{"unreadable body", func(w http.ResponseWriter) { Invalid(w, errors.New("read: connection reset")) }, 400,
			`{"data":null,"message":"cannot read request"}` + "\n"},
		{"body too large", func(w http.ResponseWriter) { Invalid(w, fmt.Errorf("reading: %w", params.ErrTooLarge)) }, 413,
			`{"data":null,"message":"request body over 65536 bytes"}` + "\n"},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		tt.write(rec)
		if rec.Code != tt.code || rec.Body.String() != tt.body || rec.Header().Get("Content-Type") != contentType {
			t.Errorf("%s: %d %q (%s); want %d %q", tt.name, rec.Code, rec.Body.String(), rec.Header().Get("Content-Type"), tt.code, tt.body)
		}
	}
}
