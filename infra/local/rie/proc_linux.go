package rie

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sysProcAttr puts the emulator in its own process group, so Close can
// signal it and whatever shares the group, and has the kernel kill it if the
// thread that started it (and so normally the whole program) dies first.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// proc identifies a process across pid reuse.
type proc struct {
	pid   int
	start string // start time in clock ticks since boot (/proc/PID/stat field 22)
}

// descendants lists the processes under pid. The emulator starts the
// bootstrap in a process group of its own, so signalling the emulator's
// group does not reach it.
func descendants(pid int) []proc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]proc{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, start, ok := stat(p)
		if ok {
			children[ppid] = append(children[ppid], proc{pid: p, start: start})
		}
	}
	var out []proc
	queue := []int{pid}
	for len(queue) > 0 {
		for _, c := range children[queue[0]] {
			out = append(out, c)
			queue = append(queue, c.pid)
		}
		queue = queue[1:]
	}
	return out
}

// stat reads a process's parent pid and start time; ok is false for a
// process that is gone or a zombie.
func stat(pid int) (ppid int, start string, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, "", false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces and parentheses
	if i < 0 {
		return 0, "", false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0, "", false
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, "", false
	}
	return ppid, f[19], true
}

// killStrays kills the processes of procs that are still alive (and are
// still the same processes, not a reused pid), and waits up to 2 s for them
// to die.
func killStrays(procs []proc) {
	alive := func(p proc) bool {
		_, start, ok := stat(p.pid)
		return ok && start == p.start
	}
	var killed []proc
	for _, p := range procs {
		if alive(p) && syscall.Kill(p.pid, syscall.SIGKILL) == nil {
			killed = append(killed, p)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for _, p := range killed {
		for alive(p) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
}
