"""Integration tests: the real reactor spawning the real dummy drivers.

Each test starts a MAD adapter on the driver executable in ``drivers/``,
with ``ONE_LOCATION`` pointing at a temporary directory, and stops it (which
waits for the process to end) in a cleanup, so no process outlives a test.
"""

import os
import stat
import textwrap

from twisted.internet import defer
from twisted.internet import reactor as real_reactor
from twisted.trial.unittest import TestCase

from nebtwist import paths
from nebtwist.errors import DriverCrashed, DriverError
from nebtwist.interfaces import VMMAction
from nebtwist.mad import (
    InformationMad,
    MadProcess,
    TransferMad,
    VirtualMachineMad,
    resolve_executable,
)

#: A VM document shaped like OpenNebula 3.4's ``VirtualMachine::to_xml``.
VM_TEMPLATE = """\
<VM>
  <ID>{vid}</ID>
  <UID>2</UID>
  <GID>1</GID>
  <UNAME>alice</UNAME>
  <GNAME>users</GNAME>
  <NAME>web-{vid}</NAME>
  <PERMISSIONS>
    <OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A>
    <GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A>
    <OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A>
  </PERMISSIONS>
  <LAST_POLL>0</LAST_POLL>
  <STATE>3</STATE>
  <LCM_STATE>2</LCM_STATE>
  <STIME>1336467123</STIME>
  <ETIME>0</ETIME>
  <DEPLOY_ID></DEPLOY_ID>
  <MEMORY>0</MEMORY>
  <CPU>0</CPU>
  <NET_TX>0</NET_TX>
  <NET_RX>0</NET_RX>
  <TEMPLATE>
    <CPU><![CDATA[0.5]]></CPU>
    <MEMORY><![CDATA[{memory}]]></MEMORY>
    <NAME><![CDATA[web-{vid}]]></NAME>
    <VMID><![CDATA[{vid}]]></VMID>
    <DISK>
      <CLONE><![CDATA[YES]]></CLONE>
      <DATASTORE><![CDATA[default]]></DATASTORE>
      <DATASTORE_ID><![CDATA[1]]></DATASTORE_ID>
      <DISK_ID><![CDATA[0]]></DISK_ID>
      <IMAGE><![CDATA[ttylinux]]></IMAGE>
      <IMAGE_ID><![CDATA[0]]></IMAGE_ID>
      <READONLY><![CDATA[NO]]></READONLY>
      <SAVE><![CDATA[NO]]></SAVE>
      <SOURCE><![CDATA[/var/lib/one/datastores/1/6ab3b2a1f3a4b7a1]]></SOURCE>
      <TARGET><![CDATA[hda]]></TARGET>
      <TM_MAD><![CDATA[shared]]></TM_MAD>
      <TYPE><![CDATA[FILE]]></TYPE>
    </DISK>
    <NIC>
      <BRIDGE><![CDATA[br0]]></BRIDGE>
      <IP><![CDATA[192.168.0.5]]></IP>
      <MAC><![CDATA[02:00:c0:a8:00:05]]></MAC>
      <NETWORK><![CDATA[private & lab]]></NETWORK>
      <NETWORK_ID><![CDATA[0]]></NETWORK_ID>
      <VLAN><![CDATA[NO]]></VLAN>
    </NIC>
    <CONTEXT>
      <HOSTNAME><![CDATA[web-{vid}]]></HOSTNAME>
      <FILES><![CDATA[{files}]]></FILES>
      <TARGET><![CDATA[hdb]]></TARGET>
    </CONTEXT>
    {dummy}
  </TEMPLATE>
  <HISTORY_RECORDS>
    <HISTORY>
      <OID>{vid}</OID>
      <SEQ>0</SEQ>
      <HOSTNAME>host01</HOSTNAME>
      <HID>0</HID>
      <STIME>1336467130</STIME>
      <ETIME>0</ETIME>
      <VMMMAD>vmm_dummy</VMMMAD>
      <VNMMAD>dummy</VNMMAD>
      <PSTIME>1336467130</PSTIME>
      <PETIME>1336467131</PETIME>
      <RSTIME>1336467131</RSTIME>
      <RETIME>0</RETIME>
      <ESTIME>0</ESTIME>
      <EETIME>0</EETIME>
      <REASON>0</REASON>
    </HISTORY>
  </HISTORY_RECORDS>
</VM>
"""


