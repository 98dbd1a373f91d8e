package sinks

// Header is one Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Message is one record for a topic. The sink owns Key, Value and Headers once emitted:
// the caller must not change them afterwards.
type Message struct {
	Topic   string
	Key     []byte
	Value   []byte
	Headers []Header
}
