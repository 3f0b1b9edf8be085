package ring

import (
	"fmt"

	"github.com/hashicorp/memberlist"
)

// Option changes how New builds a ring node beyond its Config: hooks a
// lab or a test passes in code, never set from a file or a flag.
type Option func(*options)

type options struct {
	wrapTransport func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
}

// WithTransportWrapper has the node's memberlist traffic go through
// wrap(the usual UDP/TCP transport): the lab's network cut (pkg/netcut)
// drops gossip this way while the process keeps running.
func WithTransportWrapper(wrap func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport) Option {
	return func(o *options) { o.wrapTransport = wrap }
}

// applyTransport installs the wrapped transport on mc when an option asks
// for one. memberlist resolves a port-0 bind only for the transport it
// builds itself, so that is done here for the one built for wrapping.
func (o options) applyTransport(mc *memberlist.Config) error {
	if o.wrapTransport == nil {
		return nil
	}
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{mc.BindAddr}, BindPort: mc.BindPort, Logger: mc.Logger})
	if err != nil {
		return fmt.Errorf("ring: memberlist transport on %s:%d: %w", mc.BindAddr, mc.BindPort, err)
	}
	if mc.BindPort == 0 {
		mc.BindPort = nt.GetAutoBindPort()
		if mc.AdvertisePort == 0 {
			mc.AdvertisePort = mc.BindPort
		}
	}
	mc.Transport = o.wrapTransport(nt)
	return nil
}
