"""EC2 elastic IPs (Allocate/Release/Associate/Disassociate/DescribeAddresses)
with boto3 against an in-process daemon whose econe.conf names an
ELASTIC_IP_NETWORK created through the core, and associate/disassociate
scripts that write their arguments to a file."""

import os
import sys

from lxml import etree

from tests.test_ec2 import call, client
from tests.test_ec2_actions import EC2TestCase, ready_image
from tests.test_xmlrpc_api import HELEN, add_user, ok

SCRIPT = """\
import os, sys
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "calls.log"), "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
sys.exit(3 if os.path.exists(os.path.join(here, "fail-" + sys.argv[1])) else 0)
"""

PRIVATE = 'NAME = "private"\nTYPE = RANGED\nBRIDGE = br0\nNETWORK_ADDRESS = 10.0.0.0/24\n'
PUBLIC = ('NAME = "public"\nTYPE = FIXED\nBRIDGE = br1\n'
          'LEASES = [ IP = 203.0.113.10 ]\nLEASES = [ IP = 203.0.113.11 ]\n'
          'LEASES = [ IP = 203.0.113.12 ]\n')


def leases(neb, vid):
    """{ip: (used, vid)} of network ``vid`` as the core has them."""
    vnet = neb.nebula.vnpool.get(vid)
    return {str(lease.ip >> 24) + "." + str(lease.ip >> 16 & 255) + "." +
            str(lease.ip >> 8 & 255) + "." + str(lease.ip & 255): (lease.used, lease.vid)
            for lease in vnet.leases.values()}


