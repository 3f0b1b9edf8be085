package ring

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"time"

	"github.com/lokilab/lokilab/pkg/config"
)

// Config configures the ring and the memberlist node under it. The
// defaults are shrunk from Loki's so that effects show within seconds on
// one machine; each field says what moving it costs.
type Config struct {
	// NodeName is the memberlist node name, unique in the cluster.
	// Default: the instance ID.
	NodeName string `yaml:"node_name"`
	// BindAddr is the IP address memberlist listens on (UDP and TCP).
	// Default 127.0.0.1, which keeps a lab on one machine private; in
	// containers bind 0.0.0.0 and set AdvertiseAddr.
	BindAddr string `yaml:"bind_addr"`
	// BindPort is the port for both UDP and TCP. Default 7946; 0 picks a
	// free port (tests, several components in one process), which Addr
	// reports.
	BindPort int `yaml:"bind_port"`
	// AdvertiseAddr is the IP address other nodes reach this one at, when
	// it differs from BindAddr (NAT, 0.0.0.0). Default: BindAddr, or for
	// 0.0.0.0 the first private address.
	AdvertiseAddr string `yaml:"advertise_addr"`
	// AdvertisePort goes with AdvertiseAddr. Default: the bound port.
	AdvertisePort int `yaml:"advertise_port"`
	// JoinMembers are host:port addresses of nodes to join through; one
	// reachable member is enough. Run retries with backoff until one
	// answers. Empty: this node starts a cluster of its own (a seed).
	JoinMembers []string `yaml:"join_members,omitempty"`

	// GossipInterval is how often queued broadcasts are sent to three
	// random peers. Default 200ms (memberlist's LAN default). Lower
	// spreads changes faster for more packets per second.
	GossipInterval time.Duration `yaml:"gossip_interval"`
	// PushPullInterval is how often a node exchanges its full state with
	// one random peer over TCP: the anti-entropy that repairs lost
	// broadcasts. Default 10s (memberlist's is 30s, slow for a lab).
	// Lower converges faster after losses, for the full state in both
	// directions each time.
	PushPullInterval time.Duration `yaml:"push_pull_interval"`
	// LeaveTimeout bounds how long Run waits on exit for its final state
	// to be gossiped and for memberlist's leave message to go out.
	// Default 5s. A shorter wait risks others learning of the exit only
	// from the heartbeat timeout.
	LeaveTimeout time.Duration `yaml:"leave_timeout"`
	// LeftTombstoneTTL is how long the tombstone of a left or forgotten
	// instance (or a removed ownership) is kept before it is dropped.
	// Default 5m (Loki's left_ingesters_timeout). Shorter keeps the state
	// smaller; too short, and a node cut off for longer can bring the
	// entry back from its stale copy.
	LeftTombstoneTTL time.Duration `yaml:"left_tombstone_ttl"`

	// HeartbeatPeriod is how often an instance rewrites its heartbeat.
	// Default 1s (Loki: 5s). Each heartbeat is a broadcast to every node,
	// so the gossip load grows with instances/HeartbeatPeriod.
	HeartbeatPeriod time.Duration `yaml:"heartbeat_period"`
	// HeartbeatTimeout is the heartbeat age after which an instance is
	// unhealthy: no longer counted as a distributor, and its partitions
	// assigned to other ingesters. Default 10s (Loki: 1m). Lower fails over
	// sooner, and makes a long GC pause or a slow restart look like a
	// crash, moving partitions twice.
	HeartbeatTimeout time.Duration `yaml:"heartbeat_timeout"`
	// Partitions is the number of partitions that exist without being
	// gossiped (0..Partitions-1, ACTIVE): the Kafka topic's partition
	// count, and the same on every node. Default 12. Partitions added
	// later for scaling experiments are gossiped.
	Partitions int `yaml:"partitions"`
	// TokensPerPartition is how many points each partition has on the
	// token ring. Default 64. The share of streams a partition receives
	// varies by about 1/√tokens (±12% at 64); more tokens even it out for
	// a larger table (8 bytes per token) and one more comparison per
	// doubling in every lookup.
	TokensPerPartition int `yaml:"tokens_per_partition"`
}

