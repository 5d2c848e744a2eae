// Package tlsx is waage's TLS setup: the certificate store of TLS-terminating frontends and the
// client configuration for servers.
package tlsx

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/waage/waage/internal/config"
)

// ClientConfig builds the TLS configuration for connecting to servers (backends, health checks),
// reading its files now so that a missing CA or key fails the configuration load rather than every
// connection. ServerName stays empty when not configured: the caller fills in its target's host.
func ClientConfig(c *config.ClientTLS) (*tls.Config, error) {
	cfg := &tls.Config{
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify,
		MinVersion:         tls.VersionTLS12,
	}
	if c.CA != "" {
		pem, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, fmt.Errorf("tls.ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca: no PEM certificates in %s", c.CA)
		}
		cfg.RootCAs = pool
	}
	switch {
	case c.Cert != "" && c.Key != "":
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("tls.cert: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case c.Cert != "" || c.Key != "":
		return nil, errors.New("tls: cert and key go together")
	}
	return cfg, nil
}
