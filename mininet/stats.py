"""Figures read from /proc and /sys: CPU time and memory of a process, and what the switches cost."""

import os
import re


def process_stats(pid):
    """(CPU seconds, RSS KiB, peak RSS KiB) of a process, from /proc.

    CPU time is the sum of its threads' schedstat run time (nanoseconds): /proc/PID/stat counts
    in clock ticks of 10 ms, too coarse for a process that runs a few ms per second."""
    cpu = 0.0
    for task in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, task)) as f:
                cpu += int(f.read().split()[0]) / 1e9
        except FileNotFoundError:  # the thread ended meanwhile
            pass
    rss = hwm = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return cpu, rss, hwm


def switch_stats():
    """(CPU seconds of ovs-vswitchd, frames received by all switch ports) right now.

    With the userspace datapath every frame between two hosts is a packet ovs-vswitchd reads from
    one port socket and writes to another, so these two say what a workload costs the switches."""
    with open("/var/run/openvswitch/ovs-vswitchd.pid") as f:
        cpu = process_stats(int(f.read().strip()))[0]
    frames = 0
    for name in os.listdir("/sys/class/net"):
        if re.fullmatch(r"s\d+-eth\d+", name):
            with open("/sys/class/net/%s/statistics/rx_packets" % name) as f:
                frames += int(f.read())
    return cpu, frames


def slab_kib():
    """The kernel's slab memory, KiB (the whole machine's: network namespaces share it)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Slab:"):
                return int(line.split()[1])
    raise RuntimeError("no Slab in /proc/meminfo")


def tcp_retransmits(pid):
    """TCP segments retransmitted so far in the network namespace of process `pid` (a testbed
    host's kernel, whichever process of the host is named)."""
    with open("/proc/%d/net/snmp" % pid) as f:
        rows = [line.split() for line in f if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("RetransSegs")])
