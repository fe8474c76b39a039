// Package chain is twgroupd's light view of the twister blockchain: it
// validates headers (scrypt proof of work over the 84-byte header,
// GetNextWorkRequired, checkpoints, timestamps) and block bodies (merkle
// root, twister's transaction rules, key replacement signatures), follows
// the most-work chain through reorgs, and keeps from each block only what
// the user registry needs: usernames, their keys and the heights those keys
// are valid from (plus the spam message). State lives in a bbolt file
// (chain.db) so a restart resumes where it stopped. It does no networking;
// internal/chainsync feeds it. Rules cite twister-core 0.9.40's main.cpp.
package chain

import (
	"encoding/hex"
	"fmt"
	"math/big"

	"github.com/twgroupd/twgroupd/internal/chainwire"
)

// Params are the consensus parameters of one twister network.
type Params struct {
	Name string
	// Genesis is block 0, serialized.
	Genesis []byte
	// PowLimit is the easiest target (bnProofOfWorkLimit).
	PowLimit *big.Int
	// TxBits is the target a registration's sha256d must meet (nTxBits).
	TxBits uint32
	// TargetTimespan and TargetSpacing are in seconds; the retarget
	// interval is their quotient (2016 on mainnet).
	TargetTimespan int64
	TargetSpacing  int64
	// Checkpoints are the hard checkpoints (checkpoints.cpp); a Chain
	// opened with NoCheckpoints ignores them, as twisterd -checkpoints=0.
	Checkpoints map[int32]chainwire.Hash
	// ScryptN is scrypt's N for the block proof of work (1024).
	ScryptN     int
	DefaultPort uint16
	DNSSeeds    []string
}

// RetargetInterval is the number of blocks between difficulty changes.
func (p *Params) RetargetInterval() int32 { return int32(p.TargetTimespan / p.TargetSpacing) }

// GenesisBlock decodes Genesis.
func (p *Params) GenesisBlock() (*chainwire.Block, error) {
	b, err := chainwire.ParseBlock(p.Genesis)
	if err != nil {
		return nil, fmt.Errorf("genesis of %s: %w", p.Name, err)
	}
	return b, nil
}

// mainnetGenesis is twisterd's genesis block 9915158279673d10…737f44
// (chainparams.cpp), as getblock <hash> false prints it.
const mainnetGenesis = "01000000000000000000000000000000000000000000000000000000000000000000000000000000deb352291dd2529937056837c8cfc4c71416067d56a9f19910ea48f92f4f8a2c0f2e8452ffff031f760b00000101000000704c6e5468652054696d65732030392f4a756c2f3230313320476c6f626f206361756768742062726962696e672052656365697461204665646572616c20656d706c6f79656520746f20726f622052243631354d20776f727468207461782065766173696f6e20646f63756d656e74732e07066e6f626f64790000000000"

// Mainnet returns twister's main network parameters (twister-core 0.9.40
// chainparams.cpp and checkpoints.cpp; DNS seeds including the twisterarmy
// ones).
func Mainnet() *Params {
	g, err := hex.DecodeString(mainnetGenesis)
	if err != nil {
		panic(err) // constant
	}
	limit := new(big.Int).Rsh(new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1)), 1)
	cps := map[int32]string{
		121:   "cfdd9b4eb621c93163af7b730b3590b7a90c3d5e233569d76a1c0363527c92ae",
		13081: "5125dc1f6a3b8f1c463baf3e078d8af9f1b35aa4b34fb441e3a7ee391f8727c6",
		18000: "a3cab01c0e3e9b17b2a63b3cc93d258112f5ad753df1df7bd45e37a5c60814a9",
		18050: "ef0d4c9e318a952dd45fcb1c867996df309a0fb586811479c08cf18a176a8864",
		18973: "5f3f60fec53ac03434907ca980b5349875822794a4a0b50b78bcf0411d0c95fe",
		20200: "31f84d32e843baa1fd73b0013466c206ad8a783aaaeab61219bcea2475e1d05d",
		20988: "8e022eb85240176a82bac5e9ba5ad7bd05cb43f2073e08c462b1ba1ac012ba42",
		24500: "04a001c98e63b2c1bf3c24d6459f7de2cdfeb37d6cb960e95d9e2b1792748490",
		55450: "5af4c59d0b14183375dc003df956f666e0b20c73e5879f918f5e8fff179e2563",
	}
	p := &Params{
		Name:           "main",
		Genesis:        g,
		PowLimit:       limit,
		TxBits:         0x1e00ffff,
		TargetTimespan: 14 * 24 * 60 * 60,
		TargetSpacing:  10 * 60,
		Checkpoints:    make(map[int32]chainwire.Hash, len(cps)),
		ScryptN:        1024,
		DefaultPort:    chainwire.DefaultPort,
		DNSSeeds: []string{
			"seed.twister.net.co", "dnsseed.gombadi.com", "seed2.twister.net.co",
			"seed3.twister.net.co", "twisterseed.tk", "cruller.tasty.sexy",
			"twister-seeder.muh.freedu.ms", "twisterarmyseed.tk",
		},
	}
	for h, s := range cps {
		hash, err := chainwire.ParseHash(s)
		if err != nil {
			panic(err) // constant
		}
		p.Checkpoints[h] = hash
	}
	return p
}
