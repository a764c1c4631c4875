package portmap

import "os"

func isRoot() bool { return os.Geteuid() == 0 }
