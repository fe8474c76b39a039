package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/twgroupd/twgroupd/internal/config"
	"github.com/twgroupd/twgroupd/internal/tjson"
)

// The RPC client commands behave as twisterd's command-line client
// (src/bitcoinrpc.cpp: CommandLineRPC, CallRPC, RPCConvertValues).

// convKind is the JSON type a positional parameter is converted to.
type convKind int

const (
	convInt    convKind = iota // ConvertTo<boost::int64_t>
	convBool                   // ConvertTo<bool>
	convReal                   // ConvertTo<double>
	convArray                  // ConvertTo<Array>
	convObject                 // ConvertTo<Object>
	convValue                  // ConvertToValue: any JSON value
	convK                      // a post number: as convInt, or the word auto -> null (the next free k)
)

// kind is the json_spirit kind ConvertTo checks for k (convInt for convK).
func (k convKind) kind() tjson.Kind {
	switch k {
	case convBool:
		return tjson.KindBool
	case convReal:
		return tjson.KindReal
	case convArray:
		return tjson.KindArray
	case convObject:
		return tjson.KindObject
	}
	return tjson.KindInt
}

// conversions is twisterd's RPCConvertValues table: method -> parameter
// index -> type. Parameters not listed are sent as strings. It covers the
// methods twisterd knows so commands forwarded upstream convert alike;
// newdirectmsgto is our alias of newdirectmsg; removegroupmember and
// listgroups' third parameter are twgroupd's own.
var conversions = map[string]map[int]convKind{
	"stop":                  {0: convBool},
	"getaddednodeinfo":      {0: convBool},
	"setgenerate":           {0: convBool, 1: convInt},
	"sendtoaddress":         {1: convReal},
	"settxfee":              {0: convReal},
	"getreceivedbyaddress":  {1: convInt},
	"getreceivedbyaccount":  {1: convInt},
	"listreceivedbyaddress": {0: convInt, 1: convBool},
	"listreceivedbyaccount": {0: convInt, 1: convBool},
	"getbalance":            {1: convInt},
	"getblockhash":          {0: convInt},
	"move":                  {2: convReal, 3: convInt},
	"sendfrom":              {2: convReal, 3: convInt},
	"listtransactions":      {1: convInt, 2: convInt},
	"listaccounts":          {0: convInt},
	"walletpassphrase":      {1: convInt},
	"getblocktemplate":      {0: convObject},
	"listsinceblock":        {1: convInt},
	"sendmany":              {1: convObject, 2: convInt},
	"addmultisigaddress":    {0: convInt, 1: convArray},
	"createmultisig":        {0: convInt, 1: convArray},
	"listunspent":           {0: convInt, 1: convInt, 2: convArray},
	"getblock":              {1: convBool},
	"createwalletuser":      {1: convBool},
	"getrawtransaction":     {1: convInt},
	"gettxout":              {1: convInt, 2: convBool},
	"lockunspent":           {0: convBool, 1: convArray},
	"importprivkey":         {2: convBool, 3: convBool},
	"verifychain":           {0: convInt, 1: convInt},
	"dhtput":                {3: convValue, 5: convInt},
	"dhtget":                {3: convInt, 4: convInt, 5: convInt},
	"newpostmsg":            {1: convInt, 4: convInt},
	"newpostcustom":         {1: convInt, 2: convObject},
	"newpostraw":            {1: convInt},
	"newdirectmsg":          {1: convK, 4: convBool},
	"newdirectmsgto":        {1: convK, 4: convBool},
	"newrtmsg":              {1: convInt, 2: convObject},
	"newfavmsg":             {1: convInt, 2: convObject, 3: convBool},
	"getlasthave":           {1: convArray},
	"getposts":              {0: convInt, 1: convArray, 2: convInt, 3: convInt},
	"getdirectmsgs":         {1: convInt, 2: convArray},
	"getmentions":           {1: convInt, 2: convObject},
	"getfavs":               {1: convInt, 2: convObject},
	"follow":                {1: convArray},
	"unfollow":              {1: convArray},
	"listusernamespartial":  {1: convInt, 2: convBool},
	"gettrendinghashtags":   {0: convInt},
	"getspamposts":          {0: convInt, 1: convInt, 2: convInt},
	"search":                {2: convInt, 3: convObject},
	"listgroups":            {1: convBool, 2: convBool},
	"removegroupmember":     {1: convK, 3: convArray},
	"newgroupinvite":        {1: convK, 3: convArray},
	"newgroupdescription":   {1: convK},
	"getpieceavailability":  {1: convInt},
	"getpiecemaxseen":       {1: convInt},
	"peekpost":              {1: convInt, 3: convInt},
	"uidtousername":         {0: convInt},
	"usernametouid":         {1: convBool},
	"newshorturl":           {1: convInt},
	"decodeshorturl":        {1: convInt},
}

