package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUpAuthKey(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte("wk-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(v string) func(string) string {
		return func(name string) string {
			if name == authKeyEnv {
				return v
			}
			return ""
		}
	}
	tests := []struct {
		name, flag, file, env, stdin string
		want                         string
		wantErr                      string
	}{
		{name: "flag", flag: "wk-flag", env: "wk-env", want: "wk-flag"},
		{name: "file", file: keyFile, env: "wk-env", want: "wk-from-file"},
		{name: "stdin", file: "-", stdin: " wk-stdin\n", want: "wk-stdin"},
		{name: "environment", env: "wk-env\n", want: "wk-env"},
		{name: "none", want: ""},
		{name: "both flags", flag: "a", file: keyFile, wantErr: "not both"},
		{name: "empty file", file: empty, wantErr: "is empty"},
		{name: "missing file", file: filepath.Join(dir, "nope"), wantErr: "reading the pre-auth key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := upAuthKeyFrom(tt.flag, tt.file, env(tt.env), strings.NewReader(tt.stdin))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	var ue usageError
	if _, err := upAuthKeyFrom("a", keyFile, env(""), nil); !errors.As(err, &ue) {
		t.Errorf("both flags: %v is not a usage error", err)
	}
}
