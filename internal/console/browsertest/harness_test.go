//go:build linux

package browsertest

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"weft/internal/netlab/labtest"
	"weft/internal/tstest"
)

// chromiumPath finds Debian's chromium, or skips the test saying how to
// get it.
func chromiumPath(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("browser test: no Chromium on PATH; install it with `apt-get install -y chromium` (CI does, in .ci/run)")
	return ""
}

// newBrowser starts a headless Chromium of its own (a fresh profile, so
// no cookie is shared with another test) and returns a tab's context.
// Chromium is stopped when the test ends.
func newBrowser(t testing.TB) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // tests run as root in CI; the sandbox refuses root
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser, without a time limit
		t.Fatalf("starting Chromium: %v", err)
	}
	return ctx
}

// do runs browser steps with a time limit, failing the test with what
// was being done.
func do(t testing.TB, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
}

// get runs one browser action that returns a value, with a time limit.
func get[T any](t testing.TB, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

// open navigates to url and returns the HTTP status of the page.
func open(t testing.TB, ctx context.Context, url string) int {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := chromedp.Run(tctx, chromedp.NavigateResponse(url))
	if err != nil {
		t.Fatalf("browser: open %s: %v", url, err)
	}
	return int(resp.Status)
}

// html is the page's markup as the browser has it now.
func html(t testing.TB, ctx context.Context) string {
	t.Helper()
	return get(t, ctx, "read the page", chromedp.OuterHTML(chromedp.CSS("html")))
}

// screenshotDir is where screenshots go: WEFT_SCREENSHOTS; "" (none
// saved) when it is unset or "-". The tests do not write into the source
// tree by default: a test run, in CI or on a newcomer's machine, must
// leave tracked files alone; `make screenshots` points it at
// docs/console/.
func screenshotDir() string {
	if d := os.Getenv("WEFT_SCREENSHOTS"); d != "-" {
		return d
	}
	return ""
}

// screenshot saves the whole page as NAME.png in the screenshot
// directory.
func screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	dir := screenshotDir()
	if dir == "" {
		return
	}
	png := get(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// cookies are the browser's cookies for url.
func cookies(t testing.TB, ctx context.Context, url string) []*network.Cookie {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
	if err != nil {
		t.Fatalf("browser: read cookies: %v", err)
	}
	return res.Cookies
}

// server is a real `weft server` process on a loopback port, with its
// own data directory.
type server struct {
	t       testing.TB
	weft    string
	dataDir string
	URL     string
	cmd     *exec.Cmd
	logs    *tstest.Buffer // the server's stdout and stderr
}

// startServer runs `weft server` on 127.0.0.1 (no STUN, no metrics
// listener: nothing but loopback HTTP) and waits for /healthz.
func startServer(t testing.TB) *server {
	t.Helper()
	return startServerIn(t, t.TempDir())
}

// startServerIn is startServer with the data directory dataDir.
func startServerIn(t testing.TB, dataDir string) *server {
	t.Helper()
	addr := freeAddr(t)
	return startServerAt(t, dataDir, addr, "http://"+addr)
}

// freeAddr is a loopback address with a port free now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServerAt runs `weft server` listening on addr, known to browsers
// as serverURL, with more flags in extra.
func startServerAt(t testing.TB, dataDir, addr, serverURL string, extra ...string) *server {
	t.Helper()
	s := &server{t: t, weft: labtest.WeftBinary(t), dataDir: dataDir, URL: serverURL, logs: new(tstest.Buffer)}
	s.cmd = exec.Command(s.weft, append([]string{"server", "--listen", addr, "--data-dir", s.dataDir, "--server-url", s.URL,
		"--stun-listen=", "--metrics-listen="}, extra...)...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start weft server: %v", err)
	}
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		if t.Failed() {
			t.Logf("weft server's log:\n%s", s.logs)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("weft server did not answer /healthz in 20s: %v\n%s", err, s.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// admin runs `weft admin --data-dir D args...` and returns its output.
func (s *server) admin(args ...string) string {
	s.t.Helper()
	out, err := exec.Command(s.weft, append([]string{"admin", "--data-dir", s.dataDir}, args...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("weft admin %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// signIn opens a fresh console link (its origin replaced by base, the
// address the browser reaches the server at) and presses Sign in; it
// checks the session cookie's flags.
func signIn(t testing.TB, ctx context.Context, link, base string) {
	t.Helper()
	link = strings.TrimSpace(link)
	i := strings.Index(link, "/admin/login?")
	if i < 0 {
		t.Fatalf("console-link printed %q, not a login link", link)
	}
	do(t, ctx, "sign in",
		chromedp.Navigate(base+link[i:]),
		chromedp.WaitVisible(chromedp.ID("signin")),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("nodes")),
	)
	var found bool
	for _, c := range cookies(t, ctx, base+"/admin/") {
		if c.Name == "weft_session" {
			found = true
			if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict || c.Path != "/admin/" {
				t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/admin/", c)
			}
		}
	}
	if !found {
		t.Fatal("signed in, but the browser holds no weft_session cookie")
	}
}
