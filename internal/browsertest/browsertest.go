// Package browsertest gives end-to-end tests a real headless Chromium
// (Debian's chromium package) driven through chromedp: one browser per
// test, with its own empty profile, closed when the test ends.
package browsertest

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"mxgate/internal/peertest"
)

// Path is where Debian's chromium package puts the browser.
const Path = "/usr/bin/chromium"

// New starts Chromium and returns a context for chromedp.Run, bounded by
// timeout. The browser and its profile go when the test ends.
//
// The flags keep Chromium off the network it would otherwise reach for
// (updates, sync, Google's hosts), which a closed test machine refuses,
// and let it run as root (--no-sandbox) as CI does.
func New(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	peertest.Require(t, "chromium", "chromium")
	path, err := exec.LookPath("chromium")
	if err != nil {
		path = Path
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() {
		cancelTimeout()
		cancelBrowser()
		cancelAlloc()
	})
	// Start the browser now, so a missing or broken Chromium fails here
	// with its own error rather than in the test's first step.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium %s: %v", path, err)
	}
	return ctx
}
