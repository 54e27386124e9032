package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
)

// procGroupAttr puts every child in a new process group of its own
// (Setpgid; pgid = its pid), so that one signal to -pgid reaches the sensor
// and everything it spawned, and nothing else (CONTRACT §7).
func procGroupAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// signalProcGroup sends sig to every process of group pgid. A group that no
// longer exists is success: the goal (the group is gone) is met. pgid 0 and
// 1 are refused, because kill(0) and kill(-1) would signal the agent's own
// group or every process it may signal.
func signalProcGroup(pgid int, sig syscall.Signal) error {
	if pgid <= 1 {
		return fmt.Errorf("signal process group %d: %w", pgid, ErrProcSpec)
	}
	err := syscall.Kill(-pgid, sig)
	if err == nil || errors.Is(err, syscall.ESRCH) || errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return fmt.Errorf("signal process group %d with %v: %w", pgid, sig, err)
}

// chooseExitMonitor returns the reaper when the agent is PID 1 or can become
// a child subreaper, and the plain monitor otherwise (with a warning: the
// agent then cannot reap its sensors' orphans, the real init does).
func chooseExitMonitor(log *slog.Logger) (exitMonitor, string, func(), error) {
	rp, err := acquireReaper(log)
	if err != nil {
		log.Warn("cannot reap orphaned sensor descendants, waiting per process instead", "error", err)
		return plainMonitor{}, monitorPlain, nil, nil
	}
	return rp, rp.strategy(), rp.release, nil
}
