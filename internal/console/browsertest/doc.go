// Package browsertest drives weft's web console in a real Chromium
// (Debian's chromium package, through the DevTools protocol with chromedp)
// against a real `weft server` process: signing in with a console link,
// the policy editor, pre-auth keys, CSRF from another origin, signing
// out, and in a lab tailnet (root only) approving an exit node and seeing
// the change reach a node. The tests skip, saying why, when Chromium is
// not installed. They save screenshots of the main pages to docs/console/
// (WEFT_SCREENSHOTS names another directory; "-" saves none).
package browsertest
