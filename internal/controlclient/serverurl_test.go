package controlclient

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
)

func TestCheckServerURL(t *testing.T) {
	tests := []struct {
		in, want string // want: a part of the error; "" for none
	}{
		{"http://203.0.113.10:8080", ""},
		{"https://ctrl.example", ""},
		{"203.0.113.10:8080", "add http:// or https:// (for example http://203.0.113.10:8080)"},
		{"ctrl.example", "add http:// or https://"},
		{"ftp://ctrl.example", "must be http:// or https://"},
		{"http://", "has no host"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			err := CheckServerURL(tt.in)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("CheckServerURL(%q) = %v, want %q", tt.in, err, tt.want)
			}
		})
	}
}

// TestUnreachableError: a server name that does not resolve is said as
// such, not as a context deadline.
func TestUnreachableError(t *testing.T) {
	urlErr := func(inner error) error {
		return &url.Error{Op: "Get", URL: "http://ctrl.example:8080/key", Err: &net.OpError{Op: "dial", Net: "tcp", Err: inner}}
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"no such host", urlErr(&net.DNSError{Err: "no such host", Name: "ctrl.example", IsNotFound: true}), `the server name "ctrl.example" did not resolve (no such host)`},
		{"lookup timed out", urlErr(&net.DNSError{Err: "i/o timeout", Name: "ctrl.example", IsTimeout: true}), `"ctrl.example" did not resolve (the DNS lookup timed out)`},
		{"refused", urlErr(fmt.Errorf("connect: connection refused")), "check the URL and that the server runs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := unreachableError("http://ctrl.example:8080", tt.err)
			if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("unreachableError = %v, want ErrUnreachable saying %q", err, tt.want)
			}
		})
	}
}
