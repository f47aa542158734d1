package milter

import (
	"context"
	"fmt"
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
	cs, err := c.client(&ctxDialer{ctx: ctx, timeout: c.ConnectTimeout}, c.ConnectTimeout).Session()
	if err != nil {
		return "", err
	}
	defer cs.Close()
	if err := checkAgreed(cs); err != nil {
		return "", err
	}
	return fmt.Sprintf("actions 0x%x, steps 0x%x", uint32(cs.ActionOpts), uint32(cs.ProtocolOpts)), nil
}
