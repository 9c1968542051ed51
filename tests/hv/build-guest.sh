#!/usr/bin/env bash
# Build the tiny test guest for the real-hypervisor lab (QEMU TCG, direct kernel boot).
#
# usage: tests/hv/build-guest.sh [OUT]
#   OUT     output folder, default $NEBTWIST_LAB/guest ($NEBTWIST_LAB defaults to
#           /var/tmp/nebtwist-lab)
# Env: NEBTWIST_CACHE (default ~/.cache/nebtwist): the two .debs are kept in
#      $NEBTWIST_CACHE/guest-dl and reused, so a rebuild from the cache needs no network.
#      FORCE=1 rebuilds even when the outputs are up to date.
#
# Inputs: Debian's cloud kernel (linux-image-<ver>-cloud-amd64, the version that
# linux-image-cloud-amd64 depends on, ~27 MB) and busybox-static (~1 MB).
# Outputs in OUT:
#   vmlinuz      the kernel (~14 MB)
#   initrd.img   busybox + the virtio/ata/isofs/acpi modules + /init (~2 MB, gzip)
#   disk.qcow2   16 MiB ext4 image (qcow2) holding /hello.txt = "hello-from-vda",
#                an OpenNebula image stand-in to attach as vda
# Nothing is rebuilt when all three are newer than this script and both .debs.
#
# The guest's /init (PID 1, a busybox shell) prints these markers on the console
# (boot with console=ttyS0):
#   NEBTWIST-GUEST-BOOTED <uptime s>
#   NEBTWIST-CONTEXT-BEGIN / <context.sh> / NEBTWIST-CONTEXT-END   (CD-ROM with context.sh,
#                                     as OpenNebula's CONTEXT ISO), or NEBTWIST-CONTEXT-NONE
#   NEBTWIST-DISK <first line of /hello.txt on vda>
#   NEBTWIST-NET eth0 <mac> <ip|none>
#       ip: ETH0_IP from context.sh, else IP, else from an OpenNebula MAC
#       02:00:a:b:c:d -> a.b.c.d (OpenNebula 3.x vmcontext/MAC-prefix convention); /24
#       unless ETH0_MASK gives a dotted mask or ETH0_PREFIX a length
#   NEBTWIST-TICK <n>            every 2 s (n from 1), proves the guest runs
# Network checks, when CONTEXT has NEBTWIST_PING="<ip> ..." (and eth0 an address): a
# background loop, every ~2 s, pings each ip once (ping -c 1 -W 1) and prints
#   PING-OK <ip> | PING-FAIL <ip>
#   with NEBTWIST_SPOOF=<mac>: then the same with eth0's MAC set to <mac> (neighbours
#     told by an unsolicited ARP), then the real MAC back (announced again):
#   SPOOF-OK <ip> | SPOOF-FAIL <ip>
#   with NEBTWIST_MASK2=<dotted mask>: then the same with eth0's address on that mask
#     (the seed's "change the network mask"), then the first mask back:
#   MASK2-OK <ip> | MASK2-FAIL <ip>
#   NEBTWIST-ACPI-POWEROFF       on the ACPI power button (virDomainShutdown), then poweroff -f
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SELF=$HERE/$(basename "$0")
LAB=${NEBTWIST_LAB:-/var/tmp/nebtwist-lab}
OUT=${1:-$LAB/guest}
CACHE=${NEBTWIST_CACHE:-$HOME/.cache/nebtwist}
DL=$CACHE/guest-dl
mkdir -p "$OUT" "$DL"
OUT=$(cd "$OUT" && pwd)

t0=$(date +%s.%N)
cd "$DL"
have_kernel() { ls linux-image-*-cloud-amd64_*.deb >/dev/null 2>&1; }
have_busybox() { ls busybox-static_*.deb >/dev/null 2>&1; }
kernel_pkg() {
    apt-cache depends linux-image-cloud-amd64 2>/dev/null \
        | awk '/Depends: linux-image-[0-9]/{print $2; exit}'
}
if ! have_kernel || ! have_busybox; then
    K=$(kernel_pkg || true)
    if [ -z "$K" ] || ! apt-cache show busybox-static >/dev/null 2>&1; then
        apt-get update -qq          # a fresh machine may have no package lists yet
        K=$(kernel_pkg)
    fi
    [ -n "$K" ] || { echo "build-guest: cannot resolve linux-image-cloud-amd64" >&2; exit 1; }
    # apt-get download writes into the current directory ($DL)
    have_kernel || apt-get download -qq -o APT::Sandbox::User=root "$K"
    have_busybox || apt-get download -qq -o APT::Sandbox::User=root busybox-static
    echo "build-guest: downloaded into $DL"