// RegisterFlags registers the flags and sets the defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.NodeName, "memberlist.node-name", "", "Memberlist node name, unique in the cluster. Default: the instance ID.")
	fs.StringVar(&c.BindAddr, "memberlist.bind-addr", "127.0.0.1", "Address memberlist listens on (UDP and TCP).")
	fs.IntVar(&c.BindPort, "memberlist.bind-port", 7946, "Port memberlist listens on; 0 picks a free one.")
	fs.StringVar(&c.AdvertiseAddr, "memberlist.advertise-addr", "", "Address other nodes reach this one at. Default: derived from the bind address.")
	fs.IntVar(&c.AdvertisePort, "memberlist.advertise-port", 0, "Port other nodes reach this one at. Default: the bound port.")
	fs.Var((*config.CommaList)(&c.JoinMembers), "memberlist.join", "Comma-separated host:port list of members to join through. Empty: start a new cluster.")
	fs.DurationVar(&c.GossipInterval, "memberlist.gossip-interval", 200*time.Millisecond, "How often queued broadcasts are gossiped to random peers.")
	fs.DurationVar(&c.PushPullInterval, "memberlist.push-pull-interval", 10*time.Second, "How often the full state is exchanged with a random peer.")
	fs.DurationVar(&c.LeaveTimeout, "memberlist.leave-timeout", 5*time.Second, "How long to wait on exit for the final state and the leave message to be gossiped.")
	fs.DurationVar(&c.LeftTombstoneTTL, "memberlist.left-tombstone-ttl", 5*time.Minute, "How long tombstones of left instances and removed owners are kept.")
	fs.DurationVar(&c.HeartbeatPeriod, "ring.heartbeat-period", time.Second, "How often an instance writes its heartbeat.")
	fs.DurationVar(&c.HeartbeatTimeout, "ring.heartbeat-timeout", 10*time.Second, "Heartbeat age after which an instance is unhealthy.")
	fs.IntVar(&c.Partitions, "ring.partitions", 12, "Partitions that exist without being gossiped: the Kafka topic's partition count.")
	fs.IntVar(&c.TokensPerPartition, "ring.tokens-per-partition", 64, "Tokens per partition on the token ring.")
}

// Validate reports a configuration the ring cannot run with.
func (c *Config) Validate() error {
	switch {
	case net.ParseIP(c.BindAddr) == nil:
		// Memberlist would bind every interface for an address it cannot
		// parse; say so instead.
		return fmt.Errorf("ring: bind_addr %q is not an IP address", c.BindAddr)
	case c.AdvertiseAddr != "" && net.ParseIP(c.AdvertiseAddr) == nil:
		return fmt.Errorf("ring: advertise_addr %q is not an IP address", c.AdvertiseAddr)
	case c.BindPort < 0 || c.BindPort > 65535:
		return fmt.Errorf("ring: bind_port %d out of range", c.BindPort)
	case c.GossipInterval <= 0 || c.PushPullInterval <= 0:
		return errors.New("ring: gossip_interval and push_pull_interval must be positive")
	case c.HeartbeatPeriod <= 0:
		return errors.New("ring: heartbeat_period must be positive")
	case c.HeartbeatTimeout <= c.HeartbeatPeriod:
		return fmt.Errorf("ring: heartbeat_timeout %s must exceed heartbeat_period %s, or every instance flaps", c.HeartbeatTimeout, c.HeartbeatPeriod)
	case c.LeftTombstoneTTL <= 0 || c.LeaveTimeout < 0:
		return errors.New("ring: left_tombstone_ttl must be positive and leave_timeout not negative")
	case c.Partitions < 0 || c.Partitions > 1<<20:
		return fmt.Errorf("ring: partitions %d out of range", c.Partitions)
	case c.TokensPerPartition < 1 || c.TokensPerPartition > 1<<16:
		return fmt.Errorf("ring: tokens_per_partition %d out of range", c.TokensPerPartition)
	}
	return nil
}
