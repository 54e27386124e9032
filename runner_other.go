//go:build !linux

package main

import (
	"log/slog"
	"syscall"
)

// procGroupAttr has no process group to ask for off Linux.
func procGroupAttr() *syscall.SysProcAttr { return nil }

// signalProcGroup is unsupported off Linux: the agent targets Linux images.
func signalProcGroup(pgid int, sig syscall.Signal) error { return ErrProcUnsupported }

// chooseExitMonitor refuses off Linux, so the agent fails at start instead
// of supervising sensors it could not stop.
func chooseExitMonitor(log *slog.Logger) (exitMonitor, string, func(), error) {
	return nil, "", nil, ErrProcUnsupported
}
