#!/bin/sh
# Probe: NETRX / NETTX, bytes received / sent since boot by the host's own
# interfaces (/proc/net/dev), leaving out loopback, VM taps (vnet*, tap*,
# veth*) and bridges (br*, virbr*, docker*, ovs-system), whose traffic is
# VMs' or is counted on the enslaved interface.
# OpenNebula 3.4 src/im_mad/remotes/kvm.d/kvm.rb (which summed interfaces
# matching a fixed NETINTERFACE pattern: eth|bond|em|p[0-9]+p[0-9]+).
awk 'NR > 2 {
         sub(/:/, " ")
         if ($1 ~ /^(lo|vnet|tap|veth|br|virbr|docker|ovs-system)/) next
         rx += $2; tx += $10
     }
     END { printf "NETRX=%.0f\nNETTX=%.0f\n", rx, tx }' /proc/net/dev
