package sinks

// Stopped reports whether k's producer has returned every message it held.
func (k *Kafka) Stopped() bool {
	select {
	case <-k.done:
		return true
	default:
		return false
	}
}
