package sinks

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/IBM/sarama"
)

// ensureCheckpointTopic creates topic with one partition and cleanup.policy=compact unless
// it exists, and refuses an existing topic that is not compacted: its checkpoints would
// expire with the retention time. It asks whether the topic exists before creating it, so
// that a topic made beforehand serves a principal the brokers' ACLs do not let create
// topics.
func ensureCheckpointTopic(ctx context.Context, client sarama.Client, topic string) error {
	_, err := runBlocking(ctx, func() (struct{}, error) {
		// The admin shares client; it is not closed, as that would close client.
		admin, err := sarama.NewClusterAdminFromClient(client)
		if err != nil {
			return struct{}{}, fmt.Errorf("finding the Kafka controller: %w", err)
		}
		// A metadata request that does not allow auto-creation.
		meta, err := admin.DescribeTopics([]string{topic})
		if err != nil {
			return struct{}{}, fmt.Errorf("asking whether checkpoint topic %s (kafka.checkpoint_topic) exists: %w", topic, err)
		}
		if len(meta) != 1 || !errors.Is(meta[0].Err, sarama.ErrNoError) {
			compact := "compact"
			err = admin.CreateTopic(topic, &sarama.TopicDetail{
				NumPartitions: 1, ReplicationFactor: -1,
				ConfigEntries: map[string]*string{"cleanup.policy": &compact},
			}, false)
			switch {
			case err == nil:
				return struct{}{}, nil
			case !errors.Is(err, sarama.ErrTopicAlreadyExists): // another instance made it meanwhile
				return struct{}{}, fmt.Errorf("creating checkpoint topic %s (kafka.checkpoint_topic): %w", topic, err)
			}
		}
		entries, err := admin.DescribeConfig(sarama.ConfigResource{
			Type: sarama.TopicResource, Name: topic, ConfigNames: []string{"cleanup.policy"},
		})
		if err != nil {
			return struct{}{}, fmt.Errorf("describing checkpoint topic %s: %w", topic, err)
		}
		for _, e := range entries {
			if e.Name == "cleanup.policy" && !slices.Contains(strings.Split(e.Value, ","), "compact") {
				return struct{}{}, fmt.Errorf("checkpoint topic %s (kafka.checkpoint_topic) has cleanup.policy=%s, want compact: its checkpoints would expire (kafka-configs --alter --entity-type topics --entity-name %s --add-config cleanup.policy=compact)", topic, e.Value, topic)
			}
		}
		return struct{}{}, nil
	}, nil)
	return err
}

// ReadCheckpoints reads topic from its start with isolation read_committed, up to its last
// stable offset at the time of the call, and returns the last value per key (tombstones
// delete keys). A missing topic reads as empty. It blocks until done or ctx ends.
//
// Call it after NewTransactional with the daemon's transactional id has returned: only
// then has the broker finished (committed or aborted) a transaction the previous instance
// left open, so that the last stable offset covers everything that will ever commit.
//
// It fetches with sarama's low-level Fetch rather than its consumer, because a
// read_committed consumer never delivers the commit and abort markers, so it cannot tell
// "caught up to the end" from "waiting for more" when the log ends with a marker (which
// a transactional log almost always does).
func ReadCheckpoints(ctx context.Context, brokers []string, sec Security, topic string) (map[string][]byte, error) {
	sc, err := newClientConfig("stocksync-checkpoint-reader", sec)
	if err != nil {
		return nil, err
	}
	sc.Metadata.AllowAutoTopicCreation = false
	client, err := connect(ctx, brokers, sec, sc)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	out, err := runBlocking(ctx, func() (map[string][]byte, error) {
		return readCheckpoints(ctx, client, topic)
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("reading checkpoint topic %s: %w", topic, err)
	}
	return out, nil
}

func readCheckpoints(ctx context.Context, client sarama.Client, topic string) (map[string][]byte, error) {
	out := map[string][]byte{}
	partitions, err := client.Partitions(topic)
	if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing partitions: %w", err)
	}
	// Checkpoints are keyed and hash-partitioned, so with several partitions (a topic
	// made by hand) the order per key still holds.
	for _, p := range partitions {
		if err := readCheckpointPartition(ctx, client, topic, p, out); err != nil {
			return nil, fmt.Errorf("partition %d: %w", p, err)
		}
	}
	return out, nil
}

