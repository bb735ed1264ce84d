package forward

import (
	"net/http"
	"testing"
)

func TestStrip(t *testing.T) {
	h := http.Header{
		"X-Gatehouse-Authid": {"root@pam"},
		"x-gatehouse-rhost":  {"1.2.3.4"}, // not canonical: a raw map entry
		"X-Gatehousex":       {"kept"},
		"Authorization":      {"kept"},
	}
	h.Set(Failure, "x")
	Strip(h)
	if len(h) != 2 || h.Get("Authorization") != "kept" || h.Get("X-Gatehousex") != "kept" {
		t.Errorf("Strip left %v; want only Authorization and X-Gatehousex", h)
	}
}
