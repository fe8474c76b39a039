// Command twgroupd is the twister DM and group-chat daemon (`twgroupd
// serve`), an offline post decoder (`twgroupd decodepost`), and a JSON-RPC
// client with one command per RPC method, used like twisterd's own client:
//
//	twgroupd -rpcuser=u -rpcpassword=p creategroup "my group"
//	twgroupd newgroupinvite alice 5 '*abcdefgh' '["alice","bob"]'
//
// It owns the command line: flags (bitcoind-style single dash or --),
// subcommands, output and exit status. Protocol details live in internal/
// packages; the daemon is assembled by internal/node.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/twgroupd/twgroupd/internal/config"
	"github.com/twgroupd/twgroupd/internal/sdnotify"
	"github.com/twgroupd/twgroupd/internal/tjson"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// exitStatus carries a process exit status out of a cobra RunE whose
// command has already printed what it had to say.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// rpcAnnotation marks cobra commands that are RPC client commands.
const rpcAnnotation = "twgroupd.rpc"

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd(stdin, stdout, stderr)
	root.SetArgs(normalizeArgs(root, args))
	err := root.Execute()
	var st exitStatus
	switch {
	case err == nil:
		return 0
	case errors.As(err, &st):
		return int(st)
	}
	fmt.Fprintf(stderr, "error: %v\n", err)
	return 1
}

// rpcMethods are the client commands listed in --help, with the first line
// of twisterd's help text (spec §8.4). Any other name is sent as a method
// too, so methods forwarded to an upstream twisterd work from the CLI.
var rpcMethods = []struct{ name, usage string }{
	{"creategroup", "creategroup <description> [<groupprivkey>]"},
	{"listgroups", "listgroups [username] [list_only_ignored=false] [include_moved=false]"},
	{"getgroupinfo", "getgroupinfo <groupalias>"},
	{"newgroupinvite", "newgroupinvite <username> <k> <groupalias> '[<newmember>,...]'"},
	{"newgroupdescription", "newgroupdescription <username> <k> <groupalias> <description>"},
	{"leavegroup", "leavegroup <username> <groupalias>"},
	{"removegroupmember", "removegroupmember <username> <k> <groupalias> '[<member>,...]'"},
	{"getdirectmsgs", `getdirectmsgs <localuser> <count_per_user> '[{"username":username,"max_id":max_id,"since_id":since_id},...]'`},
	{"newdirectmsg", "newdirectmsg <from> <k> <to> <msg> [copy_self=false]"},
	{"newdirectmsgto", "newdirectmsgto <from> <k> <to> <msg> [copy_self=false]"},
	{"rescandirectmsgs", "rescandirectmsgs <username>"},
	{"createwalletuser", "createwalletuser <username> [replacekey]"},
	{"importprivkey", "importprivkey <bitcoinprivkey> <username> [rescan=true] [allow_new_user=false]"},
	{"dumpprivkey", "dumpprivkey <username>"},
	{"dumppubkey", "dumppubkey <username>"},
	{"listwalletusers", "listwalletusers"},
	{"follow", "follow <username> [follow_username1,follow_username2,...]"},
	{"unfollow", "unfollow <username> [unfollow_username1,unfollow_username2,...]"},
	{"getfollowing", "getfollowing <username>"},
	{"getlasthave", "getlasthave <username> | <groupname> [user1,user2...]"},
	{"getnumpieces", "getnumpieces <username>"},
	{"getpiecemaxseen", "getpiecemaxseen <username> <k>"},
	{"newpostraw", "newpostraw <username> <k> <hexdata>"},
	{"getposts", `getposts <count> '[{"username":username,"max_id":max_id,"since_id":since_id},...]' [allowed_flags=~2] [required_flags=0]`},
	{"dhtget", "dhtget <username> <resource> <s(ingle)/m(ulti)> [timeout_ms] [timeout_multi_ms] [min_multi]"},
	{"dhtput", "dhtput <username> <resource> <s(ingle)/m(ulti)> <value> <sig_user> <seq>"},
	{"sendnewusertransaction", "sendnewusertransaction <username>"},
	{"getinfo", "getinfo"},
	{"stop", "stop"},
	{"help", "help [command]"},
}

