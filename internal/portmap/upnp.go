package portmap

import (
	"context"

	"github.com/huin/goupnp"
)

// igdTargets are the SSDP search targets of an Internet Gateway Device;
// version 2 devices do not always answer a version 1 search.
var igdTargets = [...]string{
	"urn:schemas-upnp-org:device:InternetGatewayDevice:1",
	"urn:schemas-upnp-org:device:InternetGatewayDevice:2",
}

// probeUPnP searches the local link for an Internet Gateway Device and
// reports whether one answered before ctx is done.
func probeUPnP(ctx context.Context) (bool, error) {
	type res struct {
		ok  bool
		err error
	}
	ch := make(chan res, len(igdTargets))
	for _, target := range igdTargets {
		go func() {
			devs, err := goupnp.DiscoverDevicesCtx(ctx, target)
			ok := false
			for _, d := range devs {
				if d.Root != nil || d.Location != nil {
					ok = true
				}
			}
			ch <- res{ok, err}
		}()
	}
	var firstErr error
	found := false
	for range igdTargets {
		r := <-ch
		found = found || r.ok
		if r.err != nil && firstErr == nil {
			firstErr = r.err
		}
	}
	if found {
		return true, nil
	}
	return false, firstErr
}
