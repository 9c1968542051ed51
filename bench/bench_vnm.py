"""VNM drivers: the time ``pre`` + ``post`` add to a deploy, per driver, over ssh.

Runs on the real-hypervisor lab (``tests/hvlab.py``: host ``nt-h1``, started as root with
``tests/hv/lab-up.sh``); without it, prints why and exits 0.

The front-end side is the shipped MAD, ``drivers/vnm/exec`` (one process per driver, as
the daemon runs it from oned.conf's ``VN_MAD``), fed ``PRE``/``POST``/``CLEAN`` request
lines for a VM XML with one NIC, as the core sends them around a deploy; each request
is timed from the line written to its ``SUCCESS`` reply (the driver runs the action
scripts through its host agent on the shared connection, or one ssh session each). Its
ssh runs over one shared connection: the bench starts an ssh ControlMaster to the host and hands the driver the
same ``ControlPath`` (``-o``, which the driver's own sharing options do not override), so
the floor, ``ssh nt-h1 true`` over that master, is measured in the same run, interleaved
with the drivers' rounds. A round per driver and VM id: ``PRE``; what libvirt would do
between (untimed: a tap on a bridge for dummy/fw/ebtables, an OVS port of the bridge
``pre`` made for ovswitch, the userspace datapath); ``POST``; ``CLEAN`` (timed, shown
apart: it runs after the domain is gone, not in the deploy's path). The first round of
each driver (it copies the remotes to the host) is left out.

Drivers: dummy, fw (with WHITE_PORTS_TCP and ICMP = drop), ebtables, ovswitch (skipped
when the lab has no Open vSwitch); 802.1Q is tried once and skipped with the driver's
own reason when the host cannot make VLAN devices (this kernel: no 802.1Q).

Prints per driver median pre, post, pre + post and clean, and pre + post against two
floors (the ratio and the time beyond them); asserts nothing. Everything it makes on the
host (bridge, taps, remotes, state folder) is removed at the end, on error too.

Usage: ``python bench/bench_vnm.py [--rounds 15] [--host nt-h1]`` (as root, the lab up).
"""

import argparse
import base64
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

import common  # noqa: E402

EXEC = os.path.join(ROOT, "drivers", "vnm", "exec")
DRIVERS = ("dummy", "fw", "ebtables", "ovswitch", "802.1Q")
BRIDGE = "ntbench0"      # a Linux bridge the bench makes (dummy, fw, ebtables)
OVS_BRIDGE = "ntbovs0"   # made by the ovswitch driver's pre
#: VM ids of the bench's fake VMs (their taps are one-<vid>-0).
FIRST_VID = 9000
TIMEOUT = 120


def median(values):
    return statistics.median(values) if values else float("nan")


def vm_xml(vid, driver):
    """The base64 of a ``<VM>`` with one NIC, as the core passes it (str)."""
    ip = f"203.0.113.{100 + vid % 100}"
    mac = "02:00:" + ":".join(f"{int(b):02x}" for b in ip.split("."))
    nic = {"NETWORK_ID": "7", "NIC_ID": "0", "TARGET": f"one-{vid}-0", "MAC": mac, "IP": ip,
           "BRIDGE": OVS_BRIDGE if driver == "ovswitch" else BRIDGE, "VLAN": "YES",
           "VLAN_ID": "100", "NETWORK_ADDRESS": "203.0.113.0", "NETWORK_MASK": "255.255.255.0"}
    if driver == "802.1Q":
        nic.update(PHYDEV="eth1", BRIDGE="ntbq100")
    if driver == "fw":
        nic.update(WHITE_PORTS_TCP="22,80:90", ICMP="drop")
    body = "".join(f"<{k}>{v}</{k}>" for k, v in nic.items())
    xml = (f"<VM><ID>{vid}</ID><NAME>bench-{vid}</NAME><TEMPLATE><NIC>{body}</NIC>"
           f"</TEMPLATE></VM>")
    return base64.b64encode(xml.encode()).decode()


