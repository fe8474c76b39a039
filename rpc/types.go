package rpc

import (
	"github.com/twgroupd/twgroupd/dm"
	"github.com/twgroupd/twgroupd/groupchat"
)

// Thread is one conversation of a getdirectmsgs answer.
type Thread = dm.Thread

// Event is a newly stored message for the websocket feed.
type Event = dm.Event

// GroupInfo is what getgroupinfo shows.
type GroupInfo = groupchat.Info