def vm_xml(vid, memory=512, fail=None, delay=None, poll=None, files=""):
    """A realistic <VM> document, with an optional DUMMY vector."""
    dummy = ""
    parts = [("FAIL", fail), ("DELAY", delay), ("POLL", poll)]
    if any(v is not None for _, v in parts):
        dummy = "<DUMMY>" + "".join(
            f"<{k}><![CDATA[{v}]]></{k}>" for k, v in parts if v is not None
        ) + "</DUMMY>"
    return VM_TEMPLATE.format(vid=vid, memory=memory, dummy=dummy, files=files)


class DriverTestMixin:
    """Starts real drivers with ONE_LOCATION in a temp dir; stops them after."""

    def setUp(self):
        self.one_location = os.path.abspath(self.mktemp())
        os.makedirs(self.one_location)
        self.env = dict(os.environ, ONE_LOCATION=self.one_location)
        self.logs = []

    async def start(self, cls, name, executable, arguments="", **kwargs):
        kwargs.setdefault("env", self.env)
        kwargs.setdefault("request_timeout", 30)
        kwargs.setdefault("init_timeout", 10)
        kwargs.setdefault("on_log", lambda *a: self.logs.append(a))
        mad = cls(real_reactor, name, executable, arguments, **kwargs)
        mad.startService()
        self.addCleanup(mad.stopService)
        await mad.started()
        return mad


class InformationDriverTests(DriverTestMixin, TestCase):
    """drivers/im/dummy through InformationMad."""

    async def start_im(self, arguments=""):
        return await self.start(
            InformationMad, "im_dummy", resolve_executable("dummy", "im"), arguments
        )

    async def test_monitor(self):
        """MONITOR answers the fixed dummy capacity, after a LOG D line."""
        mad = await self.start_im()
        info = await mad.monitor(0, "host01")
        self.assertEqual(
            info,
            "HYPERVISOR=dummy HOSTNAME=host01 TOTALCPU=800 CPUSPEED=2200 "
            "TOTALMEMORY=16777216 USEDMEMORY=0 FREEMEMORY=16777216 FREECPU=800 "
            'USEDCPU=0 NETRX=0 NETTX=0 ARCH=x86_64 MODELNAME="Dummy CPU"',
        )
        self.assertIn(("D", 0, "Monitoring host host01"), self.logs)

    async def test_capacity_options(self):
        """-c and -m set total (and free) CPU and memory."""
        mad = await self.start_im("-c 400 -m 1048576")
        info = await mad.monitor(1, "host02", update_remotes=True)
        for pair in ("TOTALCPU=400", "FREECPU=400", "TOTALMEMORY=1048576",
                     "FREEMEMORY=1048576"):
            self.assertIn(pair, info.split())

    async def test_host_down(self):
        """The down marker file makes MONITOR fail until it is removed."""
        mad = await self.start_im()
        down = os.path.join(self.one_location, "var", "dummy", "down")
        os.makedirs(down)
        marker = os.path.join(down, "host03")
        open(marker, "w").close()
        e = await self.assertFailure(mad.monitor(3, "host03"), DriverError)
        self.assertEqual(e.message, "host host03 is down")
        self.assertIn("HOSTNAME=host04", await mad.monitor(4, "host04"))
        os.remove(marker)
        self.assertIn("HOSTNAME=host03", await mad.monitor(3, "host03"))

    async def test_unknown_action(self):
        mad = await self.start_im()
        e = await self.assertFailure(mad.request("FROB", 9), DriverError)
        self.assertEqual(e.message, "unknown action")


