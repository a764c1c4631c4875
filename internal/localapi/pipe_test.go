package localapi

import "testing"

func TestIsPipe(t *testing.T) {
	for path, want := range map[string]bool{
		`\\.\pipe\weft`:       true,
		`\\.\PIPE\weft`:       true,
		`/run/weft/weft.sock`: false,
		`C:\weft\weft.sock`:   false,
		`\\server\pipe\weft`:  false,
	} {
		if got := IsPipe(path); got != want {
			t.Errorf("IsPipe(%s) = %v, want %v", path, got, want)
		}
	}
}
