package rpc

import (
	"context"
	"encoding/json"
	"strconv"

	"github.com/twgroupd/twgroupd/internal/tjson"
)

// twisterd 0.9.40's protocol and wallet versions, reported unchanged so
// frontends treat twgroupd like that twisterd.
const (
	protocolVersion = 70003
	walletVersion   = 60000
)

// getinfo answers with twisterd's field names and order (spec §8.4) and
// our values; fields twgroupd has no equivalent for are zero.
func (s *Server) getinfo(ctx context.Context, _ params) (any, error) {
	var st NodeStatus
	if s.cfg.Node == nil {
		if s.cfg.Upstream != nil {
			return nil, noBackend("getinfo", "node status")
		}
	} else {
		var err error
		if st, err = s.cfg.Node.NodeStatus(ctx); err != nil {
			return nil, err
		}
	}
	info := tjson.Object{
		{Key: "version", Value: s.cfg.Version},
		{Key: "protocolversion", Value: protocolVersion},
		{Key: "walletversion", Value: walletVersion},
		{Key: "blocks", Value: st.Blocks},
		{Key: "timeoffset", Value: 0},
		{Key: "connections", Value: st.Connections},
		{Key: "addrman_total", Value: 0},
		{Key: "addrman_get", Value: 0},
		{Key: "dht_nodes", Value: st.DHTNodes},
		{Key: "dht_global_nodes", Value: st.DHTGlobalNodes},
		{Key: "proxy", Value: st.Proxy},
	}
	if st.Proxy == "" {
		info = append(info,
			tjson.Field{Key: "ext_port1", Value: st.ExtPort1},
			tjson.Field{Key: "ext_port2", Value: st.ExtPort2})
	}
	info = append(info,
		tjson.Field{Key: "difficulty", Value: realJSON(0)},
		tjson.Field{Key: "testnet", Value: false},
		tjson.Field{Key: "public_server_mode", Value: false},
		tjson.Field{Key: "errors", Value: st.Errors},
		tjson.Field{Key: "ext_addr_net1", Value: st.ExtAddrNet1},
		tjson.Field{Key: "ext_addr_net2", Value: st.ExtAddrNet2},
		tjson.Field{Key: "dht_torrents", Value: st.DHTTorrents},
		tjson.Field{Key: "num_peers", Value: st.NumPeers},
		tjson.Field{Key: "peerlist_size", Value: st.PeerListSize},
		tjson.Field{Key: "num_active_requests", Value: 0},
		tjson.Field{Key: "download_rate", Value: 0},
		tjson.Field{Key: "upload_rate", Value: 0},
		tjson.Field{Key: "dht_download_rate", Value: 0},
		tjson.Field{Key: "dht_upload_rate", Value: 0},
		tjson.Field{Key: "ip_overhead_download_rate", Value: 0},
		tjson.Field{Key: "ip_overhead_upload_rate", Value: 0},
		tjson.Field{Key: "payload_download_rate", Value: 0},
		tjson.Field{Key: "payload_upload_rate", Value: 0},
		tjson.Field{Key: "total_download", Value: st.TotalDownload},
		tjson.Field{Key: "total_upload", Value: st.TotalUpload},
		tjson.Field{Key: "total_dht_download", Value: st.TotalDHTDown},
		tjson.Field{Key: "total_dht_upload", Value: st.TotalDHTUp},
		tjson.Field{Key: "total_ip_overhead_download", Value: 0},
		tjson.Field{Key: "total_ip_overhead_upload", Value: 0},
		tjson.Field{Key: "total_payload_download", Value: 0},
		tjson.Field{Key: "total_payload_upload", Value: 0},
	)
	if c := st.Chain; c != nil {
		// Ours, after all of twisterd's fields (docs/chain.md "Progress").
		info = append(info,
			tjson.Field{Key: "chain_headers", Value: c.Headers},
			tjson.Field{Key: "chain_sync_target", Value: c.Target},
			tjson.Field{Key: "chain_syncing", Value: c.Syncing},
			tjson.Field{Key: "chain_sync_percent", Value: json.RawMessage(strconv.FormatFloat(c.Percent, 'f', 2, 64))},
			tjson.Field{Key: "chain_blocks_per_s", Value: json.RawMessage(strconv.FormatFloat(c.BlocksPerS, 'f', 1, 64))})
	}
	return info, nil
}

// realJSON writes a real as bitcoin's json_spirit does: fixed, 8 decimals.
func realJSON(f float64) json.RawMessage {
	return json.RawMessage(strconv.FormatFloat(f, 'f', 8, 64))
}

// stop answers first and stops the daemon asynchronously: Shutdown waits
// for this reply to be written.
func (s *Server) stop(_ context.Context, _ params) (any, error) {
	if s.cfg.Stop == nil {
		return nil, &Error{Code: CodeMisc, Message: "stop: this server cannot stop the daemon"}
	}
	s.stopOnce.Do(func() { go s.cfg.Stop() })
	return "Twister server stopping", nil
}
