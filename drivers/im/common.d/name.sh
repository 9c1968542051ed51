#!/bin/sh
# Probe: HOSTNAME, the host's own node name (uname -n).
# OpenNebula 3.4 src/im_mad/remotes/kvm.d/name.sh.
echo "HOSTNAME=$(uname -n)"
