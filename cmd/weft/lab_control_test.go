//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"weft/internal/localapi"
	"weft/internal/netlab/labtest"
	"weft/internal/scenario"
)

// TestLabControlPlane runs the control server on ctrl and daemons on busan,
// mac and pc behind the seed's NATs: each lists the other two online; after
// a kill -9 and restart of the server the nodes reconnect by themselves and
// keep their addresses.
func TestLabControlPlane(t *testing.T) {
	labtest.SkipUnlessRoot(t)
	lab := labtest.Seed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	hosts := []string{"busan", "mac", "pc"}
	tn := labtest.StartTailnet(t, ctx, lab, scenario.Options{Hosts: hosts})
	// allSeeAll waits until every host runs and lists the other two
	// online, and returns each host's own addresses.
	allSeeAll := func(what string) map[string]string {
		addrs := map[string]string{}
		err := scenario.WaitFor(ctx, 90*time.Second, what, func() (bool, error) {
			for _, h := range hosts {
				st, err := tn.Status(ctx, h)
				if err != nil {
					return false, err
				}
				if st.BackendState != localapi.StateRunning || st.Self == nil {
					return false, nil
				}
				var online []string
				for _, p := range st.Peers {
					if p.Online {
						online = append(online, p.Name)
					}
				}
				want := slices.DeleteFunc(slices.Clone(hosts), func(x string) bool { return x == h })
				slices.Sort(online)
				slices.Sort(want)
				if !slices.Equal(online, want) {
					return false, nil
				}
				addrs[h] = fmt.Sprint(st.Self.Addresses)
			}
			return true, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return addrs
	}
	before := allSeeAll("every node sees the other two")

	if err := tn.KillServer(); err != nil {
		t.Fatal(err)
	}
	if err := tn.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	// The new server process sees all three streams: the daemons came
	// back by themselves, nobody ran up again.
	err := scenario.WaitFor(ctx, 90*time.Second, "the restarted server sees every node online", func() (bool, error) {
		out, err := tn.Admin(ctx, "nodes", "list", "--json")
		if err != nil {
			return false, err
		}
		var nodes []struct {
			Name   string `json:"name"`
			Online *bool  `json:"online"`
		}
		if err := json.Unmarshal(out, &nodes); err != nil {
			return false, fmt.Errorf("nodes list --json: %w: %s", err, out)
		}
		online := 0
		for _, n := range nodes {
			if n.Online != nil && *n.Online {
				online++
			}
		}
		return online == len(hosts), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	after := allSeeAll("every node back after the server's kill -9")
	for _, h := range hosts {
		if before[h] != after[h] {
			t.Errorf("%s's addresses changed across the server restart: %s -> %s", h, before[h], after[h])
		}
	}
}
