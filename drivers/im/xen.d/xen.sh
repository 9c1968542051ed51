#!/bin/sh
# Probe: HYPERVISOR=xen; on a Xen dom0 whose toolstack answers (xl, else xm),
# the machine's totals, which /proc in dom0 does not show, replace the other
# probes' values (the core keeps the last value of a repeated name):
#   TOTALCPU (nr_cpus x 100), CPUSPEED (cpu_mhz), TOTALMEMORY, FREEMEMORY,
#   USEDMEMORY (KB, from total_memory and free_memory in MB).
# USEDCPU/FREECPU stay dom0's view from cpu.sh.
# OpenNebula 3.4 src/im_mad/remotes/xen.d/xen.rb (xm info, xentop).
echo "HYPERVISOR=xen"
info=""
for tool in xl xm; do
    if command -v "$tool" >/dev/null 2>&1; then
        info=$("$tool" info 2>/dev/null) && break
        info=""
    fi
done
[ -n "$info" ] || exit 0
echo "$info" | awk -F: '
    { gsub(/[ \t]/, "", $1); gsub(/^[ \t]+|[ \t]+$/, "", $2); v[$1] = $2 }
    END {
        if (v["nr_cpus"] != "")  printf "TOTALCPU=%d\n", v["nr_cpus"] * 100
        if (v["cpu_mhz"] != "")  printf "CPUSPEED=%d\n", v["cpu_mhz"]
        if (v["total_memory"] != "" && v["free_memory"] != "") {
            printf "TOTALMEMORY=%d\n", v["total_memory"] * 1024
            printf "FREEMEMORY=%d\n", v["free_memory"] * 1024
            printf "USEDMEMORY=%d\n", (v["total_memory"] - v["free_memory"]) * 1024
        }
    }'
