package acme

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// caDir names the storage subdirectory of one ACME server: an account exists at one CA only, so
// the staging and production directories of the same CA, or two CAs sharing one storage, must not
// share a key file. The name is the directory URL's host and path with everything that is not
// safe in a file name replaced by "_", readable enough for an operator to find the files.
func caDir(directory string) string {
	u, err := url.Parse(directory)
	name := directory
	if err == nil {
		name = u.Host + u.Path
	}
	var b strings.Builder
	for _, r := range strings.Trim(name, "/") {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "ca"
	}
	return b.String()
}

// writeFileAtomic writes data to a temporary file beside path and renames it over path, so a
// reader (or waage after a crash) sees the old file or the new one, never half of one. The
// file is synced before the rename and the directory after it, so the rename survives a power
// loss too.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// CreateTemp makes the file 0600; chmod before any byte is written so a key is never
	// readable by others, and a certificate gets its wider mode.
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync() // best effort: not every file system can sync a directory
		d.Close()
	}
	return nil
}

// newKey makes the ECDSA P-256 key used for both the account and certificates: small, fast,
// and accepted by every ACME CA and TLS client in use.
func newKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// encodeKey returns key as a PKCS #8 PEM block.
func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// decodeKey reads the first private key PEM block of data (PKCS #8, or SEC 1 for an EC key an
// operator put there by hand).
func decodeKey(data []byte) (crypto.Signer, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no private key PEM block")
		}
		switch b.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, err
			}
			s, ok := k.(crypto.Signer)
			if !ok {
				return nil, fmt.Errorf("unsupported key type %T", k)
			}
			return s, nil
		case "EC PRIVATE KEY":
			return x509.ParseECPrivateKey(b.Bytes)
		}
	}
}

// loadOrCreateKey returns the key stored at path, creating (and storing, 0600) a new one when
// the file does not exist. created reports which happened.
func loadOrCreateKey(path string) (key crypto.Signer, created bool, err error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		key, err := decodeKey(data)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", path, err)
		}
		return key, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, false, err
	}
	k, err := newKey()
	if err != nil {
		return nil, false, fmt.Errorf("generate key: %w", err)
	}
	pemKey, err := encodeKey(k)
	if err != nil {
		return nil, false, err
	}
	if err := writeFileAtomic(path, pemKey, 0o600); err != nil {
		return nil, false, err
	}
	return k, true, nil
}

// encodeChain returns the DER certificates as consecutive PEM blocks, leaf first.
func encodeChain(der [][]byte) []byte {
	var out []byte
	for _, c := range der {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	return out
}

// loadPair reads a stored chain and key. A missing file yields fs.ErrNotExist; a chain and key
// that do not belong together (a crash between the two renames of a renewal) yield an error too,
// which makes the caller order a new certificate rather than serve a broken pair.
func loadPair(certPath, keyPath string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s, %s: %w", certPath, keyPath, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%s: %w", certPath, err)
		}
	}
	return &c, nil
}