func readCheckpointPartition(ctx context.Context, client sarama.Client, topic string, partition int32, out map[string][]byte) error {
	leader, err := client.Leader(topic, partition)
	if err != nil {
		return fmt.Errorf("finding the leader: %w", err)
	}
	start, err := client.GetOffset(topic, partition, sarama.OffsetOldest)
	if err != nil {
		return fmt.Errorf("asking for the log start offset: %w", err)
	}
	end, err := lastStableOffset(leader, client.Config().Version, topic, partition)
	if err != nil {
		return err
	}
	const maxFetchBytes = 64 << 20
	fetchBytes := int32(1 << 20)
	for offset := start; offset < end; {
		if err := ctx.Err(); err != nil {
			return err
		}
		req := &sarama.FetchRequest{Version: 4, MaxWaitTime: 500, MinBytes: 1, MaxBytes: fetchBytes, Isolation: sarama.ReadCommitted}
		req.AddBlock(topic, partition, offset, fetchBytes, -1)
		resp, err := leader.Fetch(req)
		if err != nil {
			return fmt.Errorf("fetching from offset %d: %w", offset, err)
		}
		block := resp.GetBlock(topic, partition)
		if block == nil {
			return fmt.Errorf("fetching from offset %d: %w", offset, sarama.ErrIncompleteResponse)
		}
		if !errors.Is(block.Err, sarama.ErrNoError) {
			return fmt.Errorf("fetching from offset %d: %w", offset, block.Err)
		}
		next, err := applyCommittedBatches(block, offset, end, out)
		if err != nil {
			return err
		}
		if next == offset { // nothing whole came back: a batch larger than we asked for
			if fetchBytes >= maxFetchBytes {
				return fmt.Errorf("no progress fetching from offset %d (last stable offset %d)", offset, end)
			}
			fetchBytes *= 2
			continue
		}
		offset = next
	}
	return nil
}

// lastStableOffset asks the leader for the partition's last stable offset: the end of
// the log as a read_committed reader sees it.
func lastStableOffset(leader *sarama.Broker, version sarama.KafkaVersion, topic string, partition int32) (int64, error) {
	req := sarama.NewOffsetRequest(version)
	req.IsolationLevel = sarama.ReadCommitted
	req.AddBlock(topic, partition, sarama.OffsetNewest, 1)
	resp, err := leader.GetAvailableOffsets(req)
	if err != nil {
		return 0, fmt.Errorf("asking for the last stable offset: %w", err)
	}
	b := resp.GetBlock(topic, partition)
	switch {
	case b == nil:
		return 0, fmt.Errorf("asking for the last stable offset: %w", sarama.ErrIncompleteResponse)
	case !errors.Is(b.Err, sarama.ErrNoError):
		return 0, fmt.Errorf("asking for the last stable offset: %w", b.Err)
	case b.Offset >= 0:
		return b.Offset, nil
	case len(b.Offsets) == 1:
		return b.Offsets[0], nil
	}
	return 0, fmt.Errorf("asking for the last stable offset: no offset in the answer")
}

// applyCommittedBatches applies to out the data records of block at offsets [from, end)
// that belong to committed transactions (or to no transaction), and returns the offset
// to fetch next. It follows Kafka's read_committed rule: a transactional batch of a
// producer is aborted from the first offset of an aborted transaction the broker lists
// until that producer's abort marker.
func applyCommittedBatches(block *sarama.FetchResponseBlock, from, end int64, out map[string][]byte) (int64, error) {
	aborted := slices.Clone(block.AbortedTransactions)
	slices.SortFunc(aborted, func(a, b *sarama.AbortedTransaction) int { return int(a.FirstOffset - b.FirstOffset) })
	abortedPIDs := map[int64]bool{}
	next := from
	for _, rs := range block.RecordsSet {
		b := rs.RecordBatch
		if b == nil {
			return 0, errors.New("legacy message format in the checkpoint topic: not written by stocksync")
		}
		if b.PartialTrailingRecord {
			break
		}
		last := b.FirstOffset + int64(b.LastOffsetDelta)
		if last < from {
			continue
		}
		for len(aborted) > 0 && aborted[0].FirstOffset <= last {
			abortedPIDs[aborted[0].ProducerID] = true
			aborted = aborted[1:]
		}
		next = last + 1
		switch {
		case b.Control:
			if len(b.Records) > 0 && isAbortMarker(b.Records[0].Key) {
				delete(abortedPIDs, b.ProducerID)
			}
			continue
		case b.IsTransactional && abortedPIDs[b.ProducerID]:
			continue
		}
		for _, r := range b.Records {
			off := b.FirstOffset + r.OffsetDelta
			if off < from || off >= end {
				continue
			}
			if r.Value == nil {
				delete(out, string(r.Key))
			} else {
				out[string(r.Key)] = slices.Clone(r.Value)
			}
		}
		if next >= end {
			break
		}
	}
	return next, nil
}

// isAbortMarker reads a control record key: version int16, type int16 (0 abort, 1 commit).
func isAbortMarker(key []byte) bool {
	return len(key) >= 4 && binary.BigEndian.Uint16(key[2:4]) == 0
}
