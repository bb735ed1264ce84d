// Package reply writes API answers in PBS's JSON shape, for proxyd and apid alike:
// {"data": ...} on success; {"data": null, "message": "..."} with the status on failure; and for
// a 400 about parameters, also "errors": {name: reason} (params.Error), as PBS answers.
package reply

import (
	"encoding/json"
	"errors"
	"net/http"

	"gatehouse/params"
)

const contentType = "application/json;charset=UTF-8"

// Data answers 200 with {"data": v}.
func Data(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", contentType)
	json.NewEncoder(w).Encode(map[string]any{"data": v})
}

// Error answers code with {"data": null, "message": msg}.
func Error(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"data": nil, "message": msg})
}

// Invalid answers 400 for err: with the failing parameters by name when err is a params.Error,
// with a generic message otherwise (a body that could not be read); 413 naming the limit for
// params.ErrTooLarge.
func Invalid(w http.ResponseWriter, err error) {
	if errors.Is(err, params.ErrTooLarge) {
		Error(w, http.StatusRequestEntityTooLarge, params.ErrTooLarge.Error())
		return
	}
	var pe params.Error
	if !errors.As(err, &pe) {
		Error(w, http.StatusBadRequest, "cannot read request")
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]any{"data": nil, "message": "parameter verification failed", "errors": pe})
}
