package gateway

// proxyd's own pages under /gatehouse/: the minimal login page, its script and style, and
// the forward-auth endpoint. Everything else under /gatehouse/ is 404 and never goes upstream.

import (
	"embed"
	"html/template"
	"net/http"
)

//go:embed login/login.html login/login.css login/login.js
var loginFiles embed.FS

// loginCSP allows the page its own script, style and the ticket call, nothing else; it cannot
// be framed.
const loginCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// routeGatehouse registers proxyd's /gatehouse/ paths on mux.
func (s *Server) routeGatehouse(mux *http.ServeMux) {
	page := template.Must(template.ParseFS(loginFiles, "login/login.html"))
	mux.HandleFunc("GET "+LoginPath, func(w http.ResponseWriter, r *http.Request) {
		next := r.URL.Query().Get("next")
		if !localPath(next) {
			next = "/"
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Security-Policy", loginCSP)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		if err := page.Execute(w, struct{ Next string }{next}); err != nil {
			s.o.Log.Error("rendering the login page", "err", err)
		}
	})
	for _, name := range []string{"login.css", "login.js"} {
		mux.HandleFunc("GET /gatehouse/static/"+name, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFileFS(w, r, loginFiles, "login/"+name)
		})
	}
	mux.HandleFunc("/gatehouse/auth", through(doorAuth, s.authed(s.forwardAuth)))
	mux.HandleFunc("/gatehouse/", func(w http.ResponseWriter, r *http.Request) {
		http.NotFound(w, r)
	})
}
