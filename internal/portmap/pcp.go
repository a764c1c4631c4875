package portmap

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// PCP (RFC 6887) constants used by the probe.
const (
	pcpVersion      = 2
	pcpOpAnnounce   = 0
	pcpResponseBit  = 0x80
	pcpHeaderLen    = 24
	pcpResultOK     = 0
	pcpMaxPacketLen = 1100 // RFC 6887 section 7
)

// pcpResponse is the common header of a PCP response.
type pcpResponse struct {
	Opcode     uint8
	ResultCode uint8
	Lifetime   uint32
	Epoch      uint32
}

// appendPCPAnnounce appends an ANNOUNCE request from clientIP. ANNOUNCE
// asks for nothing: a server answering it is a server that speaks PCP.
func appendPCPAnnounce(b []byte, clientIP netip.Addr) []byte {
	b = append(b, pcpVersion, pcpOpAnnounce, 0, 0)
	b = binary.BigEndian.AppendUint32(b, 0) // requested lifetime
	// As16 of an IPv4 address is its IPv4-mapped form, which is how PCP
	// carries IPv4 addresses.
	a := clientIP.As16()
	return append(b, a[:]...)
}

var errNotPCP = errors.New("portmap: not a PCP response")

// parsePCPResponse decodes the header of a PCP response. It rejects
// anything that is not version 2 with the response bit set, so a NAT-PMP
// server's "unsupported version" answer (version 0) is not taken for PCP.
func parsePCPResponse(b []byte) (pcpResponse, error) {
	if len(b) < pcpHeaderLen || len(b) > pcpMaxPacketLen || len(b)%4 != 0 {
		return pcpResponse{}, errNotPCP
	}
	if b[0] != pcpVersion || b[1]&pcpResponseBit == 0 {
		return pcpResponse{}, errNotPCP
	}
	return pcpResponse{
		Opcode:     b[1] &^ pcpResponseBit,
		ResultCode: b[3],
		Lifetime:   binary.BigEndian.Uint32(b[4:8]),
		Epoch:      binary.BigEndian.Uint32(b[8:12]),
	}, nil
}

// probePCP sends ANNOUNCE to server and reports whether a successful PCP
// answer came back before ctx is done. It resends a few times, since the
// first datagram on a quiet link can be lost.
func probePCP(ctx context.Context, server netip.AddrPort) (bool, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", server.String())
	if err != nil {
		return false, fmt.Errorf("portmap: PCP: %w", err)
	}
	defer c.Close()
	uc := c.(*net.UDPConn)
	stop := context.AfterFunc(ctx, func() { uc.SetReadDeadline(time.Now()) })
	defer stop()
	local := uc.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	req := appendPCPAnnounce(nil, local)

	buf := make([]byte, pcpMaxPacketLen+1)
	resend := 250 * time.Millisecond
	for {
		if _, err := uc.Write(req); err != nil {
			return false, fmt.Errorf("portmap: PCP: %w", err)
		}
		uc.SetReadDeadline(time.Now().Add(resend))
		if ctx.Err() != nil {
			uc.SetReadDeadline(time.Now())
		}
		for {
			n, from, err := uc.ReadFromUDPAddrPort(buf)
			if err != nil {
				if ctx.Err() != nil {
					return false, ctx.Err()
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // resend
				}
				// Usually "connection refused": an ICMP port
				// unreachable says nothing listens.
				return false, fmt.Errorf("portmap: PCP: %w", err)
			}
			if from.Addr().Unmap() != server.Addr().Unmap() {
				continue
			}
			r, err := parsePCPResponse(buf[:n])
			if err != nil || r.Opcode != pcpOpAnnounce {
				continue
			}
			if r.ResultCode != pcpResultOK {
				return false, fmt.Errorf("portmap: PCP: result code %d", r.ResultCode)
			}
			return true, nil
		}
	}
}
