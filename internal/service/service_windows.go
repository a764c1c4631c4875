package service

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"
)

// Install creates the Windows service (automatic start, as LocalSystem,
// restarted by the service manager after a failure) and starts it.
func (m Manager) Install(ctx context.Context, spec Spec) error {
	sm, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("service: connect to the service manager (run as Administrator): %w", err)
	}
	defer sm.Disconnect()
	if s, err := sm.OpenService(Name); err == nil {
		s.Close()
		return fmt.Errorf("service: %s is already installed; weft service uninstall first", Name)
	}
	s, err := sm.CreateService(Name, spec.Binary, mgr.Config{
		StartType:    mgr.StartAutomatic,
		DisplayName:  "weft mesh VPN",
		Description:  "Keeps this machine in its weft tailnet.",
		ErrorControl: mgr.ErrorNormal,
		// A service SID of its own lets the exit-node firewall (WFP)
		// permit exactly this service's traffic and nothing else in
		// the same executable.
		SidType: windows.SERVICE_SID_TYPE_UNRESTRICTED,
	}, append([]string{"daemon"}, spec.Args...)...)
	if err != nil {
		return fmt.Errorf("service: create: %w", err)
	}
	defer s.Close()
	restart := []mgr.RecoveryAction{
		{Type: mgr.ServiceRestart, Delay: 2 * time.Second},
		{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
		{Type: mgr.ServiceRestart, Delay: 30 * time.Second},
	}
	if err := s.SetRecoveryActions(restart, 24*60*60); err != nil {
		return fmt.Errorf("service: restart on failure: %w", err)
	}
	if err := s.Start(); err != nil {
		return fmt.Errorf("service: start: %w", err)
	}
	return nil
}

// Uninstall stops and deletes the service; the state dir stays.
func (m Manager) Uninstall(ctx context.Context) error {
	return m.withService(func(s *mgr.Service) error {
		m.stop(ctx, s)
		if err := s.Delete(); err != nil {
			return fmt.Errorf("service: delete: %w", err)
		}
		return nil
	})
}

// Start starts the service.
func (m Manager) Start(ctx context.Context) error {
	return m.withService(func(s *mgr.Service) error {
		if err := s.Start(); err != nil {
			return fmt.Errorf("service: start: %w", err)
		}
		return nil
	})
}

// Stop stops the service and waits (15 s at most) until it has.
func (m Manager) Stop(ctx context.Context) error {
	return m.withService(func(s *mgr.Service) error { return m.stop(ctx, s) })
}

func (m Manager) stop(ctx context.Context, s *mgr.Service) error {
	st, err := s.Control(svc.Stop)
	if err != nil {
		return fmt.Errorf("service: stop: %w", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for st.State != svc.Stopped && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(300 * time.Millisecond)
		if st, err = s.Query(); err != nil {
			return fmt.Errorf("service: query: %w", err)
		}
	}
	return nil
}

func (m Manager) withService(fn func(*mgr.Service) error) error {
	sm, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("service: connect to the service manager (run as Administrator): %w", err)
	}
	defer sm.Disconnect()
	s, err := sm.OpenService(Name)
	if err != nil {
		return fmt.Errorf("service: %s is not installed: %w", Name, err)
	}
	defer s.Close()
	return fn(s)
}

// IsService reports whether this process was started by the service
// manager.
func IsService() bool {
	ok, err := svc.IsWindowsService()
	return err == nil && ok
}

// RunService runs fn as the Windows service: the service manager's stop
// or shutdown request cancels fn's context.
func RunService(fn func(ctx context.Context) error) error {
	return svc.Run(Name, handler{fn})
}

type handler struct {
	fn func(ctx context.Context) error
}

func (h handler) Execute(args []string, req <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.fn(ctx) }()
	status <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	for {
		select {
		case err := <-done:
			if err != nil {
				return true, uint32(windows.ERROR_SERVICE_SPECIFIC_ERROR)
			}
			return false, 0
		case c := <-req:
			switch c.Cmd {
			case svc.Interrogate:
				status <- c.CurrentStatus
			case svc.Stop, svc.Shutdown:
				status <- svc.Status{State: svc.StopPending}
				cancel()
			}
		}
	}
}
