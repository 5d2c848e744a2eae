package admin

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
)

// dashboardFiles are the live dashboard's page, style and script: plain files, no build step,
// nothing loaded from elsewhere.
//
//go:embed dashboard
var dashboardFiles embed.FS

var dashboardFS = func() http.FileSystem {
	sub, err := fs.Sub(dashboardFiles, "dashboard")
	if err != nil {
		panic(err)
	}
	return http.FS(sub)
}()

// serveDashboard serves the dashboard's files at / (the page) and /NAME; the page has no data of
// its own, it reads the API, so the files need no token (but follow the loopback rule).
func (s *Server) serveDashboard(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodGet) {
		return
	}
	if st := s.settings.Load(); !st.hasToken && !loopbackRemote(r) {
		writeError(w, http.StatusForbidden, "the admin API without admin.token only answers loopback clients")
		return
	}
	name := path.Clean("/" + r.URL.Path)
	if name == "/" {
		name = "/index.html"
	}
	f, err := dashboardFS.Open(name)
	if err != nil {
		writeError(w, http.StatusNotFound, "no such page: "+r.URL.Path)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.IsDir() {
		writeError(w, http.StatusNotFound, "no such page: "+r.URL.Path)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
	http.ServeContent(w, r, name, fi.ModTime(), f)
}
