// Package browsertest drives weft's web console in a real Chromium
// (Debian's chromium package, through the DevTools protocol with chromedp)
// against a real `weft server` process: signing in with a console link,
// the policy editor, pre-auth keys, CSRF from another origin, signing
// out, and in a lab tailnet (root only) approving an exit node and seeing
// the change reach a node. The tests skip, saying why, when Chromium is
// not installed. With WEFT_SCREENSHOTS=DIR they save screenshots of the
// main pages there (`make screenshots` refreshes docs/console/); without
// it they save none, so running the tests leaves the tree as it was.
package browsertest