class VirtualMachineDriverTests(DriverTestMixin, TestCase):
    """drivers/vmm/dummy through VirtualMachineMad."""

    async def start_vmm(self):
        return await self.start(
            VirtualMachineMad, "vmm_dummy", resolve_executable("dummy", "vmm")
        )

    def action(self, vid, **kwargs):
        return VMMAction(
            host="host01",
            net_drv="dummy",
            local_deployment_file=f"{self.one_location}/var/{vid}/deployment.0",
            remote_deployment_file=f"/var/lib/one/datastores/0/{vid}/deployment.0",
            vm_xml=vm_xml(vid, **kwargs),
        )

    async def test_deploy_realistic_vm(self):
        """DEPLOY of a realistic VM document fires with dummy-<vid>."""
        mad = await self.start_vmm()
        deploy_id = await mad.deploy(42, self.action(42))
        self.assertEqual(deploy_id, "dummy-42")
        self.assertIn(("I", 42, "DEPLOY host01"), self.logs)

    async def test_all_actions(self):
        """Every action succeeds; RESTORE gives a deploy id, others '-'."""
        mad = await self.start_vmm()
        a = self.action(5)
        results = await defer.gatherResults(
            [mad.shutdown(5, a), mad.cancel(5, a), mad.save(5, a), mad.restore(5, a),
             mad.migrate(5, a), mad.reboot(5, a), mad.checkpoint(5, a)]
        )
        self.assertEqual(results, ["-", "-", "-", "dummy-5", "-", "-", "-"])

    async def test_poll(self):
        """POLL reports the DUMMY/POLL state and MEMORY (MB) in KB."""
        mad = await self.start_vmm()
        info = await mad.poll(6, self.action(6, memory=256))
        self.assertEqual(info, "STATE=a USEDCPU=0 USEDMEMORY=262144 NETRX=0 NETTX=0")
        info = await mad.poll(7, self.action(7, memory=128, poll="p"))
        self.assertEqual(info, "STATE=p USEDCPU=0 USEDMEMORY=131072 NETRX=0 NETTX=0")

    async def test_dummy_fail(self):
        """Actions listed in DUMMY/FAIL fail; the others succeed."""
        mad = await self.start_vmm()
        a = self.action(8, fail="deploy, cancel")
        e = await self.assertFailure(mad.deploy(8, a), DriverError)
        self.assertEqual(e.message, "dummy failure of deploy")
        e = await self.assertFailure(mad.cancel(8, a), DriverError)
        self.assertEqual(e.message, "dummy failure of cancel")
        self.assertEqual(await mad.shutdown(8, a), "-")

    async def test_delay_concurrency(self):
        """A delayed request does not hold up another VM's request."""
        mad = await self.start_vmm()
        done = []
        slow = mad.deploy(1, self.action(1, delay="1.0"))
        slow.addCallback(lambda r: done.append(1) or r)
        fast = mad.deploy(2, self.action(2))
        fast.addCallback(lambda r: done.append(2) or r)
        results = await defer.gatherResults([slow, fast])
        self.assertEqual(results, ["dummy-1", "dummy-2"])
        self.assertEqual(done, [2, 1])

    async def test_large_message(self):
        """A VM document of 200+ KB travels as one base64 line."""
        mad = await self.start_vmm()
        files = " ".join(f"/srv/ctx/file{i:06d}.sh" for i in range(10000))
        a = self.action(9, files=files)
        self.assertGreater(len(a.vm_xml), 200_000)
        self.assertEqual(await mad.deploy(9, a), "dummy-9")

    async def test_bad_message(self):
        """An undecodable or unparsable message fails with a clear message."""
        mad = await self.start_vmm()
        e = await self.assertFailure(mad.request("DEPLOY", 3, "%%%not-base64"), DriverError)
        self.assertIn("cannot decode driver message", e.message)
        junk = "PFZNPjxJRD4="  # base64 of "<VM><ID>"
        e = await self.assertFailure(mad.request("DEPLOY", 3, junk), DriverError)
        self.assertIn("cannot parse driver message XML", e.message)
        e = await self.assertFailure(mad.request("FROB", 3, junk), DriverError)
        self.assertEqual(e.message, "unknown action")


