package canal

// SetRowPlans switches the rows plans (rowsplan.go) on or off for a test and returns the
// number of rows events they decoded so far, and how many of those the parser goroutine
// decoded ahead of the reader.
func SetRowPlans(on bool) (planned, ahead uint64) {
	rowPlansEnabled = on
	return plannedEvents.Load(), decodedAhead.Load()
}

// StopConfirming stops l's confirmations of its lock as a stalled host would, without
// closing Lost: only the lease's own expiry can then end Held.
func StopConfirming(l *Leadership) {
	l.stop()
	<-l.done
}

// SetChunkBytes sets the size of row values at which r's chunks end early (ReadChunks
// takes DefaultChunkBytes); call it before the first Next.
func (r *ChunkReader) SetChunkBytes(n int64) { r.bytes = n }
