#!/bin/sh
# Probe: HYPERVISOR=kvm. CPU, memory, network, name and architecture come
# from the other probes in this folder (links into ../common.d).
# OpenNebula 3.4 src/im_mad/remotes/kvm.d/kvm.rb printed HYPERVISOR=kvm.
echo "HYPERVISOR=kvm"
