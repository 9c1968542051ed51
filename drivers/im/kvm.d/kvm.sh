#!/bin/sh
# Probe: HYPERVISOR=kvm, after checking that the host's libvirtd answers.
# CPU, memory, network, name and architecture come from the other probes in
# this folder (links into ../common.d).
#
# The check is `virsh -c $LIBVIRT_URI nodeinfo` (default qemu:///system, the
# URI the VMM driver reaches through ssh). When libvirtd does not answer, or
# virsh is missing, the probe fails with libvirt's message, so the host goes
# to ERROR and `onehost show` says why instead of VMs failing at deploy.
# OpenNebula 3.4 src/im_mad/remotes/kvm.d/kvm.rb (printed HYPERVISOR=kvm and
# read `virsh nodeinfo`, failing when it could not).
uri=${LIBVIRT_URI:-qemu:///system}
if ! command -v virsh >/dev/null 2>&1; then
    echo "virsh not found on $(uname -n): install libvirt-clients and libvirt-daemon" >&2
    exit 1
fi
if ! out=$(LC_ALL=C virsh -c "$uri" nodeinfo 2>&1); then
    msg=$(printf '%s\n' "$out" | grep -v '^$' | tr '\n' ' ' | sed -e 's/ *$//')
    echo "libvirtd does not answer at $uri: $msg" >&2
    exit 1
fi
echo "HYPERVISOR=kvm"
