package controlclient

import "time"

// SetKeyFetchTimeout makes c's /key client give up after d instead of
// keyFetchTimeout, so a test of the bound need not wait ten seconds.
func SetKeyFetchTimeout(c *Client, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keyFetchTimeout = d
	if c.ownHTTP {
		c.hc = c.newHTTPClient(c.tlsConfig)
	}
}
