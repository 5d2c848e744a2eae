package relay

// End tells how a session ended (Session.Ended).
type End uint8

const (
	EndClosed End = iota // both directions reached EOF and were passed on
	EndIdle              // no byte moved either way for the idle timeout
	EndError             // a read, write or splice failed (a reset, for one)
	EndKilled            // Close ended it
)
