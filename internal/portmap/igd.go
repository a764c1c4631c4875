package portmap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"time"

	"github.com/huin/goupnp"
	"github.com/huin/goupnp/dcps/internetgateway2"
	"github.com/huin/goupnp/soap"
)

// igdConn is the part of a WANIPConnection (v1 or v2) or WANPPPConnection
// service the mapper uses; goupnp generates the same methods for each.
type igdConn interface {
	AddPortMappingCtx(ctx context.Context, remoteHost string, externalPort uint16, protocol string,
		internalPort uint16, internalClient string, enabled bool, description string, leaseSeconds uint32) error
	DeletePortMappingCtx(ctx context.Context, remoteHost string, externalPort uint16, protocol string) error
	GetExternalIPAddressCtx(ctx context.Context) (string, error)
}

// upnpIGD maps ports with UPnP IGD: it finds the gateway's WAN connection
// service by SSDP and asks it over SOAP. Only a device served from the
// default gateway's own address is used: any host on the LAN can answer
// an SSDP search, and a mapping asked of an impostor would publish an
// address that is not this node's.
type upnpIGD struct {
	conn igdConn    // the service found, nil before the first success
	gw   netip.Addr // the gateway conn belongs to
}

// upnpDescription names weft's mappings in the router's table.
const upnpDescription = "weft"

// upnpErrOnlyPermanentLeases is UPnP IGD's error 725: the device does
// not take a lease time, only permanent mappings (which weft deletes when
// it stops).
const upnpErrOnlyPermanentLeases = 725

func (u *upnpIGD) find(ctx context.Context, gw netip.Addr) (igdConn, error) {
	if u.conn != nil && u.gw == gw {
		return u.conn, nil
	}
	var errs []error
	for _, target := range igdTargets {
		devs, err := goupnp.DiscoverDevicesCtx(ctx, target)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, d := range devs {
			if d.Root == nil || d.Location == nil || !fromGateway(d.Location, gw) {
				continue
			}
			if c := firstWANConn(d.Root, d.Location); c != nil {
				u.conn, u.gw = c, gw
				return c, nil
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("portmap: UPnP search: %w", err)
	}
	return nil, fmt.Errorf("portmap: no UPnP IGD on the gateway %s", gw)
}

// fromGateway reports whether a device description URL is served by gw.
func fromGateway(loc *url.URL, gw netip.Addr) bool {
	a, err := netip.ParseAddr(loc.Hostname())
	return err == nil && a.Unmap() == gw
}

// firstWANConn returns the device's WAN connection service, preferring
// IP connections (v2, then v1) to PPP.
func firstWANConn(root *goupnp.RootDevice, loc *url.URL) igdConn {
	if cs, err := internetgateway2.NewWANIPConnection2ClientsFromRootDevice(root, loc); err == nil && len(cs) > 0 {
		return cs[0]
	}
	if cs, err := internetgateway2.NewWANIPConnection1ClientsFromRootDevice(root, loc); err == nil && len(cs) > 0 {
		return cs[0]
	}
	if cs, err := internetgateway2.NewWANPPPConnection1ClientsFromRootDevice(root, loc); err == nil && len(cs) > 0 {
		return cs[0]
	}
	return nil
}

// mapPort maps UDP port on the gateway to the same external port, for
// life (or permanently where the device takes no lease time), and returns
// the public address:port and the time after which to renew.
func (u *upnpIGD) mapPort(ctx context.Context, gw netip.Addr, port uint16, life time.Duration) (netip.AddrPort, time.Duration, error) {
	c, err := u.find(ctx, gw)
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	local, err := localAddrToward(gw)
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	lease := uint32(life / time.Second)
	err = c.AddPortMappingCtx(ctx, "", port, "UDP", port, local.String(), true, upnpDescription, lease)
	if err != nil && isUPnPError(err, upnpErrOnlyPermanentLeases) {
		lease = 0
		err = c.AddPortMappingCtx(ctx, "", port, "UDP", port, local.String(), true, upnpDescription, 0)
	}
	if err != nil {
		u.conn = nil // look for the device again next time
		return netip.AddrPort{}, 0, fmt.Errorf("portmap: UPnP map UDP %d: %w", port, err)
	}
	ext, err := c.GetExternalIPAddressCtx(ctx)
	if err != nil {
		return netip.AddrPort{}, 0, fmt.Errorf("portmap: UPnP external address: %w", err)
	}
	addr, err := netip.ParseAddr(ext)
	if err != nil || !addr.Is4() || !addr.IsGlobalUnicast() {
		return netip.AddrPort{}, 0, fmt.Errorf("portmap: UPnP gave an unusable external address %q", ext)
	}
	if lease == 0 {
		// A permanent mapping is still refreshed now and then, in case
		// the router restarted and forgot it.
		life = DefaultLifetime
	}
	return netip.AddrPortFrom(addr, port), life, nil
}

// unmap deletes the mapping of port.
func (u *upnpIGD) unmap(ctx context.Context, port uint16) error {
	if u.conn == nil {
		return nil
	}
	return u.conn.DeletePortMappingCtx(ctx, "", port, "UDP")
}

// localAddrToward is this host's address on the link to gw: the internal
// client a UPnP mapping names (connecting a UDP socket sends nothing).
func localAddrToward(gw netip.Addr) (netip.Addr, error) {
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(gw, Port)))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("portmap: local address toward %s: %w", gw, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

// isUPnPError reports whether err is the device's SOAP fault with the
// given UPnP error code.
func isUPnPError(err error, code int) bool {
	var fe *soap.SOAPFaultError
	return errors.As(err, &fe) && fe.Detail.UPnPError.Errorcode == code
}
