package main

import (
	"encoding/json"
	"fmt"
	"github.com/waage/waage/internal/adminapi"
	"net/http"
	"time"
)

// cluster serves `waage ctl nodes` (GET /api/nodes) and `waage ctl cluster` (GET /api/cluster).
func (c *ctl) cluster(cmd string) error {
	var raw json.RawMessage
	if err := c.call(http.MethodGet, "/api/"+cmd, nil, &raw); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	if cmd == "cluster" {
		var st adminapi.Cluster
		if err := json.Unmarshal(raw, &st); err != nil {
			return err
		}
		if !st.Enabled {
			fmt.Fprintln(c.out, "this waage is not part of a cluster (no etcd section)")
			return nil
		}
		conn := "connected"
		if !st.Connected {
			conn = "DISCONNECTED: serving the last configuration and state"
		}
		if st.Since != nil {
			conn += fmt.Sprintf(" (since %s)", st.Since.Local().Format("2006-01-02 15:04:05"))
		}
		fmt.Fprintf(c.out, "node:      %s\nprefix:    %s\netcd:      %v\nstate:     %s\nrevision:  %d\nnodes:     %d\n",
			st.Node, st.Prefix, st.Endpoints, conn, st.ConfigRevision, st.Nodes)
		if st.LastError != "" {
			at := ""
			if st.LastErrorAt != nil {
				at = " (" + time.Since(*st.LastErrorAt).Round(time.Second).String() + " ago)"
			}
			fmt.Fprintf(c.out, "last error: %s%s\n", st.LastError, at)
		}
		return nil
	}
	var out adminapi.ClusterNodes
	if err := json.Unmarshal(raw, &out); err != nil {
		return err
	}
	if len(out.Nodes) == 0 {
		fmt.Fprintln(c.out, "no cluster nodes (this waage has no etcd section, or has not reached etcd yet)")
		return nil
	}
	tw := newTable(c.out, "NODE", "STATE", "ADMIN", "VERSION", "REVISION", "UP")
	for _, n := range out.Nodes {
		name := n.Name
		if n.Self {
			name += " *"
		}
		admin := n.Admin
		if admin == "" {
			admin = "-"
		}
		row(tw, name, n.State, admin, n.Version, n.ConfigRevision, time.Since(n.Started).Round(time.Second))
	}
	return tw.Flush()
}
