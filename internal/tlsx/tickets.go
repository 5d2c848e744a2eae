package tlsx

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"sync"
	"time"
)

const (
	// ticketRotation is how long one key seals new session tickets.
	ticketRotation = time.Hour
	// ticketKeys is how many keys are kept: a ticket is honoured for up to ticketKeys rotations
	// (12 h) after its key began sealing, long enough for a client's working day without
	// letting one stolen key open weeks of recorded sessions.
	ticketKeys = 12
	// ticketNameLen is the size of the key name that prefixes a ticket, so opening one is a
	// lookup rather than a trial decryption with every key.
	ticketNameLen = 8
)

// tickets is the process-wide ticket key ring. It lives at package level, not in a Store,
// because a configuration reload builds new Stores: clients that got a ticket before the reload
// must still resume after it.
var tickets = newTicketRing(time.Now)

// ticketRing seals and opens session tickets with AES-256-GCM under keys that rotate every
// ticketRotation. Keys are random and never leave memory, so a restart invalidates all tickets
// (the clients just do a full handshake), and the ring needs no file or shared secret.
type ticketRing struct {
	now func() time.Time

	mu   sync.Mutex
	keys []*ticketKey // newest first
}

type ticketKey struct {
	name    [ticketNameLen]byte
	aead    cipher.AEAD
	created time.Time
}

func newTicketRing(now func() time.Time) *ticketRing { return &ticketRing{now: now} }

// current returns the key to seal with, making a new one when the newest is older than
// ticketRotation, and drops the keys beyond ticketKeys.
func (r *ticketRing) current() (*ticketKey, error) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.keys) > 0 && now.Sub(r.keys[0].created) < ticketRotation {
		return r.keys[0], nil
	}
	var secret [32]byte
	k := &ticketKey{created: now}
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, fmt.Errorf("session ticket key: %w", err)
	}
	if _, err := rand.Read(k.name[:]); err != nil {
		return nil, fmt.Errorf("session ticket key: %w", err)
	}
	block, err := aes.NewCipher(secret[:])
	if err != nil {
		return nil, fmt.Errorf("session ticket key: %w", err)
	}
	if k.aead, err = cipher.NewGCM(block); err != nil {
		return nil, fmt.Errorf("session ticket key: %w", err)
	}
	r.keys = append([]*ticketKey{k}, r.keys...)
	if len(r.keys) > ticketKeys {
		r.keys = r.keys[:ticketKeys]
	}
	return k, nil
}

// find returns the key named by a ticket's prefix if it is still young enough to honour. The age
// is checked here too, because an idle process seals nothing and so never drops old keys.
func (r *ticketRing) find(name []byte) *ticketKey {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range r.keys {
		if string(k.name[:]) == string(name) {
			if now.Sub(k.created) >= ticketRotation*ticketKeys {
				return nil
			}
			return k
		}
	}
	return nil
}

// seal encrypts plain into a ticket: key name | nonce | ciphertext. aad binds the ticket to the
// setup that issued it (see Store.binding) without being part of it.
func (r *ticketRing) seal(plain, aad []byte) ([]byte, error) {
	k, err := r.current()
	if err != nil {
		return nil, err
	}
	ns := k.aead.NonceSize()
	out := make([]byte, ticketNameLen+ns, ticketNameLen+ns+len(plain)+k.aead.Overhead())
	copy(out, k.name[:])
	if _, err := rand.Read(out[ticketNameLen:]); err != nil {
		return nil, fmt.Errorf("session ticket nonce: %w", err)
	}
	return k.aead.Seal(out, out[ticketNameLen:], plain, aad), nil
}

// open decrypts a ticket made by seal; false when the key is gone, the ticket was tampered with
// or aad differs (the client then simply gets a full handshake).
func (r *ticketRing) open(ticket, aad []byte) ([]byte, bool) {
	if len(ticket) < ticketNameLen {
		return nil, false
	}
	k := r.find(ticket[:ticketNameLen])
	if k == nil {
		return nil, false
	}
	rest := ticket[ticketNameLen:]
	ns := k.aead.NonceSize()
	if len(rest) < ns+k.aead.Overhead() {
		return nil, false
	}
	plain, err := k.aead.Open(nil, rest[:ns], rest[ns:], aad)
	if err != nil {
		return nil, false
	}
	return plain, true
}

// wrapSession is tls.Config.WrapSession over the ring.
func (r *ticketRing) wrapSession(ss *tls.SessionState, aad []byte) ([]byte, error) {
	b, err := ss.Bytes()
	if err != nil {
		return nil, fmt.Errorf("session ticket: %w", err)
	}
	return r.seal(b, aad)
}

// unwrapSession is tls.Config.UnwrapSession over the ring. A ticket it cannot use is not an
// error: returning nil, nil makes crypto/tls fall back to a full handshake instead of dropping
// the connection.
func (r *ticketRing) unwrapSession(ticket, aad []byte) (*tls.SessionState, error) {
	plain, ok := r.open(ticket, aad)
	if !ok {
		return nil, nil
	}
	ss, err := tls.ParseSessionState(plain)
	if err != nil {
		return nil, nil
	}
	return ss, nil
}
