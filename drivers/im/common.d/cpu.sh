#!/bin/sh
# Probe: CPU capacity and use, from /proc (Linux).
#   TOTALCPU   online CPUs x 100 (hundredths of a core)
#   CPUSPEED   MHz of the first CPU (0 if the kernel does not say)
#   USEDCPU    busy time over a short sample of /proc/stat, in percent x CPUs
#   FREECPU    TOTALCPU - USEDCPU
#   MODELNAME  the CPU model, quoted (commas and quotes removed: the core
#              reads commas as separators)
# OpenNebula 3.4 src/im_mad/remotes/kvm.d/cpu.sh (MODELNAME) and kvm.rb
# (the rest, from virsh nodeinfo and top).
export LC_ALL=C

ncpu=$(grep -c '^processor' /proc/cpuinfo 2>/dev/null)
if [ -z "$ncpu" ] || [ "$ncpu" -lt 1 ]; then
    ncpu=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
fi

# "total idle" jiffies of the aggregate cpu line (user..steal; guest time is
# already counted in user and nice).
sample() {
    awk '/^cpu / { t = 0; for (i = 2; i <= NF && i <= 9; i++) t += $i;
                   print t, $5 + $6; exit }' /proc/stat
}
# shellcheck disable=SC2046  # two numbers, split on purpose
set -- $(sample)
t1=$1 i1=$2
sleep 0.5 2>/dev/null || sleep 1
# shellcheck disable=SC2046  # two numbers, split on purpose
set -- $(sample)
t2=$1 i2=$2

used=$(awk -v n="$ncpu" -v dt="$((t2 - t1))" -v di="$((i2 - i1))" 'BEGIN {
    u = (dt > 0) ? n * 100 * (dt - di) / dt : 0
    if (u < 0) u = 0
    if (u > n * 100) u = n * 100
    printf "%d", u + 0.5 }')

speed=$(awk -F: '/^cpu MHz/ { printf "%d", $2 + 0.5; exit }' /proc/cpuinfo 2>/dev/null)
if [ -z "$speed" ] && [ -r /sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq ]; then
    speed=$(( $(cat /sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq) / 1000 ))
fi

model=$(awk -F: '/^(model name|Processor|cpu model|Hardware)[ \t]*:/ {
    sub(/^[ \t]+/, "", $2); print $2; exit }' /proc/cpuinfo 2>/dev/null | tr -d '",')
[ -n "$model" ] || model=$(uname -p 2>/dev/null | tr -d '",')

echo "TOTALCPU=$((ncpu * 100))"
echo "CPUSPEED=${speed:-0}"
echo "USEDCPU=$used"
echo "FREECPU=$((ncpu * 100 - used))"
echo "MODELNAME=\"${model:-unknown}\""
