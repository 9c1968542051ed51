#!/usr/bin/env bash
# Stop the real-hypervisor test lab started by tests/hv/lab-up.sh (run as root).
#
# usage: tests/hv/lab-down.sh        (NEBTWIST_LAB, default /var/tmp/nebtwist-lab)
# Destroys the domains still running on each host (through the host's own libvirtd, or by
# the QEMU pid files libvirt left when that libvirtd is gone), stops sshd, libvirtd and
# virtlogd and each host's Open vSwitch daemons (ovs-vswitchd, ovsdb-server) by their pid
# files (never by name), deletes the namespaces nt-h1, nt-h2, nt-sw (with the eth1 links)
# and the nt-fe veth, and removes $LAB/lab.json. A half-made lab is fine: whatever is
# missing is skipped. Keeps $LAB/guest, $LAB/shared, $LAB/ssh and the hosts' logs.
set -uo pipefail

LAB=${NEBTWIST_LAB:-/var/tmp/nebtwist-lab}
HOSTS="nt-h1 nt-h2"
[ "$(id -u)" = 0 ] || { echo "lab-down: run as root" >&2; exit 1; }
rm -f "$LAB/lab.json"

alive() {  # $1: pid; a zombie (exited, not yet reaped by PID 1) counts as gone
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
pid_of() {  # $1: pid file -> a live pid, or nothing
    local p
    p=$(cat "$1" 2>/dev/null) || return 0
    case $p in ''|*[!0-9]*) return 0 ;; esac
    if alive "$p"; then echo "$p"; fi
}
stop_pid() {  # $1: pid file; TERM, wait up to 10 s, then KILL
    local p i
    p=$(pid_of "$1")
    [ -n "$p" ] || { rm -f "$1"; return 0; }
    kill "$p" 2>/dev/null
    for i in $(seq 1 50); do alive "$p" || break; sleep 0.1; done
    alive "$p" && kill -9 "$p" 2>/dev/null
    echo "lab-down: stopped $(basename "$1" .pid) $p"
    rm -f "$1"
}

for h in $HOSTS; do
    d=$LAB/hosts/$h
    [ -d "$d" ] || continue
    lp=$(pid_of "$d/libvirtd.pid")
    if [ -n "$lp" ]; then
        # the host's libvirtd socket lives in its mount namespace: enter it through the pid
        for dom in $(nsenter -t "$lp" -m -n virsh -c qemu:///system list --name 2>/dev/null); do
            nsenter -t "$lp" -m -n virsh -c qemu:///system destroy "$dom" >/dev/null 2>&1 \
                && echo "lab-down: destroyed $dom on $h"
        done
    fi
    # open ssh sessions first (children of the listener, by parent pid): a session
    # outlives its listener and would hold on to the deleted namespace
    sp=$(pid_of "$d/sshd.pid")
    if [ -n "$sp" ]; then
        for c in $(ps -o pid= --ppid "$sp" 2>/dev/null); do kill "$c" 2>/dev/null || true; done
    fi
    stop_pid "$d/sshd.pid"
    stop_pid "$d/ovs/ovs-vswitchd.pid"
    stop_pid "$d/ovs/ovsdb-server.pid"
    stop_pid "$d/libvirtd.pid"
    stop_pid "$d/virtlogd.pid"
    # QEMU left behind by a libvirtd that is gone: libvirt's pid files in the host's /run/libvirt
    for f in "$d"/run/qemu/*.pid; do
        [ -e "$f" ] && stop_pid "$f"
    done
done

for ns in $HOSTS nt-sw; do
    ip netns list 2>/dev/null | grep -qw "^$ns" || continue
    left=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
    [ -n "$left" ] && echo "lab-down: WARNING: processes still in $ns (not started by the lab?): $left" >&2
    ip netns del "$ns"
done
ip link show nt-fe >/dev/null 2>&1 && ip link del nt-fe
echo "lab-down: done ($LAB)"
exit 0
