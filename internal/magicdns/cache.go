package magicdns

import (
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Cache lifetimes: answers are kept for their smallest TTL, at most
// maxCacheTTL; negative answers (NXDOMAIN, or no records of the type) for
// the SOA's TTL and minimum (RFC 2308), or negativeNoSOA without one.
const (
	maxCacheTTL   = 24 * time.Hour
	negativeNoSOA = 5 * time.Second
)

type cacheKey struct {
	name          string
	qtype, qclass uint16
	do, cd        bool
}

type cacheEntry struct {
	msg     *dns.Msg
	stored  time.Time
	expires time.Time
}

// cache holds upstream answers. When full, an expired entry or else an
// arbitrary one makes room: a bound matters more than which entry goes.
type cache struct {
	max int // <= 0: disabled

	mu      sync.Mutex // guards entries
	entries map[cacheKey]cacheEntry
}

func newCache(max int) *cache {
	return &cache{max: max, entries: map[cacheKey]cacheEntry{}}
}

func (c *cache) clear() {
	c.mu.Lock()
	clear(c.entries)
	c.mu.Unlock()
}

// get returns a copy of the cached answer with its TTLs lowered by the
// time it spent in the cache, or nil.
func (c *cache) get(k cacheKey, now time.Time) *dns.Msg {
	if c.max <= 0 {
		return nil
	}
	c.mu.Lock()
	e, ok := c.entries[k]
	if ok && !now.Before(e.expires) {
		delete(c.entries, k)
		ok = false
	}
	c.mu.Unlock()
	if !ok {
		return nil
	}
	m := e.msg.Copy()
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if h := rr.Header(); h.Rrtype != dns.TypeOPT {
				h.Ttl -= min(h.Ttl, age)
			}
		}
	}
	return m
}

func (c *cache) put(k cacheKey, m *dns.Msg, now time.Time) {
	ttl, ok := cacheTTL(m)
	if c.max <= 0 || !ok || ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, exists := c.entries[k]; !exists && len(c.entries) >= c.max {
		c.evictLocked(now)
	}
	c.entries[k] = cacheEntry{msg: m.Copy(), stored: now, expires: now.Add(ttl)}
}

// evictLocked drops expired entries, or one arbitrary entry if none.
func (c *cache) evictLocked(now time.Time) {
	n := 0
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
			n++
		}
	}
	if n > 0 {
		return
	}
	for k := range c.entries {
		delete(c.entries, k)
		return
	}
}

// cacheTTL says how long m may be cached and whether at all (only
// NOERROR and NXDOMAIN answers are).
func cacheTTL(m *dns.Msg) (time.Duration, bool) {
	if m.Truncated || (m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError) {
		return 0, false
	}
	if m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0 {
		least := uint32(maxCacheTTL / time.Second)
		for _, rr := range m.Answer {
			least = min(least, rr.Header().Ttl)
		}
		return time.Duration(least) * time.Second, true
	}
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second, true
		}
	}
	return negativeNoSOA, true
}
