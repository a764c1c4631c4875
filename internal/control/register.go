package control

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"weft/internal/changefeed"
	"weft/internal/key"
	"weft/internal/store"
	"weft/internal/wire"
)

// register handles a RegisterRequest from the machine mk. Every refusal is
// in plain words that say what to do next.
func (s *Server) register(ctx context.Context, mk key.MachinePublic, ip string, req *wire.RegisterRequest, log *slog.Logger) *wire.RegisterResponse {
	refuse := func(code wire.ErrorCode, msg string) *wire.RegisterResponse {
		log.Info("registration refused", "code", code)
		return &wire.RegisterResponse{Error: &wire.ErrorMessage{Code: code, Message: msg}}
	}
	if !s.limiter.allow(ip) {
		return refuse(wire.CodeRateLimited, "too many registrations from this address; wait a minute and try again")
	}
	if s.m.discoTakenByOther(req.DiscoKey, mk) {
		return refuse(errDiscoTaken.Code, errDiscoTaken.Message)
	}
	var n store.Node
	var err error
	if req.AuthKey == "" {
		n, err = s.reRegister(ctx, mk, req)
	} else {
		hostname := ""
		if req.Hostinfo != nil {
			hostname = req.Hostinfo.Hostname
		}
		n, err = s.cfg.Store.Register(ctx, store.RegisterRequest{
			AuthKey:     req.AuthKey,
			MachineKey:  mk,
			NodeKey:     req.NodeKey,
			DiscoKey:    req.DiscoKey,
			Hostname:    hostname,
			Hostinfo:    req.Hostinfo,
			KeyLifetime: s.cfg.NodeKeyLifetime,
		})
	}
	var em *wire.ErrorMessage
	switch {
	case err == nil:
	case errors.As(err, &em):
		return refuse(em.Code, em.Message)
	case errors.Is(err, store.ErrKeyInvalid):
		return refuse(wire.CodeInvalidKey, "invalid auth key: the server knows no such key; check it, or create one with `weft admin keys create`")
	case errors.Is(err, store.ErrKeyExpired):
		return refuse(wire.CodeExpiredKey, "expired auth key: create a new one with `weft admin keys create`")
	case errors.Is(err, store.ErrKeyUsed):
		return refuse(wire.CodeKeyUsed, "auth key already used: it was a one-off key; create a new one (or a --reusable one)")
	case errors.Is(err, store.ErrExists):
		return refuse(wire.CodeBadRequest, "this node key belongs to another node; run `weft logout` and `weft up` again")
	case errors.Is(err, store.ErrInvalid):
		return refuse(wire.CodeBadRequest, "registration refused: "+err.Error())
	case store.Full(err):
		log.Error("registration failed: the disk is full", "err", err)
		return refuse(wire.CodeInternal, "the control server's disk is full, so it could not save this node (nothing was saved); "+
			"its administrator must free space there, then run weft up again")
	default:
		log.Error("registration failed", "err", err)
		if herr := s.Healthy(ctx); herr != nil {
			return refuse(wire.CodeInternal, "the control server cannot register nodes now ("+herr.Error()+"); try again later, or through another control server")
		}
		return refuse(wire.CodeInternal, "the server failed to register this node; try again later")
	}
	s.m.upsert(&n)
	s.out.nodes(changefeed.KindNode, n.ID)
	w := s.m.wireNode(n.ID)
	log.Info("node registered", "node", n.ID, "name", n.Name)
	return &wire.RegisterResponse{Node: w}
}

// reRegister handles a registration without a pre-auth key: a machine the
// server knows, whose node key is still valid, may take a new node key
// (rotation) keeping its identity, name and addresses.
func (s *Server) reRegister(ctx context.Context, mk key.MachinePublic, req *wire.RegisterRequest) (store.Node, error) {
	n, err := s.cfg.Store.GetNodeByMachineKey(ctx, mk)
	if errors.Is(err, store.ErrNotFound) {
		return n, &wire.ErrorMessage{Code: wire.CodeAuthRequired, Message: "this machine is not registered; give a pre-auth key (weft up --auth-key)"}
	}
	if err != nil {
		return n, err
	}
	if n.KeyExpired(s.cfg.Now()) {
		return n, expiredError(n.KeyExpiry)
	}
	if n.NodeKey != req.NodeKey {
		if n, err = s.cfg.Store.RotateNodeKey(ctx, n.ID, req.NodeKey); err != nil {
			return n, err
		}
	}
	if !req.DiscoKey.IsZero() || req.Hostinfo != nil {
		n, err = s.cfg.Store.UpdateNodeRuntime(ctx, n.ID, func(rt *store.NodeRuntime) {
			if !req.DiscoKey.IsZero() {
				rt.DiscoKey = req.DiscoKey
			}
			if req.Hostinfo != nil {
				rt.Hostinfo = req.Hostinfo
			}
		})
	}
	return n, err
}

// rateLimiter is a token bucket per source IP.
type rateLimiter struct {
	rate  float64 // tokens per second; negative: unlimited
	burst float64
	now   func() time.Time

	mu      sync.Mutex // guards buckets
	buckets map[string]*bucket
}

// bucket is a token bucket's level: tokens left at time last.
type bucket struct {
	tokens float64
	last   time.Time
}

// level is how many tokens b holds at now, refilled at rate per second
// since last, up to burst.
func (b *bucket) level(now time.Time, rate, burst float64) float64 {
	return min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
}

// take refills b up to now and takes a token if there is one.
func (b *bucket) take(now time.Time, rate, burst float64) bool {
	b.tokens, b.last = b.level(now, rate, burst), now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// maxBuckets bounds the limiter's memory; when reached, full buckets (those
// idle long enough to have refilled) are dropped.
const maxBuckets = 10000

func newRateLimiter(rate float64, burst int, now func() time.Time) *rateLimiter {
	return &rateLimiter{rate: rate, burst: float64(burst), now: now, buckets: map[string]*bucket{}}
}

func (l *rateLimiter) allow(ip string) bool {
	if l.rate < 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[ip]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			l.pruneLocked(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[ip] = b
	}
	return b.take(now, l.rate, l.burst)
}

// pruneLocked drops buckets that have refilled. l.mu is held.
func (l *rateLimiter) pruneLocked(now time.Time) {
	for ip, b := range l.buckets {
		if b.level(now, l.rate, l.burst) >= l.burst {
			delete(l.buckets, ip)
		}
	}
}