class TransferDriverTests(DriverTestMixin, TestCase):
    """drivers/tm/dummy through TransferMad."""

    def script(self, vid, name, body, vm=None):
        folder = os.path.join(self.one_location, "var", str(vid))
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, name)
        with open(path, "w") as f:
            f.write(textwrap.dedent(body))
        if vm is not None:
            with open(os.path.join(folder, "vm.xml"), "w") as f:
                f.write(vm)
        return path

    async def start_tm(self):
        return await self.start(TransferMad, "tm_dummy", resolve_executable("dummy", "tm"))

    PROLOG = """\
        # prolog of VM {vid}
        CLONE shared fe:/var/lib/one/datastores/1/6ab3 host01:/ds/0/{vid}/disk.0
        MKSWAP shared 1024 host01:/ds/0/{vid}/disk.1

        CONTEXT shared /var/lib/one/{vid}/context.sh host01:/ds/0/{vid}/disk.2
        """

    async def test_prolog(self):
        """A valid prolog succeeds (no vm.xml); each line is logged."""
        mad = await self.start_tm()
        path = self.script(10, "transfer.0.prolog", self.PROLOG.format(vid=10))
        self.assertIsNone(await mad.transfer(10, path))
        logged = [m for (lvl, oid, m) in self.logs if oid == 10]
        self.assertEqual([m.split()[0] for m in logged], ["CLONE", "MKSWAP", "CONTEXT"])

    async def test_dummy_fail(self):
        """DUMMY/FAIL in vm.xml fails the listed step only."""
        mad = await self.start_tm()
        vm = vm_xml(11, fail="epilog")
        prolog = self.script(11, "transfer.0.prolog", self.PROLOG.format(vid=11), vm)
        epilog = self.script(11, "transfer.0.epilog", "DELETE shared host01:/ds/0/11\n")
        self.assertIsNone(await mad.transfer(11, prolog))
        e = await self.assertFailure(mad.transfer(11, epilog), DriverError)
        self.assertEqual(e.message, "dummy failure of epilog")

    async def test_missing_script(self):
        mad = await self.start_tm()
        path = os.path.join(self.one_location, "nope", "transfer.0.prolog")
        e = await self.assertFailure(mad.transfer(12, path), DriverError)
        self.assertEqual(e.message, f"transfer script {path} not found")

    async def test_unknown_command(self):
        mad = await self.start_tm()
        path = self.script(13, "transfer.0.prolog", "LN shared a b\nFROB x y\n")
        e = await self.assertFailure(mad.transfer(13, path), DriverError)
        self.assertEqual(e.message, "unknown transfer command: FROB x y")

    async def test_delay_concurrency(self):
        """A delayed transfer does not hold up another VM's transfer."""
        mad = await self.start_tm()
        slow_path = self.script(14, "transfer.0.prolog", "LN s a b\n", vm_xml(14, delay="1"))
        fast_path = self.script(15, "transfer.0.prolog", "LN s a b\n")
        done = []
        slow = mad.transfer(14, slow_path).addCallback(lambda _: done.append(14))
        fast = mad.transfer(15, fast_path).addCallback(lambda _: done.append(15))
        await defer.gatherResults([slow, fast])
        self.assertEqual(done, [15, 14])


CRASHY = """\
#!/bin/sh
# Answers INIT; the first incarnation dies on its first request, later ones
# answer every request with SUCCESS.
read line
echo "INIT SUCCESS"
if [ -e "$CRASH_MARK" ]; then
    while read action id rest; do
        [ "$action" = FINALIZE ] && exit 0
        echo "$action SUCCESS $id ok"
    done
    exit 0
fi
touch "$CRASH_MARK"
read line
exit 3
"""


class CrashTests(DriverTestMixin, TestCase):
    """A real driver process that dies, and its restart."""

    async def test_crash_and_restart(self):
        """A driver dying mid-request gives DriverCrashed, then restarts and works."""
        path = os.path.join(self.one_location, "crashy")
        with open(path, "w") as f:
            f.write(CRASHY)
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
        self.env["CRASH_MARK"] = os.path.join(self.one_location, "crashed")
        mad = await self.start(MadProcess, "crashy", path, restart_delay=0.1)
        first_pid = mad.pid
        e = await self.assertFailure(mad.request("PING", 1), DriverCrashed)
        self.assertIn("exited with code 3", e.message)
        await self.assertFailure(mad.request("PING", 2), DriverCrashed)
        await mad.started()
        self.assertNotEqual(mad.pid, first_pid)
        self.assertEqual(await mad.request("PING", 3), "ok")


class ShippedDriversTests(TestCase):
    """The driver files themselves."""

    def test_executable(self):
        """The dummy drivers are shipped executable."""
        for family in ("im", "vmm", "tm"):
            path = paths.shipped("drivers", family, "dummy")
            self.assertTrue(os.access(path, os.X_OK), path)
