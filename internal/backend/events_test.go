package backend

import (
	"errors"
	"fmt"
	"testing"
)

func TestEventLogRing(t *testing.T) {
	l := NewEventLog(3)
	if got := l.Since(0, 0); len(got) != 0 {
		t.Fatalf("empty log: %v", got)
	}
	for i := range 5 {
		l.Add(Event{Kind: "k", To: fmt.Sprint(i)})
	}
	got := l.Since(0, 0)
	if len(got) != 3 || got[0].To != "2" || got[2].To != "4" || got[0].ID != 3 || got[2].ID != 5 {
		t.Fatalf("Since(0) = %+v, want the last three (ids 3..5), oldest first", got)
	}
	if got := l.Since(4, 0); len(got) != 1 || got[0].ID != 5 {
		t.Errorf("Since(4) = %+v, want id 5", got)
	}
	if got := l.Since(0, 2); len(got) != 2 || got[0].ID != 4 {
		t.Errorf("Since(0, limit 2) = %+v, want ids 4 and 5", got)
	}
	if l.Last() != 5 {
		t.Errorf("Last = %d, want 5", l.Last())
	}
	if got[0].Time.IsZero() {
		t.Error("Add did not set the time")
	}
	var nilLog *EventLog
	nilLog.Add(Event{})
	if nilLog.Since(0, 0) != nil || nilLog.Last() != 0 {
		t.Error("a nil log must be empty")
	}
}

// TestServerEvents: health, ejection and configured state and weight changes are recorded for
// servers of a registry, each once per change.
func TestServerEvents(t *testing.T) {
	r := NewRegistry()
	s, _ := r.Server(Key{Backend: "b", Name: "s1", Address: "127.0.0.1:1"})
	s.ApplyConfig(1, Ready) // a new server: no event
	s.RecordCheck(errors.New("connect: connection refused"), 0)
	s.SetHealthy(false)
	s.SetHealthy(false) // no change, no event
	s.SetHealthy(true)
	s.SetEjected(true)
	s.SetEjected(false)
	s.ApplyConfig(1, Ready) // unchanged
	s.ApplyConfig(2, Drain)
	want := []string{
		"health up->down (connect: connection refused) by check",
		"health down->up () by check",
		"ejection in->ejected () by outlier",
		"ejection ejected->in () by outlier",
		"weight 1->2 () by config",
		"state ready->drain () by config",
	}
	got := r.Events().Since(0, 0)
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(got), len(want), got)
	}
	for i, e := range got {
		if s := fmt.Sprintf("%s %s->%s (%s) by %s", e.Kind, e.From, e.To, e.Detail, e.Source); s != want[i] || e.Backend != "b" || e.Server != "s1" {
			t.Errorf("event %d = %q (%s/%s), want %q", i, s, e.Backend, e.Server, want[i])
		}
	}
	// A server made without a registry records nothing and does not fail.
	NewServer("b", "x", "127.0.0.1:2").SetHealthy(false)
}

func TestRecordResponse(t *testing.T) {
	s := NewServer("b", "s", "127.0.0.1:1")
	s.RecordResponse(204, 10, 20, 0)
	s.RecordResponse(503, 0, 5, 0)
	s.RecordResponse(999, 0, 0, 0)
	if s.Responses[2].Load() != 1 || s.Responses[5].Load() != 1 || s.Responses[0].Load() != 1 {
		t.Errorf("by class: %d %d %d", s.Responses[2].Load(), s.Responses[5].Load(), s.Responses[0].Load())
	}
	if s.BytesIn.Load() != 10 || s.BytesOut.Load() != 25 || s.Duration.Snapshot().Count != 3 {
		t.Errorf("bytes %d/%d, durations %d", s.BytesIn.Load(), s.BytesOut.Load(), s.Duration.Snapshot().Count)
	}
}