// convertParams turns command-line words into RPC parameters.
func convertParams(method string, args []string) ([]tjson.Value, error) {
	params := make([]tjson.Value, len(args))
	for i, a := range args {
		params[i] = tjson.String(a)
		kind, ok := conversions[method][i]
		if !ok {
			continue
		}
		v, err := convertTo(a, kind)
		if err != nil {
			return nil, err
		}
		params[i] = v
	}
	return params, nil
}

// typeError is json_spirit's check_type message (Bitcoin's wording).
func typeError(got, want tjson.Kind) error {
	return errors.New(tjson.TypeErrorMessage(got, want))
}

// convertTo reinterprets s as JSON of the wanted type, as ConvertTo<T>: a
// JSON string is reinterpreted again (so '"5"' is 5); ConvertToValue keeps
// whatever value s holds.
func convertTo(s string, kind convKind) (tjson.Value, error) {
	if kind == convK {
		if s == "auto" {
			return tjson.Value{Kind: tjson.KindNull}, nil
		}
		kind = convInt
	}
	for {
		v, err := tjson.Parse([]byte(s), tjson.TwisterClient)
		if err != nil {
			return tjson.Value{}, fmt.Errorf("Error parsing JSON:%s", s)
		}
		if kind == convValue {
			return v, nil
		}
		if v.Kind == tjson.KindString {
			s = v.Str
			continue
		}
		want := kind.kind()
		if want == tjson.KindReal && v.Kind == tjson.KindInt {
			f := float64(v.Int)
			if v.IsUint {
				f = float64(v.Uint)
			}
			v = tjson.Value{Kind: tjson.KindReal, Real: f}
		}
		if v.Kind != want {
			return tjson.Value{}, typeError(v.Kind, want)
		}
		return v, nil
	}
}

// requestBody is JSONRPCRequest(method, params, 1).
func requestBody(method string, params []tjson.Value) []byte {
	req := tjson.Value{Kind: tjson.KindObject, Obj: []tjson.Member{
		{Key: "method", Val: tjson.String(method)},
		{Key: "params", Val: tjson.Value{Kind: tjson.KindArray, Arr: params}},
		{Key: "id", Val: tjson.Value{Kind: tjson.KindInt, Int: 1}},
	}}
	return append(tjson.AppendValue(nil, req, false), '\n')
}

// clientError is a failure before a JSON-RPC reply was understood; twisterd
// prints "error: <message>" and exits with 87.
const clientErrorStatus = 87

// maxReplySize bounds what the client reads; no reply comes near it.
const maxReplySize = 64 << 20

