//go:build unix && !linux

package rie

import "syscall"

// sysProcAttr puts the emulator in its own process group, so Close can
// signal it and whatever shares the group.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

type proc struct{}

// descendants is not available without /proc: the emulator kills its
// runtime itself when it gets SIGTERM.
func descendants(int) []proc { return nil }

func killStrays([]proc) {}
