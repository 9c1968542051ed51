#!/bin/sh
# Probe: ARCH, the machine architecture (uname -m), e.g. x86_64.
# OpenNebula 3.4 src/im_mad/remotes/kvm.d/architecture.sh.
echo "ARCH=$(uname -m)"