// callRPC posts one request and returns the reply object.
func callRPC(ctx context.Context, cfg config.Config, method string, params []tjson.Value) (tjson.Value, error) {
	user, password, err := cfg.RPCCredentials()
	if err != nil {
		conf := cfg.ConfFile
		if conf == "" {
			conf = cfg.DataDir + "/" + config.ConfFileName
		}
		if errors.Is(err, config.ErrNoCookie) {
			return tjson.Value{}, fmt.Errorf("You must set rpcpassword=<password> in the configuration file:\n%s\n"+
				"If the file does not exist, create it with owner-readable-only file permissions.\n"+
				"Or start `twgroupd serve` without rpcpassword: it writes %s, which client commands read "+
				"(give the same -datadir).", conf, config.CookiePath(cfg.DataDir))
		}
		return tjson.Value{}, err
	}
	url := "http://" + net.JoinHostPort(cfg.RPCConnect, strconv.Itoa(cfg.RPCPort)) + "/"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(requestBody(method, params)))
	if err != nil {
		return tjson.Value{}, errors.New("couldn't connect to server")
	}
	req.SetBasicAuth(user, password)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "twgroupd-json-rpc")
	req.Close = true
	hc := &http.Client{Transport: &http.Transport{
		Proxy:       nil, // a local daemon; never route RPC credentials via a proxy
		DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
	}}
	resp, err := hc.Do(req)
	if err != nil {
		return tjson.Value{}, errors.New("couldn't connect to server")
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReplySize+1))
	if err != nil {
		return tjson.Value{}, errors.New("no response from server")
	}
	if len(body) > maxReplySize {
		return tjson.Value{}, errors.New("reply from server too large")
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return tjson.Value{}, errors.New("incorrect rpcuser or rpcpassword (authorization failed)")
	case resp.StatusCode >= 400 && resp.StatusCode != http.StatusBadRequest &&
		resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusInternalServerError:
		return tjson.Value{}, fmt.Errorf("server returned HTTP error %d", resp.StatusCode)
	case len(body) == 0:
		return tjson.Value{}, errors.New("no response from server")
	}
	reply, err := tjson.Parse(body, tjson.TwisterClient)
	if err != nil {
		return tjson.Value{}, errors.New("couldn't parse reply from server")
	}
	if reply.Kind != tjson.KindObject {
		return tjson.Value{}, typeError(reply.Kind, tjson.KindObject)
	}
	if len(reply.Obj) == 0 {
		return tjson.Value{}, errors.New("expected reply to have result, error and id properties")
	}
	return reply, nil
}

// commandLineRPC runs one client command and returns the exit status:
// results go to stdout (strings raw, null nothing, others pretty JSON),
// an error reply to stderr as "error: {compact}" with status |code|, any
// other failure as "error: <message>" with status 87.
func commandLineRPC(ctx context.Context, cfg config.Config, method string, args []string, stdout, stderr io.Writer) int {
	out, status, err := runRPC(ctx, cfg, method, args)
	if err != nil {
		out, status = "error: "+err.Error(), clientErrorStatus
	}
	if out != "" {
		w := stdout
		if status != 0 {
			w = stderr
		}
		fmt.Fprintf(w, "%s\n", out)
	}
	return status
}

func runRPC(ctx context.Context, cfg config.Config, method string, args []string) (string, int, error) {
	params, err := convertParams(method, args)
	if err != nil {
		return "", 0, err
	}
	reply, err := callRPC(ctx, cfg, method, params)
	if err != nil {
		return "", 0, err
	}
	result, rpcErr := reply.Get("result"), reply.Get("error")
	if rpcErr.Kind != tjson.KindNull {
		if rpcErr.Kind != tjson.KindObject {
			return "", 0, typeError(rpcErr.Kind, tjson.KindObject)
		}
		code := rpcErr.Get("code")
		if code.Kind != tjson.KindInt {
			return "", 0, typeError(code.Kind, tjson.KindInt)
		}
		// get_int truncates to int; abs of it is the status (the OS keeps
		// the low 8 bits, so -32601 exits with 89, as twisterd).
		status := int(int32(code.Int))
		if status < 0 {
			status = -status
		}
		return "error: " + string(tjson.AppendValue(nil, rpcErr, false)), status, nil
	}
	switch result.Kind {
	case tjson.KindNull:
		return "", 0, nil
	case tjson.KindString:
		return result.Str, 0, nil
	}
	return string(tjson.AppendValue(nil, result, true)), 0, nil
}
