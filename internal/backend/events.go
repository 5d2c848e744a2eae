package backend

import (
	"sync"
	"time"
)

// Event is one change of a server that an operator wants to see: health (UP/DOWN by active
// checks), ejection (passive checks), administrative state and weight (by the config or the admin
// API), and configuration reloads.
type Event struct {
	// ID increases by one per event, so a reader can ask for what came after the last one it saw.
	ID      uint64
	Time    time.Time
	Backend string
	Server  string
	// Kind is health, ejection, state, weight or reload.
	Kind string
	// From and To are the values before and after: up/down, ejected/restored, a state or a weight.
	From, To string
	// Detail says why, when known: the failed check's error, say.
	Detail string
	// Source is who made the change: check, outlier, config or api.
	Source string
}

// EventLog keeps the latest events in a bounded ring. It is safe for concurrent use; adding
// takes a lock, which is fine for events (health flips, operator actions), never for requests.
type EventLog struct {
	mu   sync.Mutex
	ring []Event
	next int    // where the next event goes
	full bool   // the ring wrapped at least once
	last uint64 // ID of the newest event
}

// DefaultEventLogSize is how many events a Registry's log keeps.
const DefaultEventLogSize = 256

// NewEventLog returns a log that keeps the latest size events (at least one).
func NewEventLog(size int) *EventLog {
	return &EventLog{ring: make([]Event, max(size, 1))}
}

// Add records e, setting its ID and, when zero, its time, and returns it as stored. A nil log
// drops the event, so servers made without a Registry need no special case.
func (l *EventLog) Add(e Event) Event {
	if l == nil {
		return e
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last++
	e.ID = l.last
	l.ring[l.next] = e
	l.next++
	if l.next == len(l.ring) {
		l.next, l.full = 0, true
	}
	return e
}

// Since returns the events with an ID above id that the ring still holds, oldest first, at most
// limit of the newest (limit <= 0: all).
func (l *EventLog) Since(id uint64, limit int) []Event {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.next
	if l.full {
		n = len(l.ring)
	}
	out := make([]Event, 0, n)
	start := 0
	if l.full {
		start = l.next
	}
	for i := range n {
		e := l.ring[(start+i)%len(l.ring)]
		if e.ID > id {
			out = append(out, e)
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

// Last is the ID of the newest event; 0 before the first.
func (l *EventLog) Last() uint64 {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}
