package milter

import (
	"context"
	"fmt"

	gomilter "github.com/emersion/go-milter"
)

// Negotiate connects to the milter o names and negotiates options as a
// session's first stage does (connect_timeout bounds both), then hangs up
// without a message. It returns what was agreed, "actions 0x1ff, steps
// 0x1f7f", for `mxgate config check --probe`.
func Negotiate(ctx context.Context, o Options) (string, error) {
	h, err := NewHost([]Options{o}, nil)
	if err != nil {
		return "", err
	}
	c := h.milters[0]
	dialer := &ctxDialer{ctx: ctx, timeout: c.ConnectTimeout}
	cl := gomilter.NewClientWithOptions(c.network, c.address, gomilter.ClientOptions{
		Dialer:       dialer,
		ReadTimeout:  c.ConnectTimeout,
		WriteTimeout: c.ConnectTimeout,
		ActionMask:   offerActions,
		ProtocolMask: offerProtocol,
	})
	cs, err := cl.Session()
	if err != nil {
		return "", err
	}
	defer cs.Close()
	if extra := cs.ActionOpts &^ offerActions; extra != 0 {
		return "", fmt.Errorf("%w: actions 0x%x not offered (offered 0x%x)", errProtocol, uint32(extra), uint32(offerActions))
	}
	if extra := cs.ProtocolOpts &^ offerProtocol; extra != 0 {
		return "", fmt.Errorf("%w: steps 0x%x not offered (offered 0x%x)", errProtocol, uint32(extra), uint32(offerProtocol))
	}
	return fmt.Sprintf("actions 0x%x, steps 0x%x", uint32(cs.ActionOpts), uint32(cs.ProtocolOpts)), nil
}
