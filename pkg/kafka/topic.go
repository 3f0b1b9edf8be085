package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// EnsureTopic makes sure the topic exists, creating it with partitions and
// the given topic configs when it does not, and returns its partition
// count. An existing topic is left as it is: changing a topic's partition
// count moves every stream to a different partition, which is a deliberate
// operation, not a side effect of a restart.
func EnsureTopic(ctx context.Context, cl *kgo.Client, topic string, partitions int, configs map[string]*string) (int, error) {
	adm := kadm.NewClient(cl)
	n, err := topicPartitions(ctx, adm, topic)
	if err == nil {
		return n, nil
	}
	if !errors.Is(err, kerr.UnknownTopicOrPartition) {
		return 0, err
	}
	if partitions < 1 {
		return 0, fmt.Errorf("kafka: topic %q does not exist and auto-creation is disabled", topic)
	}
	resp, err := adm.CreateTopic(ctx, int32(partitions), -1, configs, topic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return 0, fmt.Errorf("kafka: creating topic %q: %w", topic, err)
	}
	if err == nil {
		return int(resp.NumPartitions), nil
	}
	return topicPartitions(ctx, adm, topic)
}

// TopicPartitions returns the partition count of an existing topic.
func TopicPartitions(ctx context.Context, cl *kgo.Client, topic string) (int, error) {
	return topicPartitions(ctx, kadm.NewClient(cl), topic)
}

func topicPartitions(ctx context.Context, adm *kadm.Client, topic string) (int, error) {
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("kafka: listing topic %q: %w", topic, err)
	}
	d, ok := details[topic]
	if !ok {
		return 0, kerr.UnknownTopicOrPartition
	}
	if d.Err != nil {
		return 0, d.Err
	}
	return len(d.Partitions), nil
}
