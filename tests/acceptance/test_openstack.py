"""The OpenStack front against a real ``twistd -n nebula``, driven by the
unmodified real clients: the ``openstack`` command (python-openstackclient)
and openstacksdk's ``openstack.connect``.

The daemon serves the front on a free port (``API_FRONT`` vector, an
openstack.conf written here naming the network of ``"networks": "auto"``),
with a user, a dummy host, a public network and a public image. The CLI:
``flavor list``, ``image list``, ``server create`` of a flavor and an
image, ``server list`` until ACTIVE, ``server show``, ``server stop`` /
``start`` / ``reboot`` / ``delete``. The SDK: list flavors and images,
create a server, wait for ACTIVE, list it, delete it, wait for it to go.
"""

import json
import os
import shutil
import subprocess

from twisted.trial import unittest

from tests.acceptance.cloud import FrontDaemonTestCase

try:
    import openstack
except ImportError:  # pragma: no cover - the test extra installs python-openstackclient
    openstack = None

USER, PASSWORD = "osuser", "ospass"
RUNNING, DONE = 3, 6

NET = """NAME = "public"
TYPE = RANGED
BRIDGE = br0
NETWORK_ADDRESS = 10.8.0.0
NETWORK_SIZE = C
"""


class OpenStackTestCase(FrontDaemonTestCase):
    """A daemon with the openstack front on a free port."""

    FRONT, USER, PASSWORD, NET = "openstack", USER, PASSWORD, NET

    def setUp(self):
        self.cli_path = shutil.which("openstack")
        if openstack is None or self.cli_path is None:
            raise unittest.SkipTest("python-openstackclient is not installed")
        self.start_front("openstack.conf",
                         'REGION = "RegionOne"\nNETWORK = "public"\n'
                         'VM_TYPE = [ NAME = "m1.small", TEMPLATE = "m1.small.mako" ]\n'
                         'VM_TYPE = [ NAME = "m1.large", TEMPLATE = "m1.large.mako" ]\n')
        location = self.location
        image_file = os.path.join(location, "cirros.img")
        with open(image_file, "wb") as f:
            f.write(b"\0" * 65536)
        self.image_id = self.one.image.allocate(
            f'NAME = "cirros"\nTYPE = OS\nPATH = "{image_file}"\n', 1)
        self.one.image.chmod(self.image_id, 1, 1, 0, 0, 0, 0, 1, 0, 0)
        self.wait_for(lambda: self.one.image.info(self.image_id).STATE == 1, "the image READY")
        self.auth_url = f"http://127.0.0.1:{self.port}/identity"

    def vm_of(self, server_id):
        """The VM id a server UUID encodes (the decimal digits of its last group)."""
        return int(server_id.rsplit("-", 1)[1])


class OpenStackCLITests(OpenStackTestCase):
    """The unmodified ``openstack`` command."""

    def osc(self, *args, parse=True):
        """Run ``openstack args`` (``-f json`` when ``parse``); returns the
        parsed output, or the stdout text."""
        home = os.path.join(self.location, "home")
        os.makedirs(home, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env.update(HOME=home, OS_AUTH_URL=self.auth_url, OS_USERNAME=USER,
                   OS_PASSWORD=PASSWORD, OS_PROJECT_NAME="users",
                   OS_USER_DOMAIN_NAME="Default", OS_PROJECT_DOMAIN_NAME="Default",
                   OS_IDENTITY_API_VERSION="3", OS_REGION_NAME="RegionOne",
                   OS_INTERFACE="public")
        command = [self.cli_path] + list(args) + (["-f", "json"] if parse else [])
        done = subprocess.run(command, env=env, cwd=self.location, capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)
        self.assertEqual(done.returncode, 0,
                         f"openstack {' '.join(args)}: {done.stderr}\n"
                         f"{self.daemon.diagnostics(15)}")
        return json.loads(done.stdout) if parse else done.stdout

    def show_status(self, name, wanted):
        return self.wait_for(
            lambda: (lambda s: s if s["status"] == wanted else None)(
                self.osc("server", "show", name)),
            f"server {name} {wanted}", timeout=120)

    def test_server_life(self):
        flavors = self.osc("flavor", "list")
        self.assertEqual(sorted((f["Name"], f["RAM"], f["VCPUs"]) for f in flavors),
                         [("m1.large", 1024, 1), ("m1.small", 256, 1)])
        images = self.osc("image", "list")
        self.assertEqual([(i["Name"], i["Status"]) for i in images], [("cirros", "active")])
        created = self.osc("server", "create", "--flavor", "m1.small", "--image", "cirros",
                           "web1")
        vid = self.vm_of(created["id"])
        vm = self.one.vm.info(vid)
        self.assertEqual((vm.NAME, vm.UNAME, vm.TEMPLATE["NIC"]["NETWORK"]),
                         ("web1", USER, "public"))
        listed = self.wait_for(
            lambda: [s for s in self.osc("server", "list") if s["Status"] == "ACTIVE"],
            "web1 ACTIVE in server list", timeout=120)
        self.assertEqual([(s["Name"], s["ID"], s["Flavor"], s["Image"]) for s in listed],
                         [("web1", created["id"], "m1.small", "cirros")])
        self.assertIn(vm.TEMPLATE["NIC"]["IP"], str(listed[0]["Networks"]))
        shown = self.osc("server", "show", "web1")
        self.assertEqual((shown["id"], shown["status"], shown["OS-EXT-STS:power_state"]),
                         (created["id"], "ACTIVE", 1))
        self.osc("server", "stop", "web1", parse=False)
        self.show_status("web1", "SHUTOFF")
        self.assertEqual(self.one.vm.info(vid).STATE, 4)  # STOPPED
        self.osc("server", "start", "web1", parse=False)
        self.show_status("web1", "ACTIVE")
        self.osc("server", "reboot", "web1", parse=False)
        self.wait_for(lambda: "VM rebooted" in open(
            os.path.join(self.daemon.path("var"), str(vid), "vm.log")).read(),
            "the reboot in vm.log")
        self.osc("server", "delete", "--wait", "web1", parse=False)
        self.assertEqual(self.one.vm.info(vid).STATE, DONE)
        self.assertEqual(self.osc("server", "list"), [])


class OpenStackSDKTests(OpenStackTestCase):
    """openstacksdk's ``openstack.connect``."""

    def test_server_life(self):
        conn = openstack.connect(auth_url=self.auth_url, username=USER, password=PASSWORD,
                                 project_name="users", user_domain_name="Default",
                                 project_domain_name="Default", region_name="RegionOne",
                                 identity_api_version="3", load_yaml_config=False,
                                 load_envvars=False)
        self.addCleanup(conn.close)
        flavor = conn.compute.find_flavor("m1.large")
        self.assertEqual((flavor.id, flavor.ram, flavor.vcpus), ("m1.large", 1024, 1))
        image = conn.image.find_image("cirros")
        self.assertEqual(self.vm_of(image.id), self.image_id)
        server = conn.compute.create_server(name="sdk1", flavor_id=flavor.id,
                                            image_id=image.id, networks="auto")
        server = conn.compute.wait_for_server(server, status="ACTIVE", wait=120)
        self.assertEqual(server.flavor.original_name, "m1.large")
        self.assertEqual([s.name for s in conn.compute.servers()], ["sdk1"])
        vid = self.vm_of(server.id)
        self.assertEqual(self.one.vm.info(vid).TEMPLATE["MEMORY"], "1024")
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=120)
        self.assertEqual(self.one.vm.info(vid).STATE, DONE)
        self.assertEqual(list(conn.compute.servers()), [])
