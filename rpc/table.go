package rpc

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// method is one row of the dispatch table (twisterd's vRPCCommands, btcd's
// rpcHandlers): the handler, its parameter count range and its help text.
// The first help line is the usage, as twisterd's runtime_error strings.
type method struct {
	name      string
	minParams int
	maxParams int // -1: no upper bound
	help      string
	handler   func(ctx context.Context, p params) (any, error)
	aliasOf   string // help lists an alias under its target only
}

// methodTable builds the native methods. Help texts are twisterd 0.9.40's
// (src/twister.cpp, rpcdump.cpp, rpcwallet.cpp, bitcoinrpc.cpp) so a wrong
// parameter count answers -1 with the same text.
func (s *Server) methodTable() (map[string]*method, []string) {
	rows := []*method{
		{name: "help", minParams: 0, maxParams: 1, handler: s.help,
			help: "help [command]\nList commands, or get help for a command."},
		{name: "stop", minParams: 0, maxParams: 1, handler: s.stop,
			help: "stop\nStop Twister server."},
		{name: "getinfo", minParams: 0, maxParams: 0, handler: s.getinfo,
			help: "getinfo\nReturns an object containing various state info."},

		{name: "newdirectmsg", minParams: 4, maxParams: 5, handler: s.newdirectmsg,
			help: "newdirectmsg <from> <k> <to> <msg> [copy_self=false]\n" +
				"Post a new dm to swarm.\n" +
				"if copy_self true will increase k twice (two DMs).\n" +
				"k: null (CLI: auto) takes the next free k; uses 1 k, 2 with copy_self."},
		{name: "newdirectmsgto", aliasOf: "newdirectmsg"},
		{name: "getdirectmsgs", minParams: 3, maxParams: 3, handler: s.getdirectmsgs,
			help: "getdirectmsgs <localuser> <count_per_user> '[{\"username\":username,\"max_id\":max_id,\"since_id\":since_id},...]'\n" +
				"get (locally stored) decrypted direct messages sent/received by user <localuser>\n" +
				"max_id and since_id may be omited. up to <count_per_user> are returned for each remote user."},
		{name: "rescandirectmsgs", minParams: 1, maxParams: 1, handler: s.rescandirectmsgs,
			help: "rescandirectmsgs <username>\n" +
				"rescan all streams of users we follow for new and old directmessages"},

		{name: "creategroup", minParams: 1, maxParams: 2, handler: s.creategroup,
			help: "creategroup <description> [<groupprivkey>]\n" +
				"Create (if <groupprivkey> is omited) a new key pair for group chat and add it to wallet\n" +
				"Or import the given <groupprivkey> into wallet\n" +
				"Hint: use newgroupinvite to invite yourself\n" +
				"Returns the group alias"},
		{name: "listgroups", minParams: 0, maxParams: 3, handler: s.listgroups,
			help: "listgroups [username] [list_only_ignored=false] [include_moved=false]\n" +
				"get list of group chats\n" +
				"if username is given, it will return list of user's groups.\n" +
				"groups moved by removegroupmember are listed only with include_moved (twgroupd)."},
		{name: "getgroupinfo", minParams: 1, maxParams: 1, handler: s.getgroupinfo,
			help: "getgroupinfo <groupalias>\nget group description and members"},
		{name: "newgroupinvite", minParams: 4, maxParams: 4, handler: s.newgroupinvite,
			help: "newgroupinvite <username> <k> <groupalias> '[<newmember>,...]'\n" +
				"Invite some new members for a group chat.\n" +
				"note: k is increased by at least 2, check getlasthave\n" +
				"k: null (CLI: auto) takes the next free k; uses one k per new member\n" +
				"plus one per member list chunk (about 150 bytes of names each)."},
		{name: "newgroupdescription", minParams: 4, maxParams: 4, handler: s.newgroupdescription,
			help: "newgroupdescription <username> <k> <groupalias> <description>\n" +
				"Change group description by sending a new invite DM to group\n" +
				"k: null (CLI: auto) takes the next free k; uses 1 k."},
		{name: "removegroupmember", minParams: 4, maxParams: 4, handler: s.removegroupmember,
			help: "removegroupmember <username> <k> <groupalias> '[<member>,...]'\n" +
				"Remove members from a group chat by moving it to a new group key (twgroupd).\n" +
				"The remaining members get an invite to the new group, which also gets the member list;\n" +
				"the old group gets one notice and stays readable, marked as moved in getgroupinfo.\n" +
				"k is increased by (remaining members) + (member list posts) + 1;\n" +
				"k: null (CLI: auto) takes the next free k.\n" +
				"Returns the new group alias"},
		{name: "leavegroup", minParams: 2, maxParams: 2, handler: s.leavegroup,
			help: "leavegroup <username> <groupalias>\nStop receiving chats from group"},

		{name: "createwalletuser", minParams: 1, maxParams: 2, handler: s.createwalletuser,
			help: "createwalletuser <username> [replacekey]\n" +
				"Create a new key pair for user and add it to wallet\n" +
				"Use sendnewusertransaction to publish it to the network.\n" +
				"Returns key secret (keep it safe)"},
		{name: "sendnewusertransaction", minParams: 1, maxParams: 1, handler: s.sendnewusertransaction,
			help: "sendnewusertransaction <username>\n" +
				"Send a transaction registering a previously created new user\n" +
				"using createwalletuser or imported to the wallet\n" +
				"Submits raw transaction (serialized, hex-encoded) to local node and network."},
		{name: "importprivkey", minParams: 2, maxParams: 4, handler: s.importprivkey,
			help: "importprivkey <bitcoinprivkey> <username> [rescan=true] [allow_new_user=false]\n" +
				"Adds a private key (as returned by dumpprivkey) to your wallet."},
		{name: "dumpprivkey", minParams: 1, maxParams: 1, handler: s.dumpprivkey,
			help: "dumpprivkey <username>\nReveals the private key corresponding to <username>."},
		{name: "dumppubkey", minParams: 1, maxParams: 1, handler: s.dumppubkey,
			help: "dumppubkey <username>\n" +
				"Returns the public key corresponding to <username> (empty if user doesn't exist)"},
		{name: "listwalletusers", minParams: 0, maxParams: 0, handler: s.listwalletusers,
			help: "listwalletusers\nReturns the list of wallet usernames."},

		{name: "follow", minParams: 2, maxParams: 2, handler: s.follow,
			help: "follow <username> [follow_username1,follow_username2,...]\nstart following users"},
		{name: "unfollow", minParams: 2, maxParams: 2, handler: s.unfollow,
			help: "unfollow <username> [unfollow_username1,unfollow_username2,...]\nstop following users"},
		{name: "getfollowing", minParams: 1, maxParams: 1, handler: s.getfollowing,
			help: "getfollowing <username>\nget list of users we follow"},
		{name: "listusernamespartial", minParams: 2, maxParams: 3, handler: s.listusernamespartial,
			help: "listusernamespartial <username_starts_with> <count> [exact_match=false]\nget list of usernames starting with"},
		{name: "getlasthave", minParams: 1, maxParams: 2, handler: s.getlasthave,
			help: "getlasthave <username> | <groupname> [user1,user2...]\n" +
				"get last 'have' (higher post number) of each user local user follows.\n" +
				"if a groupname with an array is given, only those users' last 'have' values will be returned."},
		{name: "getnumpieces", minParams: 1, maxParams: 1, handler: s.getnumpieces,
			help: "getnumpieces <username>\n" +
				"get number of posts already downloaded for each user user we follow"},
		{name: "getpiecemaxseen", minParams: 2, maxParams: 2, handler: s.getpiecemaxseen,
			help: "getpiecemaxseen <username> <k>\n" +
				"Get piece max seen availability (max peer count for this piece)"},
		{name: "newpostraw", minParams: 3, maxParams: 3, handler: s.newpostraw,
			help: "newpostraw <username> <k> <hexdata>\n" +
				"Post a new raw post (already signed) to swarm"},
		{name: "getposts", minParams: 2, maxParams: 4, handler: s.getposts,
			help: "getposts <count> '[{\"username\":username,\"max_id\":max_id,\"since_id\":since_id},...]' [allowed_flags=~2] [required_flags=0]\n" +
				"get posts from users\n" +
				"max_id and since_id may be omited\n" +
				"(optional) allowed/required flags are bitwise fields (1=RT,2=DM,4=FAV,12=PFAV)"},

		{name: "dhtget", minParams: 3, maxParams: 6, handler: s.dhtget,
			help: "dhtget <username> <resource> <s(ingle)/m(ulti)> [timeout_ms] [timeout_multi_ms] [min_multi]\n" +
				"Get resource from dht network"},
		{name: "dhtput", minParams: 5, maxParams: 6, handler: s.dhtput,
			help: "dhtput <username> <resource> <s(ingle)/m(ulti)> <value> <sig_user> <seq>\n" +
				"Store resource in dht network"},
	}
	if s.cfg.Chain != nil {
		rows = append(rows, s.chainMethods()...) // else they go upstream
	}
	table := make(map[string]*method, len(rows))
	for _, m := range rows {
		table[m.name] = m
	}
	for _, m := range rows {
		if m.aliasOf != "" {
			target := table[m.aliasOf]
			alias := *target
			alias.name, alias.aliasOf = m.name, m.aliasOf
			table[m.name] = &alias
		}
	}
	names := make([]string, 0, len(table))
	for name := range table {
		names = append(names, name)
	}
	sort.Strings(names)
	return table, names
}

// help is CRPCTable::help: the usage line of every method, sorted by name,
// or one method's full text.
func (s *Server) help(_ context.Context, p params) (any, error) {
	command := ""
	if p.has(0) {
		var err error
		if command, err = p.str(0); err != nil {
			return nil, err
		}
	}
	if command != "" {
		m, ok := s.methods[command]
		if !ok {
			if s.cfg.Upstream != nil {
				// The upstream knows the methods forwarded to it.
				return nil, fmt.Errorf("help %s: %w", command, errNoBackend)
			}
			return "help: unknown command: " + command, nil
		}
		return m.help, nil
	}
	lines := make([]string, 0, len(s.names))
	for _, name := range s.names {
		m := s.methods[name]
		if m.aliasOf != "" {
			continue
		}
		usage, _, _ := strings.Cut(m.help, "\n")
		lines = append(lines, usage)
	}
	return strings.Join(lines, "\n"), nil
}
