package pipeline

// ResyncWaiting reports whether a resync was asked that the reading goroutine has not
// taken up yet.
func (p *Pipeline) ResyncWaiting() bool { return len(p.resyncs) > 0 }
