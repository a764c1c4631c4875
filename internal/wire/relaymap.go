package wire

// RelayMap lists the relay regions a node may use. It is configured on the
// control server and sent to nodes in the peer map.
type RelayMap struct {
	Regions map[int]*RelayRegion `json:"regions"`
}

// RelayRegion is a set of relay servers that forward to each other, so two
// nodes homed on different servers of one region still meet.
type RelayRegion struct {
	ID    int          `json:"id"`
	Code  string       `json:"code"` // short name, such as "tok"
	Name  string       `json:"name"` // for people, such as "Tokyo"
	Nodes []*RelayNode `json:"nodes"`
}

// RelayNode is one relay server.
type RelayNode struct {
	Name     string `json:"name"`
	RegionID int    `json:"region_id"`
	// Host is a DNS name or IP literal.
	Host string `json:"host"`
	// Port is the relay's HTTP(S) port; 0 means 443 with TLS, 80 without.
	Port int `json:"port,omitempty"`
	// STUNPort is the UDP STUN port; 0 means 3478, -1 means none.
	STUNPort int `json:"stun_port,omitempty"`
	// InsecureHTTP makes clients speak plain HTTP to this relay (labs, or
	// behind a TLS-terminating proxy). Relay frames are still sealed end to
	// end by WireGuard; only the relay handshake is unprotected by TLS.
	InsecureHTTP bool `json:"insecure_http,omitempty"`
}
