#!/bin/sh
# Example probe (OpenNebula's "customize the monitor information" hands-on):
# MY_RVMS, the number of VMs running on the host.
#
# Install: copy it into drivers/im/kvm.d/ (or the -d remotes folder the ssh
# IM driver uses) and make it executable; the driver copies it to every
# host at that host's next monitoring, and MY_RVMS appears in the host's
# TEMPLATE, ready for placement:
#     REQUIREMENTS = "MY_RVMS < 5"
#     RANK = "- MY_RVMS"
#
# Counts the domains libvirt lists as running (virsh list) where virsh can
# reach the hypervisor, else the QEMU/KVM processes (/proc/<pid>/comm).
if command -v virsh >/dev/null 2>&1 &&
        list=$(virsh -c qemu:///system list --name 2>/dev/null); then
    n=$(printf '%s\n' "$list" | grep -c .)
else
    n=$(cat /proc/[0-9]*/comm 2>/dev/null | grep -c -E '^(qemu-system-|qemu-kvm$|kvm$)')
fi
echo "MY_RVMS=${n:-0}"
