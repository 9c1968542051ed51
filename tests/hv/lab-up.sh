#!/usr/bin/env bash
# Start the real-hypervisor test lab (run as root): two libvirt "hosts" in network
# namespaces, reached from this (root) namespace, the front-end, over ssh.
#
# usage: tests/hv/lab-up.sh          (NEBTWIST_LAB, default /var/tmp/nebtwist-lab)
# A lab already up is torn down first (lab-down.sh). Stop it with tests/hv/lab-down.sh.
#
# Topology
#   root ns (front-end)  nt-fe 198.51.100.254/24 --veth--> nt-sw: bridge "mgmt"
#   nt-h1  eth0 198.51.100.1/24 --veth--> mgmt      nt-h2  eth0 198.51.100.2/24 --veth--> mgmt
#   each host: a second NIC eth1 (up, no address) --veth--> nt-sw: bridge "vmnet" (the
#   hosts' VM-traffic link, a PHYDEV for the VNM drivers: 802.1Q, ovswitch, or a bridge
#   a test makes), bridge onebr0 203.0.113.254/24 (VM NICs), its own mount + UTS namespace
#   (hostname nt-hN) with private /etc/libvirt (host_uuid, migration_host), /run/libvirt,
#   /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt and $LAB/local (from
#   $LAB/hosts/nt-hN/local), running virtlogd, libvirtd (QEMU as root, no security driver)
#   and sshd on its IP. $LAB/shared is the same folder everywhere; the front-end's
#   $LAB/local is $LAB/local itself.
#   Open vSwitch, when installed (ovsdb-server, ovs-vswitchd): per host its own
#   ovsdb-server + ovs-vswitchd (userspace datapath only: bridges need
#   datapath_type=netdev here) in the host's namespaces, db and run dir
#   $LAB/hosts/nt-hN/ovs bind-mounted at /run/openvswitch in the host's mount
#   namespace, so plain ovs-vsctl/ovs-ofctl and libvirt on the host find it.
# SSH: key $LAB/ssh/id_ed25519, client config $LAB/ssh/config (Host nt-h1 / nt-h2), wrappers
#   $LAB/bin/ssh and $LAB/bin/scp (`ssh -F $LAB/ssh/config`). Put $LAB/bin first on PATH and
#   `virsh -c qemu+ssh://nt-h1/system` works; the hosts' libvirtd and ssh sessions have it
#   first on PATH too (peer-to-peer migration, host-to-host scp). Nothing is written to ~/.ssh.
# Result: $LAB/lab.json describes it all (read by tests/hvlab.py).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
LAB=${NEBTWIST_LAB:-/var/tmp/nebtwist-lab}
HOSTS="nt-h1 nt-h2"
FE_IP=198.51.100.254
BR=onebr0
BR_IP=203.0.113.254
WAIT=${NEBTWIST_LAB_WAIT:-180}     # seconds to wait for each host's libvirt over ssh

[ "$(id -u)" = 0 ] || { echo "lab-up: run as root" >&2; exit 1; }
for c in ip unshare virtlogd libvirtd virsh /usr/sbin/sshd ssh-keygen python3; do
    command -v "$c" >/dev/null || { echo "lab-up: $c is missing" >&2; exit 1; }
done
t0=$(date +%s.%N)
mkdir -p "$LAB"
LAB=$(cd "$LAB" && pwd)
export NEBTWIST_LAB=$LAB
"$HERE/lab-down.sh" >/dev/null 2>&1 || true

host_ip() { echo "198.51.100.${1#nt-h}"; }

# Open vSwitch only when installed (apt-get install openvswitch-switch; no service needed)
OVS_SCHEMA=/usr/share/openvswitch/vswitch.ovsschema
OVS=1
for c in ovsdb-tool ovsdb-server ovs-vswitchd ovs-vsctl; do command -v "$c" >/dev/null || OVS=0; done
[ -f "$OVS_SCHEMA" ] || OVS=0

mkdir -p "$LAB"/{ssh,bin,hosts,shared,local} /run/sshd
chmod 755 "$LAB" "$LAB/shared" "$LAB/local"

