package main

import (
	"encoding/json"
	"fmt"
	"github.com/waage/waage/internal/adminapi"
	"net/http"
	"strings"
	"time"
)

// bgp shows the BGP speaker: the decision and its reason, the prefixes, then one line per peer.
func (c *ctl) bgp() error {
	var raw json.RawMessage
	if err := c.call(http.MethodGet, "/api/bgp", nil, &raw); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	var st adminapi.BGP
	if err := json.Unmarshal(raw, &st); err != nil {
		return err
	}
	if !st.Enabled {
		if st.Drained {
			fmt.Fprintln(c.out, "BGP is not configured; the node is drained")
			return nil
		}
		fmt.Fprintln(c.out, "BGP is not configured")
		return nil
	}
	state := "withdrawn"
	if st.Announcing {
		state = "announcing"
	}
	since := ""
	if st.Since != nil {
		since = " for " + time.Since(*st.Since).Round(time.Second).String()
	}
	fmt.Fprintf(c.out, "AS %d, router ID %s: %s%s (%s)\n", st.LocalAS, st.RouterID, state, since, st.Reason)
	var prefixes, trackers []string
	for _, p := range st.Prefixes {
		verdict := "withdrawn"
		if p.Announced {
			verdict = "announced"
		}
		prefixes = append(prefixes, p.Prefix+" "+verdict)
	}
	fmt.Fprintf(c.out, "prefixes: %s\n", strings.Join(prefixes, ", "))
	for _, t := range st.Trackers {
		verdict := "healthy"
		if !t.Healthy {
			verdict = "no healthy server"
		}
		trackers = append(trackers, t.Backend+" "+verdict)
	}
	if len(trackers) > 0 {
		fmt.Fprintf(c.out, "tracking: %s\n", strings.Join(trackers, ", "))
	}
	fmt.Fprintln(c.out)
	tw := newTable(c.out, "PEER", "AS", "STATE", "FOR", "RECEIVED", "ADVERTISED", "LAST ERROR")
	for _, p := range st.Peers {
		dur := "-"
		if p.Since != nil {
			dur = time.Since(*p.Since).Round(time.Second).String()
		}
		lastErr := p.LastError
		if lastErr == "" {
			lastErr = "-"
		}
		row(tw, p.Address, p.AS, p.State, dur, p.Received, p.Advertised, lastErr)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if st.LastError != "" {
		fmt.Fprintln(c.out, "last error: "+st.LastError)
	}
	return nil
}

// node drains or undrains the whole node: POST /api/node/drain or /api/node/undrain.
func (c *ctl) node(action string) error {
	var out struct {
		Drained bool `json:"drained"`
		Changed bool `json:"changed"`
	}
	if err := c.call(http.MethodPost, "/api/node/"+action, nil, &out); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(out)
	}
	switch {
	case out.Drained && out.Changed:
		fmt.Fprintln(c.out, "node drained: routes withdrawn; open connections are served on")
	case out.Drained:
		fmt.Fprintln(c.out, "node was already drained")
	case out.Changed:
		fmt.Fprintln(c.out, "node undrained: routes announced again while it can serve")
	default:
		fmt.Fprintln(c.out, "node was not drained")
	}
	return nil
}
