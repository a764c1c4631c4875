package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// authKeyEnv is the environment variable `weft up` takes the pre-auth key
// from when no flag gives one. A key on the command line is visible to
// every user of the machine (ps, /proc/PID/cmdline); a file or the
// environment is not.
const authKeyEnv = "WEFT_AUTH_KEY"

// upAuthKey picks the pre-auth key for `weft up`: --auth-key, else the
// file named by --auth-key-file ("-" for standard input, read through
// stdin), else $WEFT_AUTH_KEY, else none. Giving both flags is an error.
func upAuthKey(flagKey, file string, getenv func(string) string) (string, error) {
	return upAuthKeyFrom(flagKey, file, getenv, os.Stdin)
}

func upAuthKeyFrom(flagKey, file string, getenv func(string) string, stdin io.Reader) (string, error) {
	switch {
	case flagKey != "" && file != "":
		return "", usageError{errors.New("give the pre-auth key with --auth-key or --auth-key-file, not both")}
	case flagKey != "":
		return flagKey, nil
	case file != "":
		var b []byte
		var err error
		if file == "-" {
			b, err = io.ReadAll(io.LimitReader(stdin, 4096))
		} else {
			b, err = os.ReadFile(file)
		}
		if err != nil {
			return "", fmt.Errorf("reading the pre-auth key: %w", err)
		}
		k := strings.TrimSpace(string(b))
		if k == "" {
			return "", usageError{fmt.Errorf("--auth-key-file %s is empty; put the key from `weft admin keys create` in it", file)}
		}
		return k, nil
	default:
		return strings.TrimSpace(getenv(authKeyEnv)), nil
	}
}