fi
KDEB=$DL/$(ls -1 linux-image-*-cloud-amd64_*.deb | sort -V | tail -n 1)
BDEB=$DL/$(ls -1 busybox-static_*.deb | sort -V | tail -n 1)

fresh=1
for o in vmlinuz initrd.img disk.qcow2; do
    f=$OUT/$o
    if [ ! -s "$f" ] || [ "$SELF" -nt "$f" ] || [ "$KDEB" -nt "$f" ] || [ "$BDEB" -nt "$f" ]; then
        fresh=0
    fi
done
if [ "$fresh" = 1 ] && [ "${FORCE:-0}" != 1 ]; then
    echo "build-guest: $OUT is up to date"
    exit 0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nebtwist-guest.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
mkdir kx bx
dpkg-deb -x "$KDEB" kx
dpkg-deb -x "$BDEB" bx
KV=$(ls kx/lib/modules | head -n 1)
depmod -b kx "$KV"

R=$WORK/root
mkdir -p "$R"/{bin,sbin,proc,sys,dev,tmp,mnt/ctx,mnt/disk,etc/acpi/PWRF,lib/modules,var/run,var/log}
cp bx/bin/busybox "$R/bin/busybox"
# `busybox --list` names busybox itself: linking it would replace the binary by a
# self-symlink (exec fails with ELOOP, "No working init found").
for a in $(bx/bin/busybox --list); do
    [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"
done

# Modules, dependencies first, each once. In the cloud kernel these are =m, uncompressed.
# button + evdev: the ACPI power button reaches busybox acpid.
WANT="virtio_pci virtio_blk virtio_net virtio_balloon ata_piix sr_mod isofs button evdev"
DEP=kx/lib/modules/$KV/modules.dep
: > order
add_mod() {  # $1: module path relative to lib/modules/$KV
    grep -qxF "$1" order && return 0
    local d
    for d in $(grep -E "^$1:" "$DEP" | cut -d: -f2 | tr ' ' '\n' | tac); do add_mod "$d"; done
    echo "$1" >> order
}
for m in $WANT; do
    p=$(grep -oE "^[^:]*/$m\.ko(\.[a-z]+)?:" "$DEP" | tr -d : || true)
    [ -n "$p" ] || { echo "build-guest: module $m not in $KV" >&2; exit 1; }
    add_mod "$p"
done
: > "$R/etc/modules.list"
while read -r p; do
    case $p in
        *.ko.xz) xz -dc "kx/lib/modules/$KV/$p" > "$R/lib/modules/$(basename "$p" .xz)" ;;
        *.ko.zst) zstd -qdc "kx/lib/modules/$KV/$p" > "$R/lib/modules/$(basename "$p" .zst)" ;;
        *) cp "kx/lib/modules/$KV/$p" "$R/lib/modules/" ;;
    esac
    basename "$p" | sed -E 's/\.(xz|zst)$//' >> "$R/etc/modules.list"
done < order

cat > "$R/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
echo NEBTWIST-ACPI-POWEROFF > /dev/console
sync
# -f: PID 1 is a shell that ignores the signals a plain poweroff sends
poweroff -f
EOF
chmod +x "$R/etc/acpi/PWRF/00000080"

cat > "$R/init" <<'EOF'
#!/bin/sh
# nebtwist test guest: prints NEBTWIST-* markers on the console (see build-guest.sh)
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for k in $(cat /etc/modules.list); do insmod /lib/modules/$k 2>/dev/null; done
echo "NEBTWIST-GUEST-BOOTED $(cut -d' ' -f1 /proc/uptime)"
acpid -c /etc/acpi -l /var/log/acpid.log
# CONTEXT CD-ROM: wait up to 5 s for the device
i=0
while [ $i -lt 25 ]; do
  for d in /dev/sr0 /dev/sr1 /dev/hdc /dev/sda /dev/sdb /dev/vdb /dev/vdc; do
    [ -b $d ] && mount -t iso9660 -o ro $d /mnt/ctx 2>/dev/null && break 2
  done
  i=$((i+1)); usleep 200000
