"""Every VM action of OpenNebula 3.4 through a real ``twistd nebula`` and the CLI,
on the dummy drivers: after each action the test checks the VM's state, its
history records, the hosts' RUNNING_VMS (HOST_SHARE) and the network's leases."""

from tests.acceptance.test_seed000 import TTYLINUX, SeedCloudTestCase

NOWHERE = 'REQUIREMENTS = "NAME = \\"nowhere\\""\n'


class EveryActionTest(SeedCloudTestCase):
    """hold/release, deploy, live and cold migration, suspend/stop/resume, reboot,
    resubmit, restart, cancel, shutdown and delete."""

    def setUp(self):
        super().setUp()
        self.create_hosts()
        self.create_networks()

    # -- what the user sees -------------------------------------------------------------

    def rvm(self):
        """RUNNING_VMS per host, from ``onehost list``."""
        return {name: int(row["RVM"]) for name, row in self.hosts().items()}

    def used_ips(self):
        """IPs in use in One-TD, from ``onevnet show``."""
        return {ip for ip, row in self.vnet_leases("One-TD").items() if row["USED"] == "1"}

    def history(self, vid):
        """``onevm history`` rows: (HOSTNAME, REASON)."""
        lines = self.ok("onevm", "history", vid).splitlines()
        self.assertEqual(lines[0].split()[:3], ["SEQ", "HOSTNAME", "REASON"])
        return [tuple(line.split()[1:3]) for line in lines[1:]]

    def vm_ip(self, vid):
        return self.vm_show(vid)[1][0]["IP"]

    def host_of(self, vid, stat="runn"):
        return self.wait_vm_stat(vid, stat)["HOSTNAME"]

    def other(self, host):
        return "host02" if host == "host01" else "host01"

    # -- the walk -----------------------------------------------------------------------

    def test_every_action(self):
        # hold / release / manual deploy of a VM the scheduler cannot place
        held = self.create_vm(TTYLINUX + NOWHERE, filename="nowhere.one")
        self.wait_vm_stat(held, "pend")
        self.ok("onevm", "hold", held)
        self.wait_vm_stat(held, "hold")
        self.ok("onevm", "release", held)
        self.wait_vm_stat(held, "pend")
        self.ok("onevm", "deploy", held, "host01")
        self.assertEqual(self.host_of(held), "host01")
        self.assertEqual(self.rvm(), {"host01": 1, "host02": 0})

        vid = self.create_vm()
        first = self.host_of(vid)
        ip = self.vm_ip(vid)
        self.assertEqual(self.used_ips(), {ip, self.vm_ip(held)})
        rvm = self.rvm()

        # live migration to the other host, and back cold
        target = self.other(first)
        self.ok("onevm", "livemigrate", vid, target)
        self.wait_for(lambda: self.vms()[vid]["HOSTNAME"] == target
                      and self.vms()[vid]["STAT"] == "runn", "live migration done")
        self.assertEqual(self.history(vid), [(first, "user"), (target, "none")])
        moved = dict(rvm)
        moved[first] -= 1
        moved[target] += 1
        self.assertEqual(self.rvm(), moved)
        self.ok("onevm", "migrate", vid, first)
        self.wait_for(lambda: self.vms()[vid]["HOSTNAME"] == first
                      and self.vms()[vid]["STAT"] == "runn", "cold migration done")
        self.assertEqual(self.history(vid)[-2:], [(target, "user"), (first, "none")])
        self.assertEqual(self.rvm(), rvm)

        # suspend keeps the host; stop frees it and keeps the lease
        self.ok("onevm", "suspend", vid)
        self.wait_vm_stat(vid, "susp")
        self.assertEqual(self.rvm(), rvm)
        self.ok("onevm", "resume", vid)
        self.assertEqual(self.host_of(vid), first)
        self.ok("onevm", "stop", vid)
        self.wait_vm_state(vid, "STOPPED")
        freed = dict(rvm)
        freed[first] -= 1
        self.assertEqual(self.rvm(), freed)
        self.assertIn(ip, self.used_ips())
        self.assertEqual(self.history(vid)[-1], (first, "stop"))
        self.ok("onevm", "resume", vid)
        self.host_of(vid)
        self.assertEqual(self.vm_ip(vid), ip)
        self.assertEqual(sum(self.rvm().values()), 2)

        # reboot: no state change; resubmit: a new placement, same address
        self.ok("onevm", "reboot", vid)
        self.wait_for(lambda: "VM rebooted" in self.one.oned_log(), "reboot logged")
        self.assertEqual(self.vms()[vid]["STAT"], "runn")
        records = len(self.history(vid))
        self.ok("onevm", "resubmit", vid)
        self.wait_for(lambda: len(self.history(vid)) == records + 1
                      and self.vms()[vid]["STAT"] == "runn", "resubmitted VM running again")
        self.assertEqual(self.history(vid)[-2][1], "user")
        self.assertEqual(self.vm_ip(vid), ip)

        # an action refused in the wrong state changes nothing
        rc, _out, err = self.run_cli("onevm", "release", vid)
        self.assertEqual(rc, 1)
        self.assertIn("Wrong state", err)
        self.assertEqual(self.vms()[vid]["STAT"], "runn")

        # cancel and shutdown end in DONE with capacity and leases back
        self.ok("onevm", "cancel", vid)
        self.wait_vm_state(vid, "DONE")
        self.ok("onevm", "shutdown", held)
        self.wait_vm_state(held, "DONE")
        self.assertEqual(self.rvm(), {"host01": 0, "host02": 0})
        self.assertEqual(self.used_ips(), set())

    def test_restart_from_unknown(self):
        vid = self.create_vm(TTYLINUX + 'DUMMY = [ POLL = "d" ]\n', filename="lost.one")
        self.wait_vm_stat(vid, "unkn")
        deploys = self.one.oned_log().count(f"VM {vid}: [VMM] Deploying")
        self.ok("onevm", "restart", vid)
        self.wait_for(lambda: self.one.oned_log().count(f"VM {vid}: [VMM] Deploying")
                      == deploys + 1, "deployed again")
        self.wait_vm_stat(vid, "unkn")
        self.assertEqual(len(self.history(vid)), 1, "restart keeps the placement")
        self.ok("onevm", "delete", vid)
        self.wait_vm_state(vid, "DONE")
        self.assertEqual(self.rvm(), {"host01": 0, "host02": 0})

    def test_failed_resubmit_and_delete(self):
        vid = self.create_vm(TTYLINUX + 'DUMMY = [ FAIL = "deploy" ]\n', filename="bad.one")
        self.wait_vm_stat(vid, "fail")
        ip = self.vm_ip(vid)
        self.assertEqual(self.used_ips(), {ip}, "a FAILED VM keeps its lease")
        self.assertEqual(self.rvm(), {"host01": 0, "host02": 0})
        self.ok("onevm", "resubmit", vid)
        self.wait_for(lambda: len(self.history(vid)) == 2 and self.vms()[vid]["STAT"] == "fail",
                      "resubmitted and failed again")
        self.assertEqual([reason for _h, reason in self.history(vid)], ["erro", "erro"])
        self.ok("onevm", "delete", vid)
        self.wait_vm_state(vid, "DONE")
        self.assertEqual(self.used_ips(), set())
        pending = self.create_vm(TTYLINUX + NOWHERE, filename="nowhere.one")
        self.ok("onevm", "delete", pending)
        self.wait_vm_state(pending, "DONE")
        self.assertEqual(self.used_ips(), set())
