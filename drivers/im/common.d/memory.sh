#!/bin/sh
# Probe: memory in KB, from /proc/meminfo (Linux).
#   TOTALMEMORY  MemTotal
#   FREEMEMORY   MemAvailable (MemFree + Buffers + Cached on kernels < 3.14)
#   USEDMEMORY   TOTALMEMORY - FREEMEMORY
# OpenNebula 3.4 src/im_mad/remotes/kvm.d/kvm.rb (there from free -k).
awk '/^MemTotal:/ { t = $2 } /^MemFree:/ { f = $2 } /^MemAvailable:/ { a = $2 }
     /^Buffers:/ { b = $2 } /^Cached:/ { c = $2 }
     END {
         if (a == "") a = f + b + c
         if (a > t) a = t
         printf "TOTALMEMORY=%d\nUSEDMEMORY=%d\nFREEMEMORY=%d\n", t, t - a, a
     }' /proc/meminfo