done
if [ -f /mnt/ctx/context.sh ]; then
  echo NEBTWIST-CONTEXT-BEGIN
  cat /mnt/ctx/context.sh
  echo NEBTWIST-CONTEXT-END
  . /mnt/ctx/context.sh
else
  echo NEBTWIST-CONTEXT-NONE
fi
if [ -b /dev/vda ] && mount -t ext4 -o ro /dev/vda /mnt/disk 2>/dev/null; then
  echo "NEBTWIST-DISK $(head -n 1 /mnt/disk/hello.txt)"
fi
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
  mac=$(cat /sys/class/net/eth0/address)
  addr=${ETH0_IP:-${IP:-}}
  if [ -z "$addr" ]; then
    set -- $(echo $mac | tr ':' ' ')
    [ "$1$2" = "0200" ] && addr="$((0x$3)).$((0x$4)).$((0x$5)).$((0x$6))"
  fi
  prefix=${ETH0_PREFIX:-24}
  if [ -n "${ETH0_MASK:-}" ]; then
    prefix=0
    for o in $(echo $ETH0_MASK | tr . ' '); do
      while [ $o -gt 0 ]; do prefix=$((prefix + (o & 1))); o=$((o >> 1)); done
    done
  fi
  ip link set eth0 up
  [ -n "$addr" ] && ip addr add $addr/$prefix dev eth0
  [ -n "$addr" ] && [ -n "${ETH0_GATEWAY:-}" ] && ip route add default via $ETH0_GATEWAY
  echo "NEBTWIST-NET eth0 $mac ${addr:-none}"
fi
# Network checks from inside the guest (CONTEXT NEBTWIST_PING etc.), in the background
if [ -n "${NEBTWIST_PING:-}" ] && [ -n "${addr:-}" ]; then
  mask2=${NEBTWIST_MASK2:-}
  if [ -n "$mask2" ]; then
    prefix2=0
    for o in $(echo $mask2 | tr . ' '); do
      while [ $o -gt 0 ]; do prefix2=$((prefix2 + (o & 1))); o=$((o >> 1)); done
    done
  fi
  setmac() {
    ip link set eth0 address $1 2>/dev/null || {
      ip link set eth0 down; ip link set eth0 address $1; ip link set eth0 up; }
    ip neigh flush dev eth0 >/dev/null 2>&1
    arping -U -c 1 -I eth0 $addr >/dev/null 2>&1
  }
  pings() {  # $1: label
    for t in $NEBTWIST_PING; do
      if ping -c 1 -W 1 $t >/dev/null 2>&1; then echo "$1-OK $t"; else echo "$1-FAIL $t"; fi
    done
  }
  (
    while true; do
      pings PING
      if [ -n "${NEBTWIST_SPOOF:-}" ]; then
        setmac $NEBTWIST_SPOOF
        pings SPOOF
        sleep 1
        setmac $mac
      fi
      if [ -n "$mask2" ]; then
        ip addr add $addr/$prefix2 dev eth0 && ip addr del $addr/$prefix dev eth0
        pings MASK2
        ip addr add $addr/$prefix dev eth0 && ip addr del $addr/$prefix2 dev eth0
      fi
      sleep 2
    done
  ) &
fi
n=0
while true; do n=$((n+1)); echo "NEBTWIST-TICK $n"; sleep 2; done
EOF
chmod +x "$R/init"

# Build into a temporary folder, then move: a half-built output never looks fresh.
T=$WORK/out
mkdir "$T"
cp "kx/boot/vmlinuz-$KV" "$T/vmlinuz"
(cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) > "$T/initrd.img"
mkdir dd
echo hello-from-vda > dd/hello.txt
truncate -s 16M disk.raw
mkfs.ext4 -q -F -L nebtwist -d dd disk.raw
qemu-img convert -f raw -O qcow2 disk.raw "$T/disk.qcow2"
chmod 644 "$T"/*
for o in vmlinuz initrd.img disk.qcow2; do mv -f "$T/$o" "$OUT/$o"; done
printf 'build-guest: kernel %s, built %s in %.1f s\n' "$KV" "$OUT" \
    "$(echo "$(date +%s.%N) - $t0" | bc)"
ls -l "$OUT"