class AddressTests(EC2TestCase):

    def script_dir(self):
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        path = os.path.join(folder, "eip.py")
        with open(path, "w") as f:
            f.write(SCRIPT)
        return folder, path

    def calls(self, folder):
        try:
            with open(os.path.join(folder, "calls.log")) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    async def test_unsupported_without_network(self):
        """No ELASTIC_IP_NETWORK: every address call answers Unsupported (3.4)."""
        neb = await self.start()
        c = client(neb)
        for method, kwargs in (("allocate_address", {}), ("describe_addresses", {}),
                               ("release_address", dict(PublicIp="203.0.113.10")),
                               ("associate_address", dict(PublicIp="203.0.113.10",
                                                          InstanceId="i-0")),
                               ("disassociate_address", dict(PublicIp="203.0.113.10"))):
            await self.fails(c, method, "Unsupported", **kwargs)
        neb2 = await self.start(['econe.ELASTIC_IP_NETWORK="missing"'])
        await self.fails(client(neb2), "allocate_address", "Unsupported")

    async def test_addresses(self):
        folder, script = self.script_dir()
        neb = await self.start([
            'econe.NETWORK="private"', 'econe.ELASTIC_IP_NETWORK="public"',
            f'econe.ASSOCIATE_SCRIPT="{sys.executable} {script} associate"',
            f'econe.DISASSOCIATE_SCRIPT="{sys.executable} {script} disassociate"'])
        await ok(neb, "one.vn.allocate", PRIVATE)
        public = await ok(neb, "one.vn.allocate", PUBLIC)
        c, v2 = client(neb), client(neb, v2=True)

        first = await call(c, "allocate_address", Domain="standard")
        self.assertEqual((first["PublicIp"], first["Domain"]), ("203.0.113.10", "standard"))
        second = (await call(v2, "allocate_address"))["PublicIp"]
        self.assertEqual(second, "203.0.113.11")
        held = leases(neb, public)
        self.assertEqual((held["203.0.113.10"], held["203.0.113.11"]), ((True, -1), (True, -1)),
                         "held as 3.4 holds leases: USED, VID -1")
        # A VM with a NIC on that network gets the free lease, not a held one.
        vid = await ok(neb, "one.vm.allocate", 'CPU = 0.1\nMEMORY = 64\n'
                                               'NIC = [ NETWORK = "public" ]\n')
        self.assertEqual(neb.nebula.vmpool.get(vid).template.get_vector("NIC")["IP"],
                         "203.0.113.12")
        await self.fails(c, "allocate_address", "AddressLimitExceeded")
        await ok(neb, "one.vm.action", "finalize", vid)
        described = (await call(c, "describe_addresses"))["Addresses"]
        self.assertEqual([(a["PublicIp"], a["Domain"], a.get("InstanceId", ""))
                          for a in described],
                         [("203.0.113.10", "standard", ""), ("203.0.113.11", "standard", "")])
        await call(c, "release_address", PublicIp=second)
        self.assertEqual(leases(neb, public)["203.0.113.11"], (False, -1), "free again")
        self.assertEqual([a["PublicIp"] for a in (await call(c, "describe_addresses"))
                          ["Addresses"]], ["203.0.113.10"])

        # Associate with an instance (its NIC is on the private network).
        ami = await ready_image(self, neb, c)
        reply = await call(c, "run_instances", ImageId=ami, MinCount=2, MaxCount=2)
        i0, i1 = [i["InstanceId"] for i in reply["Instances"]]
        p0, p1 = [i["PrivateIpAddress"] for i in reply["Instances"]]
        await call(c, "associate_address", PublicIp="203.0.113.10", InstanceId=i0)
        self.assertEqual(self.calls(folder), [f"associate 203.0.113.10 {p0}"])
        described = (await call(v2, "describe_addresses", PublicIps=["203.0.113.10"]))
        self.assertEqual(described["Addresses"][0]["InstanceId"], i0)
        instances = {i["InstanceId"]: i for r in (await call(c, "describe_instances"))
                     ["Reservations"] for i in r["Instances"]}
        self.assertEqual(instances[i0]["PublicIpAddress"], "203.0.113.10")
        self.assertNotIn("PublicIpAddress", instances[i1])
        filtered = await call(c, "describe_instances", Filters=[
            {"Name": "ip-address", "Values": ["203.0.113.10"]}])
        self.assertEqual([i["InstanceId"] for r in filtered["Reservations"]
                          for i in r["Instances"]], [i0])
        # Again with the same instance: nothing runs.
        await call(c, "associate_address", PublicIp="203.0.113.10", InstanceId=i0)
        self.assertEqual(len(self.calls(folder)), 1)
        # To another instance: moved (disassociated from the first).
        await call(c, "associate_address", PublicIp="203.0.113.10", InstanceId=i1)
        self.assertEqual(self.calls(folder)[1:], [f"disassociate 203.0.113.10 {p0}",
                                                  f"associate 203.0.113.10 {p1}"])
        await call(c, "disassociate_address", PublicIp="203.0.113.10")
        self.assertEqual(self.calls(folder)[3:], [f"disassociate 203.0.113.10 {p1}"])
        self.assertEqual((await call(c, "describe_addresses"))["Addresses"][0]
                         .get("InstanceId", ""), "")

        # A failing script: an error, and no association recorded.
        open(os.path.join(folder, "fail-associate"), "w").close()
        await self.fails(c, "associate_address", "InternalError", status=500,
                         PublicIp="203.0.113.10", InstanceId=i0)
        self.assertEqual((await call(c, "describe_addresses"))["Addresses"][0]
                         .get("InstanceId", ""), "")
        os.unlink(os.path.join(folder, "fail-associate"))
        await call(c, "associate_address", PublicIp="203.0.113.10", InstanceId=i0)

        # Stored in the network's template.
        rows = await neb.nebula.db.select("SELECT body FROM network_pool WHERE oid = ?",
                                          (public,))
        entry = etree.fromstring(rows[0][0].encode()).find("TEMPLATE/EC2_ADDRESSES")
        self.assertEqual((entry.findtext("IP"), entry.findtext("UID"),
                          entry.findtext("INSTANCE_ID")), ("203.0.113.10", "0", i0[2:]))

        # Another user: not theirs.
        await add_user(neb, HELEN)
        helen = client(neb, "helen", "helenpass")
        self.assertEqual((await call(helen, "describe_addresses"))["Addresses"], [])
        await self.fails(helen, "describe_addresses", "InvalidAddress.NotFound",
                         PublicIps=["203.0.113.10"])
        for method, kwargs in (("release_address", {}), ("disassociate_address", {}),
                               ("associate_address", {"InstanceId": i0})):
            await self.fails(helen, method, "AuthFailure", PublicIp="203.0.113.10", **kwargs)
        await self.fails(c, "release_address", "InvalidAddress.NotFound",
                         PublicIp="203.0.113.11")
        await self.fails(c, "release_address", "InvalidAddress.Malformed", PublicIp="1.2.3")
        await self.fails(c, "associate_address", "InvalidInstanceID.NotFound",
                         PublicIp="203.0.113.10", InstanceId="i-99")

        # Terminating an instance disassociates its address.
        await call(c, "associate_address", PublicIp="203.0.113.10", InstanceId=i1)
        await call(c, "terminate_instances", InstanceIds=[i1])
        self.assertEqual(self.calls(folder)[-3:], [f"disassociate 203.0.113.10 {p0}",
                                                   f"associate 203.0.113.10 {p1}",
                                                   f"disassociate 203.0.113.10 {p1}"])
        self.assertEqual((await call(c, "describe_addresses"))["Addresses"][0]
                         .get("InstanceId", ""), "")

        # Releasing an associated address disassociates it first.
        await call(c, "associate_address", PublicIp="203.0.113.10", InstanceId=i0)
        await call(c, "release_address", PublicIp="203.0.113.10")
        self.assertEqual(self.calls(folder)[-1], f"disassociate 203.0.113.10 {p0}")
        self.assertEqual(set(leases(neb, public).values()), {(False, -1)})
        self.assertEqual((await call(c, "describe_addresses"))["Addresses"], [])
        instances = [i for r in (await call(c, "describe_instances"))["Reservations"]
                     for i in r["Instances"]]
        self.assertEqual({i.get("PublicIpAddress") for i in instances}, {None})