class Driver:
    """One ``drivers/vnm/exec`` process speaking the MAD protocol."""

    def __init__(self, driver, args, env):
        self.proc = subprocess.Popen([EXEC, *args, driver], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env, bufsize=1, start_new_session=True)
        self.logs = []
        self.send("INIT")
        if self.read_until("INIT") != "INIT SUCCESS":
            raise RuntimeError(f"{driver}: INIT failed")

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def read_until(self, verb):
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the driver ended: {self.proc.stderr.read()}")
            line = line.rstrip("\n")
            if line.startswith(verb + " "):
                return line
            self.logs.append(line)

    def act(self, verb, vid, host, b64):
        """Send one request; ``(seconds, reply line)``."""
        t0 = time.perf_counter()
        self.send(f"{verb} {vid} {host} {b64}")
        reply = self.read_until(verb)
        return time.perf_counter() - t0, reply

    def close(self):
        with contextlib.suppress(OSError, ValueError):
            self.send("FINALIZE")
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per driver")
    parser.add_argument("--host", default=None, help="lab host (default: the first)")
    args = parser.parse_args(argv)
    lab = common.get_lab()
    if lab is None:
        return 0
    host = args.host or lab.hosts[0]
    tag = f"bench-{uuid.uuid4().hex[:8]}"
    remotes = os.path.join(lab.shared_dir, tag, "remotes")
    state = os.path.join(lab.local_dir, tag, "vnm")           # the host's private view
    control = tempfile.mkdtemp(prefix="nebtwist-bench-ssh-")
    ssh_opts = ["-o", f"ControlPath={control}/%C", "-o", "ControlMaster=auto",
                "-o", "ControlPersist=300"]
    ssh = [os.path.join(lab.bin_dir, "ssh"), *ssh_opts]
    env = lab.env()
    env["SCRIPTS_REMOTE_DIR"] = remotes
    print(common.machine_note())
    print(f"host {host}, {args.rounds} timed rounds per driver, load {common.loadavg()}")

    def on_host(command, check=True):
        r = subprocess.run([*ssh, host, command], capture_output=True, text=True, env=env,
                           stdin=subprocess.DEVNULL, timeout=TIMEOUT)
        if check and r.returncode != 0:
            raise RuntimeError(f"{host}: {command}: {r.stderr.strip()}")
        return r

    def floor():
        t0 = time.perf_counter()
        on_host("true")
        return time.perf_counter() - t0

    results = {}
    floors = []
    try:
        on_host("true")   # the master
        on_host(f"ip link add {BRIDGE} type bridge && ip link set {BRIDGE} up")
        ovs = lab.ovs(host) if hasattr(lab, "ovs") else None
        for driver in DRIVERS:
            if driver == "ovswitch" and not ovs:
                print(f"{driver:9s} skipped: no Open vSwitch on {host} in this lab")
                results[driver] = "skipped: no Open vSwitch in the lab"
                continue
            dargs = ["-F", lab.ssh_config, *ssh_opts, "-t", "4", "-w", "90",
                     "-e", f"VNM_STATE_DIR={state}"]
            if driver == "ovswitch":
                dargs += ["-e", "VNM_OVS_DATAPATH=netdev"]
            mad = Driver(driver, dargs, env)
            times = {"PRE": [], "POST": [], "CLEAN": [], "SUM": []}
            try:
                for i in range(args.rounds + 1):
                    vid = FIRST_VID + i
                    tap = f"one-{vid}-0"
                    b64 = vm_xml(vid, driver)
                    floors.append(floor())
                    pre, reply = mad.act("PRE", vid, host, b64)
                    if "SUCCESS" not in reply:
                        if driver == "802.1Q":
                            why = reply.split(str(vid), 1)[-1].strip()
                            print(f"{driver:9s} skipped: {why}")
                            results[driver] = f"skipped: {why}"
                            break
                        raise RuntimeError(f"{driver}: {reply}")
                    # what libvirt does when it creates the domain (untimed)
                    if driver == "ovswitch":
                        on_host(f"ovs-vsctl --timeout=20 add-port {OVS_BRIDGE} {tap} -- set "
                                f"interface {tap} type=internal")
                    elif driver == "802.1Q":
                        on_host(f"ip tuntap add {tap} mode tap && ip link set {tap} master "
                                f"ntbq100 up")
                    else:
                        on_host(f"ip tuntap add {tap} mode tap && ip link set {tap} master "
                                f"{BRIDGE} up")
                    post, reply = mad.act("POST", vid, host, b64)
                    if "SUCCESS" not in reply:
                        raise RuntimeError(f"{driver}: {reply}")
                    # the domain is gone (untimed), then clean
                    if driver != "ovswitch":
                        on_host(f"ip link del {tap}")
                    clean, reply = mad.act("CLEAN", vid, host, b64)
                    if "SUCCESS" not in reply:
                        raise RuntimeError(f"{driver}: {reply}")
                    if driver == "ovswitch":
                        on_host(f"ovs-vsctl --timeout=20 --if-exists del-port {OVS_BRIDGE} "
                                f"{tap}; ip link del {tap} 2>/dev/null; true")
                    if i == 0:
                        continue   # copied the remotes: not a deploy's cost
                    times["PRE"].append(pre)
                    times["POST"].append(post)
                    times["CLEAN"].append(clean)
                    times["SUM"].append(pre + post)
            finally:
                mad.close()
                on_host(f"for t in $(ls /sys/class/net | grep '^one-{str(FIRST_VID)[:2]}'); "
                        "do ip link del $t; done; true", check=False)
            if isinstance(results.get(driver), str):
                continue
            results[driver] = {k: median(v) for k, v in times.items()}
            results[driver]["max_sum"] = max(times["SUM"])
            m = results[driver]
            print(f"{driver:9s} pre {m['PRE'] * 1000:6.1f} ms  post {m['POST'] * 1000:6.1f} ms"
                  f"  pre+post {m['SUM'] * 1000:6.1f} ms (max {m['max_sum'] * 1000:.0f})"
                  f"  clean {m['CLEAN'] * 1000:6.1f} ms  (medians, n={len(times['SUM'])})")
    finally:
        on_host(f"ip link del {BRIDGE} 2>/dev/null; ovs-vsctl --timeout=20 --if-exists "
                f"del-br {OVS_BRIDGE} 2>/dev/null; ip link del ntbq100 2>/dev/null; true",
                check=False)
        subprocess.run([*ssh, "-O", "exit", host], capture_output=True, env=env,
                       stdin=subprocess.DEVNULL)
        shutil.rmtree(control, ignore_errors=True)
        shutil.rmtree(os.path.join(lab.shared_dir, tag), ignore_errors=True)
        shutil.rmtree(lab.host_path(host, os.path.join(lab.local_dir, tag)),
                      ignore_errors=True)

    f = median(floors)
    dummy = results.get("dummy")
    print()
    print(f"floor: ssh {host} true over the shared master: median {f * 1000:.1f} ms "
          f"(min {min(floors) * 1000:.1f}, max {max(floors) * 1000:.1f}, n={len(floors)}); "
          f"load {common.loadavg()}")
    print("| driver | pre | post | pre + post | / 2 x floor | beyond dummy's | clean |")
    print("|---|---|---|---|---|---|---|")
    for driver in DRIVERS:
        m = results.get(driver)
        if isinstance(m, str) or m is None:
            print(f"| {driver} | {m or 'not run'} | | | | | |")
            continue
        beyond = (m["SUM"] - dummy["SUM"]) * 1000 if isinstance(dummy, dict) else float("nan")
        print(f"| {driver} | {m['PRE'] * 1000:.0f} ms | {m['POST'] * 1000:.0f} ms | "
              f"{m['SUM'] * 1000:.0f} ms | {m['SUM'] / (2 * f):.2f}x | {beyond:+.0f} ms | "
              f"{m['CLEAN'] * 1000:.0f} ms |")
    worst = max((m["SUM"] for m in results.values() if isinstance(m, dict)), default=0)
    print(f"aim: pre + post < 200 ms per deploy: {'met' if worst < 0.2 else 'missed'} "
          f"(worst median {worst * 1000:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