// rpcLong is the longer -h text of twgroupd's own methods.
var rpcLong = map[string]string{
	"removegroupmember": "removegroupmember <username> <k> <groupalias> '[<member>,...]'\n\n" +
		"Remove members from a group chat: everyone who holds a group key reads the group,\n" +
		"so the group moves to a new key (same description) that the removed members never get.\n" +
		"Posts, as k, k+1, ...: an invite to each remaining member (this node's users included),\n" +
		"the new member list (in chunks, as newgroupinvite), one notice to the old group.\n" +
		"k consumed = remaining members + member-list chunks + 1 (k auto: the next free k).\n" +
		"Prints the new group alias.\n" +
		"The old group stays readable; getgroupinfo shows it as moved, listgroups hides it\n" +
		"(listgroups <user> false true lists it).\n\n" +
		"Example: twgroupd removegroupmember alice auto '*abcdefgh' '[\"carol\"]'",
}

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "twgroupd [flags] <command> [params...]",
		Short: "twister direct-message and group-chat daemon, and its JSON-RPC client",
		Long: "twgroupd serves twisterd's JSON-RPC for direct messages and group chat.\n\n" +
			"Flags may be written bitcoind-style (-rpcuser=u) or GNU-style (--rpcuser=u).\n" +
			"Settings are read from <datadir>/twgroupd.conf (key=value); the command line wins.\n" +
			"For RPC commands, as for twisterd's client, flags go before the method name;\n" +
			"everything after it is a parameter. Unlisted method names are sent as given.",
		Args:              cobra.ArbitraryArgs,
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			return runClient(cmd, args[0], args[1:], stdout, stderr)
		},
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	config.AddFlags(root.PersistentFlags())
	root.AddGroup(
		&cobra.Group{ID: "daemon", Title: "Daemon and tools:"},
		&cobra.Group{ID: "rpc", Title: "JSON-RPC client commands (twisterd's parameters and output):"},
	)

	serve := &cobra.Command{
		Use:     "serve",
		Short:   "run the daemon until SIGINT, SIGTERM or the stop RPC",
		GroupID: "daemon",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cmd.Flags())
			if err != nil {
				return err
			}
			return runServe(cmd.Context(), cfg, stderr, runNode, sdnotify.FromEnv())
		},
	}

	var pubkeys, keys []string
	decode := &cobra.Command{
		Use:   "decodepost [hex]",
		Short: "decode a post (hex of the piece bytes, argument or stdin) and try keys on its DM",
		Long: "decodepost prints one JSON object: post (as twisterd renders it), signature_valid\n" +
			"(checked against --pubkey of the author; null without it) and decrypted (the first\n" +
			"--key that opens the post's dm: key name, plaintext_hex, payload; null if none).",
		GroupID: "daemon",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pubs, err := parsePubKeys(pubkeys)
			if err != nil {
				return err
			}
			nks, err := parseKeys(keys)
			if err != nil {
				return err
			}
			raw, err := readPostHex(args, stdin)
			if err != nil {
				return fmt.Errorf("decodepost: %w", err)
			}
			out, err := decodePost(raw, pubs, nks)
			if err != nil {
				return fmt.Errorf("decodepost: %w", err)
			}
			fmt.Fprintf(stdout, "%s\n", tjson.AppendValue(nil, out, true))
			return nil
		},
	}
	decode.Flags().StringArrayVar(&pubkeys, "pubkey", nil, "user=HEX public key to check the signature with (repeatable)")
	decode.Flags().StringArrayVar(&keys, "key", nil, "name=WIF private key to try on the DM (repeatable)")
	root.AddCommand(serve, decode, newDevnetCmd(stdout), newAbuseCmd(stdout))

	for _, m := range rpcMethods {
		name := m.name
		c := &cobra.Command{
			Use:                   m.usage,
			Short:                 m.usage,
			GroupID:               "rpc",
			Args:                  cobra.ArbitraryArgs,
			DisableFlagsInUseLine: true,
			Long:                  rpcLong[name],
			Annotations:           map[string]string{rpcAnnotation: "1"},
			RunE: func(cmd *cobra.Command, args []string) error {
				return runClient(cmd, name, args, stdout, stderr)
			},
		}
		if name == "help" {
			// twisterd's `help [command]` is an RPC; cobra's usage stays on -h/--help.
			root.SetHelpCommand(c)
			continue
		}
		root.AddCommand(c)
	}
	return root
}

func runClient(cmd *cobra.Command, method string, args []string, stdout, stderr io.Writer) error {
	cfg, err := config.Load(cmd.Flags())
	if err != nil {
		return err
	}
	if st := commandLineRPC(cmd.Context(), cfg, method, args, stdout, stderr); st != 0 {
		return exitStatus(st)
	}
	return nil
}

// normalizeArgs prepares os.Args for cobra. Flags before the command may be
// bitcoind-style (-rpcuser=u): they become --rpcuser=u, and -? is --help.
// For RPC commands, as in twisterd (util.cpp: ParseParameters stops at the
// first non-flag), every word after the method name is a parameter, even
// "-1": a "--" is inserted after the name. A lone -h/--help after a method
// name shows that command's usage instead of being sent.
func normalizeArgs(root *cobra.Command, args []string) []string {
	out := make([]string, 0, len(args)+1)
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if !isFlag(a) {
			break
		}
		out = append(out, normalizeFlag(a))
		name := strings.TrimLeft(strings.SplitN(a, "=", 2)[0], "-")
		if !strings.Contains(a, "=") && config.TakesValue(name) && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	if i >= len(args) {
		return out
	}
	name, rest := args[i], args[i+1:]
	if local := findLocal(root, name); local {
		out = append(out, name)
		dashes := false
		for _, a := range rest {
			if a == "--" {
				dashes = true
			}
			if !dashes && isFlag(a) {
				a = normalizeFlag(a)
			}
			out = append(out, a)
		}
		return out
	}
	if len(rest) == 1 && (rest[0] == "-h" || rest[0] == "--help" || rest[0] == "-help") {
		return append(out, name, "--help")
	}
	out = append(out, name, "--")
	return append(out, rest...)
}

// findLocal reports whether name is a subcommand that is not an RPC method
// (serve, decodepost, and any other local command).
func findLocal(root *cobra.Command, name string) bool {
	for _, c := range root.Commands() {
		if c.Name() == name || c.HasAlias(name) {
			return c.Annotations[rpcAnnotation] == ""
		}
	}
	return false
}

func isFlag(a string) bool { return len(a) > 1 && a[0] == '-' && a != "--" }

func normalizeFlag(a string) string {
	if a == "-?" {
		return "--help"
	}
	if strings.HasPrefix(a, "--") {
		return a
	}
	name := strings.SplitN(a[1:], "=", 2)[0]
	if len(name) > 1 {
		return "-" + a
	}
	return a
}
