package portmap

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// PCP MAP (RFC 6887 section 11): the request asks the gateway to forward
// an external port to one of ours; the response says which it gave.
const (
	pcpOpMap      = 1
	pcpMapLen     = 36 // the MAP opcode's payload after the header
	pcpNonceLen   = 12
	protoUDP      = 17
	pcpMapRespLen = pcpHeaderLen + pcpMapLen
)

// pcpResultNames are the result codes of RFC 6887 section 7.4, by value.
var pcpResultNames = []string{"SUCCESS", "UNSUPP_VERSION", "NOT_AUTHORIZED",
	"MALFORMED_REQUEST", "UNSUPP_OPCODE", "UNSUPP_OPTION", "MALFORMED_OPTION",
	"NETWORK_FAILURE", "NO_RESOURCES", "UNSUPP_PROTOCOL", "USER_EX_QUOTA",
	"CANNOT_PROVIDE_EXTERNAL", "ADDRESS_MISMATCH", "EXCESSIVE_REMOTE_PEERS"}

// pcpNonce identifies one mapping: a renewal or a deletion must carry the
// nonce the mapping was made with (RFC 6887 section 11.1).
type pcpNonce [pcpNonceLen]byte

func newPCPNonce() pcpNonce {
	var n pcpNonce
	rand.Read(n[:])
	return n
}

// pcpMapRequest is a MAP request for one UDP port.
type pcpMapRequest struct {
	Client   netip.Addr // our address as the gateway sees it
	Nonce    pcpNonce
	Port     uint16 // internal port
	Suggest  uint16 // suggested external port; 0 for any
	Lifetime uint32 // seconds; 0 deletes the mapping
}

// appendPCPMap appends r's MAP request. The suggested external address
// is the IPv4-mapped unspecified address: any external IPv4 address.
func appendPCPMap(b []byte, r pcpMapRequest) []byte {
	b = append(b, pcpVersion, pcpOpMap, 0, 0)
	b = binary.BigEndian.AppendUint32(b, r.Lifetime)
	c := r.Client.As16()
	b = append(b, c[:]...)
	b = append(b, r.Nonce[:]...)
	b = append(b, protoUDP, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, r.Port)
	b = binary.BigEndian.AppendUint16(b, r.Suggest)
	any4 := netip.IPv4Unspecified().As16()
	return append(b, any4[:]...)
}

// pcpMapResponse is a decoded MAP response.
type pcpMapResponse struct {
	pcpResponse
	Nonce    pcpNonce
	Protocol uint8
	Port     uint16 // internal port
	External netip.AddrPort
}

// errPCPMapShort is parsePCPMapResponse's error for a response without
// the MAP payload.
var errPCPMapShort = errors.New("portmap: PCP MAP response without its MAP payload")

// parsePCPMapResponse decodes a MAP response: the common header (see
// parsePCPResponse) and the MAP payload. Options after it are ignored. A
// response of another opcode, or shorter than a MAP response, is an
// error; a result code other than success is not (the caller reads it).
func parsePCPMapResponse(b []byte) (pcpMapResponse, error) {
	h, err := parsePCPResponse(b)
	if err != nil {
		return pcpMapResponse{}, err
	}
	if h.Opcode != pcpOpMap {
		return pcpMapResponse{}, fmt.Errorf("portmap: PCP response to opcode %d, not MAP", h.Opcode)
	}
	if len(b) < pcpMapRespLen {
		return pcpMapResponse{}, errPCPMapShort
	}
	p := b[pcpHeaderLen:]
	r := pcpMapResponse{pcpResponse: h, Protocol: p[12]}
	copy(r.Nonce[:], p[:pcpNonceLen])
	r.Port = binary.BigEndian.Uint16(p[16:18])
	ext := netip.AddrFrom16([16]byte(p[20:36])).Unmap()
	r.External = netip.AddrPortFrom(ext, binary.BigEndian.Uint16(p[18:20]))
	return r, nil
}

// pcpResultName names a PCP result code.
func pcpResultName(code uint8) string {
	if int(code) < len(pcpResultNames) {
		return pcpResultNames[code]
	}
	return fmt.Sprintf("result %d", code)
}

// pcpMap sends req to server and waits for the MAP response that answers
// it (same nonce, protocol and internal port), resending every 250 ms
// until ctx is done. A response with a result code other than success is
// an error naming it.
func pcpMap(ctx context.Context, server netip.AddrPort, req pcpMapRequest) (pcpMapResponse, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp4", server.String())
	if err != nil {
		return pcpMapResponse{}, fmt.Errorf("portmap: PCP: %w", err)
	}
	defer c.Close()
	uc := c.(*net.UDPConn)
	stop := context.AfterFunc(ctx, func() { uc.SetReadDeadline(time.Now()) })
	defer stop()
	if !req.Client.IsValid() {
		req.Client = uc.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	}
	msg := appendPCPMap(nil, req)
	buf := make([]byte, pcpMaxPacketLen+1)
	for {
		if _, err := uc.Write(msg); err != nil {
			return pcpMapResponse{}, fmt.Errorf("portmap: PCP: %w", err)
		}
		uc.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		if ctx.Err() != nil {
			uc.SetReadDeadline(time.Now())
		}
		for {
			n, from, err := uc.ReadFromUDPAddrPort(buf)
			if err != nil {
				if ctx.Err() != nil {
					return pcpMapResponse{}, fmt.Errorf("portmap: PCP: no answer from %v: %w", server, ctx.Err())
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // resend
				}
				return pcpMapResponse{}, fmt.Errorf("portmap: PCP: %w", err)
			}
			if from.Addr().Unmap() != server.Addr().Unmap() {
				continue
			}
			r, err := parsePCPMapResponse(buf[:n])
			if err != nil || r.Nonce != req.Nonce || r.Protocol != protoUDP || r.Port != req.Port {
				continue
			}
			if r.ResultCode != pcpResultOK {
				return r, fmt.Errorf("portmap: PCP MAP of UDP %d refused: %s", req.Port, pcpResultName(r.ResultCode))
			}
			return r, nil
		}
	}
}