# --- ssh: key, client config, wrappers, sshd config -------------------------------------
S=$LAB/ssh
[ -f "$S/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C nebtwist-lab -f "$S/id_ed25519"
[ -f "$S/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C nebtwist-lab-host -f "$S/host_ed25519"
cp "$S/id_ed25519.pub" "$S/authorized_keys"
{
    for h in $HOSTS; do
        cat <<EOF
Host $h
  HostName $(host_ip "$h")
EOF
    done
    cat <<EOF
Host *
  User root
  IdentityFile $S/id_ed25519
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  BatchMode yes
  ConnectTimeout 30
EOF
} > "$S/config"
chmod 600 "$S/config" "$S/id_ed25519"
for t in ssh scp; do
    printf '#!/bin/sh\nexec /usr/bin/%s -F %s "$@"\n' "$t" "$S/config" > "$LAB/bin/$t"
    chmod 755 "$LAB/bin/$t"
done
LABPATH=$LAB/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# --- network ----------------------------------------------------------------------------
ip netns add nt-sw
ip -n nt-sw link set lo up
ip -n nt-sw link add mgmt type bridge
ip -n nt-sw link set mgmt up
ip -n nt-sw link add vmnet type bridge
ip -n nt-sw link set vmnet up
ip link add nt-fe type veth peer name fe netns nt-sw
ip -n nt-sw link set fe master mgmt up
ip addr add $FE_IP/24 dev nt-fe
ip link set nt-fe up

n=0
for h in $HOSTS; do
    n=$((n + 1))
    hip=$(host_ip "$h")
    ip netns add "$h"
    ip -n "$h" link set lo up
    ip link add "$h" type veth peer name eth0 netns "$h"
    ip link set "$h" netns nt-sw
    ip -n nt-sw link set "$h" master mgmt up
    ip -n "$h" addr add "$hip/24" dev eth0
    ip -n "$h" link set eth0 up
    ip link add "$h-v" type veth peer name eth1 netns "$h"
    ip link set "$h-v" netns nt-sw
    ip -n nt-sw link set "$h-v" master vmnet up
    ip -n "$h" link set eth1 up
    ip -n "$h" link add $BR type bridge
    ip -n "$h" addr add $BR_IP/24 dev $BR
    ip -n "$h" link set $BR up

    # --- the host's private folders ---
    d=$LAB/hosts/$h
    rm -rf "$d"
    mkdir -p "$d"/{run,lib,log,cache,local}
    cp -a /etc/libvirt "$d/etc-libvirt"
    # no domains or autostart networks of the root libvirtd on a lab host
    rm -f "$d"/etc-libvirt/qemu/*.xml "$d"/etc-libvirt/qemu/autostart/*.xml \
        "$d"/etc-libvirt/qemu/networks/autostart/*.xml
    printf '\n# nebtwist lab\nhost_uuid = "00000000-0000-4000-8000-00000000000%d"\nlisten_tls = 0\n' \
        "$n" >> "$d/etc-libvirt/libvirtd.conf"
    printf '\n# nebtwist lab\nmigration_host = "%s"\nuser = "root"\ngroup = "root"\ndynamic_ownership = 0\nsecurity_driver = "none"\n' \
        "$hip" >> "$d/etc-libvirt/qemu.conf"
    mkdir -p "$d"/lib/{boot,images,qemu/save,qemu/snapshot,qemu/dump,qemu/checkpoint,qemu/nvram,qemu/ram}
    # the root libvirtd's QEMU capabilities cache spares each host a ~10 s re-probe
    [ -d /var/cache/libvirt ] && cp -a /var/cache/libvirt/. "$d/cache/" 2>/dev/null || true
    cat > "$d/sshd_config" <<EOF
# nebtwist lab host $h
ListenAddress $hip
HostKey $S/host_ed25519
PidFile $d/sshd.pid
AuthorizedKeysFile $S/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
X11Forwarding no
PrintMotd no
SetEnv PATH=$LABPATH NEBTWIST_LAB=$LAB
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
    # --- Open vSwitch (userspace datapath), when installed ---
    ovs_start=""
    if [ "$OVS" = 1 ]; then
        mkdir -p "$d/ovs" /run/openvswitch
        ovsdb-tool create "$d/ovs/conf.db" "$OVS_SCHEMA"
        ovs_start="
        mount --bind $d/ovs /run/openvswitch
        export OVS_RUNDIR=/run/openvswitch OVS_LOGDIR=$d/ovs OVS_DBDIR=$d/ovs OVS_SYSCONFDIR=$d/ovs
        ovsdb-server $d/ovs/conf.db --remote=punix:/run/openvswitch/db.sock \
            --pidfile=$d/ovs/ovsdb-server.pid --detach --log-file=$d/ovs/ovsdb-server.log -vconsole:off 2>>$d/ovs/start.err
        ovs-vsctl --db=unix:/run/openvswitch/db.sock --no-wait init
        ovs-vswitchd unix:/run/openvswitch/db.sock --pidfile=$d/ovs/ovs-vswitchd.pid \
            --detach --log-file=$d/ovs/ovs-vswitchd.log -vconsole:off 2>>$d/ovs/start.err"
    fi
    # --- daemons, inside the host's own mount + UTS namespace ---
    ip netns exec "$h" unshare --mount --uts --propagation private \
        env PATH="$LABPATH" NEBTWIST_LAB="$LAB" sh -ec "
        hostname $h
        mount --bind $d/etc-libvirt /etc/libvirt
        mount --bind $d/run /run/libvirt
        mount --bind $d/lib /var/lib/libvirt
        mount --bind $d/log /var/log/libvirt
        mount --bind $d/cache /var/cache/libvirt
        mount --bind $d/local $LAB/local
        virtlogd -d -p $d/virtlogd.pid
        libvirtd -d -p $d/libvirtd.pid
        $ovs_start
        /usr/sbin/sshd -f $d/sshd_config -E $d/sshd.log
    "
done

# --- guest (quick when up to date) ------------------------------------------------------
"$HERE/build-guest.sh" "$LAB/guest" >/dev/null || echo "lab-up: WARNING: guest build failed" >&2

# --- wait until each host's libvirt answers over qemu+ssh from here ---------------------
for h in $HOSTS; do
    deadline=$(( $(date +%s) + WAIT ))
    until out=$(PATH=$LABPATH virsh -c "qemu+ssh://$h/system" hostname 2>&1) && [ "$out" = "$h" ]; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "lab-up: $h does not answer qemu+ssh://$h/system after ${WAIT}s: $out" >&2
            tail -n 20 "$LAB/hosts/$h/sshd.log" "$LAB/hosts/$h/log/libvirtd.log" 2>/dev/null >&2 || true
            exit 1
        fi
        sleep 0.5
    done
done

# --- each host's Open vSwitch answers (ovs-vswitchd connected to its db) ------------------
if [ "$OVS" = 1 ]; then
    for h in $HOSTS; do
        deadline=$(( $(date +%s) + WAIT ))
        until ip netns exec "$h" ovs-vsctl --db="unix:$LAB/hosts/$h/ovs/db.sock" --timeout=10 \
                get Open_vSwitch . ovs_version >/dev/null 2>&1 \
              && ls "$LAB/hosts/$h/ovs/"ovs-vswitchd.*.ctl >/dev/null 2>&1; do
            if [ "$(date +%s)" -ge "$deadline" ]; then
                echo "lab-up: Open vSwitch of $h does not answer after ${WAIT}s" >&2
                tail -n 20 "$LAB/hosts/$h/ovs/"*.log "$LAB/hosts/$h/ovs/start.err" >&2 2>/dev/null || true
                exit 1
            fi
            sleep 0.5
        done
    done
fi

# --- lab.json -----------------------------------------------------------------------------
LAB=$LAB HOSTS=$HOSTS FE_IP=$FE_IP BR=$BR BR_IP=$BR_IP OVS=$OVS python3 - <<'EOF'
import json, os
lab = os.environ["LAB"]
hosts = []
for i, name in enumerate(os.environ["HOSTS"].split(), 1):
    d = f"{lab}/hosts/{name}"
    hosts.append({
        "name": name, "ip": f"198.51.100.{i}", "netns": name, "hostname": name,
        "uri": f"qemu+ssh://{name}/system",
        "host_uuid": f"00000000-0000-4000-8000-00000000000{i}",
        "dir": d, "local": f"{d}/local",
        "pid_files": {p: f"{d}/{p}.pid" for p in ("libvirtd", "virtlogd", "sshd")},
        "phydev": "eth1",
        "ovs": None if os.environ["OVS"] != "1" else {
            "datapath_type": "netdev",
            "db": "unix:/run/openvswitch/db.sock", "rundir": "/run/openvswitch",
            "db_outside": f"unix:{d}/ovs/db.sock", "rundir_outside": f"{d}/ovs",
            "pid_files": {p: f"{d}/ovs/{p}.pid" for p in ("ovsdb-server", "ovs-vswitchd")},
        },
    })
doc = {
    "version": 1, "lab": lab, "hosts": hosts,
    "frontend": {"ip": os.environ["FE_IP"], "prefix": 24, "iface": "nt-fe", "switch_netns": "nt-sw",
                 "switch_bridge": "mgmt"},
    "ssh": {"bin_dir": f"{lab}/bin", "config": f"{lab}/ssh/config", "key": f"{lab}/ssh/id_ed25519"},
    "guest": {"kernel": f"{lab}/guest/vmlinuz", "initrd": f"{lab}/guest/initrd.img",
              "disk": f"{lab}/guest/disk.qcow2"},
    "bridge": {"name": os.environ["BR"], "ip": os.environ["BR_IP"], "prefix": 24},
    "phydev": {"name": "eth1", "switch_netns": "nt-sw", "switch_bridge": "vmnet"},
    "local_dir": f"{lab}/local", "shared_dir": f"{lab}/shared",
}
tmp = f"{lab}/lab.json.tmp"
with open(tmp, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
os.replace(tmp, f"{lab}/lab.json")
EOF
printf 'lab-up: %s up in %.1f s (%s)\n' "$HOSTS" "$(echo "$(date +%s.%N) - $t0" | bc)" "$LAB/lab.json"
