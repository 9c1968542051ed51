"""The ElasticHosts front against a real ``twistd -n nebula``, driven by the
unmodified real clients: libcloud 3.7.0's ``ElasticHostsNodeDriver`` (the
last libcloud with it; removed in 3.8) and libcloud's
``CloudSigmaNodeDriver(api_version="1.0")``.

One install serves both: libcloud 3.7.0's CloudSigma 1.0 driver is the same
code as current libcloud's (3.9.1 on PyPI, checked: the classes
``CloudSigmaNodeDriver``, ``CloudSigma_1_0_Response``,
``CloudSigma_1_0_Connection`` and ``CloudSigma_1_0_NodeDriver`` of
``libcloud/compute/drivers/cloudsigma.py`` and ``libcloud/common/cloudsigma.py``
are identical, AST for AST; ``libcloud/common/base.py`` and
``libcloud/utils/misc.py`` differ in formatting, comments and a local
variable's name only).

Each client: list_nodes, list_images, list_sizes, create_node (drive create or
clone from a standard drive, imaging polled, server create), the node
reaching RUNNING on the dummy drivers, reboot_node, destroy_node.
"""

import gzip
import os

from twisted.trial import unittest

from tests.acceptance.cloud import FrontDaemonTestCase

try:
    from libcloud.compute.drivers.cloudsigma import CloudSigmaNodeDriver
    from libcloud.compute.drivers.elastichosts import ElasticHostsNodeDriver
    from libcloud.compute.types import NodeState
except ImportError:  # pragma: no cover - the test extra installs apache-libcloud 3.7.0
    ElasticHostsNodeDriver = None

USER, PASSWORD = "ehuser", "ehpass"
#: libcloud's ElasticHosts standard drive "CentOS Linux 5.5", mapped in the conf.
CENTOS = "38df0986-4d85-4b76-b502-3878ffc80161"
RUNNING, DONE = 3, 6

NET = """NAME = "public"
TYPE = RANGED
BRIDGE = br0
NETWORK_ADDRESS = 10.9.0.0
NETWORK_SIZE = C
"""


class LibcloudTestCase(FrontDaemonTestCase):
    """A daemon with the elastichosts front on a free port (its conf written
    here: ``PERSISTENT``), a user, a dummy host, a network and the image the
    standard drive maps to (public)."""

    PERSISTENT = "false"
    JSON_REPLIES = "true"

    FRONT, USER, PASSWORD, NET = "elastichosts", USER, PASSWORD, NET

    def setUp(self):
        if ElasticHostsNodeDriver is None:
            raise unittest.SkipTest("apache-libcloud 3.7.0 is not installed")
        self.start_front("elastichosts.conf",
                         f'PERSISTENT = "{self.PERSISTENT}"\nSTOP_TIMEOUT = 60\n'
                         f'JSON_REPLIES = "{self.JSON_REPLIES}"\n'
                         f'STANDARD_DRIVE = [ UUID = "{CENTOS}", IMAGE = "centos-5.5" ]\n')
        location = self.location
        self.content = os.urandom(1024) * 512  # 512 KiB, stored gzipped
        image_file = os.path.join(location, "centos.img.gz")
        with open(image_file, "wb") as f:
            f.write(gzip.compress(self.content))
        iid = self.one.image.allocate(f'NAME = "centos-5.5"\nTYPE = OS\nPATH = "{image_file}"\n',
                                      1)
        self.one.image.chmod(iid, 1, 1, 0, 0, 0, 0, 1, 0, 0)
        self.wait_for(lambda: self.one.image.info(iid).STATE == 1, "the image READY")

    def vm_of(self, node):
        """The VM id a server UUID encodes (its last group)."""
        return int(node.id.rsplit("-", 1)[1], 16)

    def running(self, driver, node):
        """Wait for the VM RUNNING and the driver's node RUNNING; returns the node."""
        vid = self.vm_of(node)
        self.wait_for(lambda: self.one.vm.info(vid).LCM_STATE == RUNNING, f"VM {vid} RUNNING")
        found = self.wait_for(
            lambda: [n for n in driver.list_nodes()
                     if n.id == node.id and n.state == NodeState.RUNNING],
            f"node {node.id} RUNNING in list_nodes")
        return found[0]

    def drive_content(self, vid, length):
        """The first ``length`` bytes of the VM's first disk's image file."""
        disk = self.one.vm.info(vid).TEMPLATE["DISK"]
        image = self.one.image.info(int(disk["IMAGE_ID"]))
        with open(image.SOURCE, "rb") as f:
            return f.read(length)


class ElasticHostsLibcloudTests(LibcloudTestCase):
    """libcloud 3.7.0's ``ElasticHostsNodeDriver`` (JSON bodies)."""

    def test_node_life(self):
        driver = ElasticHostsNodeDriver(USER, PASSWORD, secure=False, host="127.0.0.1",
                                        port=self.port)
        self.assertEqual(driver.list_nodes(), [])
        image = [i for i in driver.list_images() if i.id == CENTOS][0]
        size = [s for s in driver.list_sizes() if s.id == "small"][0]
        node = driver.create_node(name="n1", size=size, image=image)
        vid = self.vm_of(node)
        vm = self.one.vm.info(vid)
        self.assertEqual((vm.NAME, vm.UNAME, vm.TEMPLATE["CPU"], vm.TEMPLATE["MEMORY"]),
                         ("n1", USER, "2", "1700"))
        # the drive was imaged from the standard drive (gunzipped) before the server
        self.assertEqual(self.drive_content(vid, len(self.content)), self.content)
        node = self.running(driver, node)
        ip = vm.TEMPLATE["NIC"]["IP"]
        self.assertEqual(node.public_ips, [ip])
        self.assertEqual((node.extra["cpu"], node.extra["mem"], node.extra["smp"]),
                         (2000, 1700, 2))
        self.assertTrue(driver.reboot_node(node))
        self.assertTrue(driver.destroy_node(node))
        self.assertEqual(self.one.vm.info(vid).STATE, DONE)
        self.assertEqual(driver.list_nodes(), [])


class CloudSigma10LibcloudTests(LibcloudTestCase):
    """libcloud's ``CloudSigmaNodeDriver(api_version="1.0")`` (plain-text
    bodies under a JSON content type, text replies parsed whatever its Accept
    header says: JSON_REPLIES = false; reboot = stop + start, so servers are
    persistent: PERSISTENT = true)."""

    PERSISTENT = "true"
    JSON_REPLIES = "false"

    def test_node_life(self):
        driver = CloudSigmaNodeDriver(USER, PASSWORD, api_version="1.0", secure=False,
                                      host="127.0.0.1", port=self.port)
        self.assertEqual(driver.list_nodes(), [])
        images = driver.list_images()
        self.assertEqual([(i.id, i.name) for i in images], [(CENTOS, "centos-5.5")])
        size = [s for s in driver.list_sizes() if s.id == "small-1"][0]
        node = driver.create_node(name="cs1", size=size, image=images[0])
        self.assertEqual(node.state, NodeState.RUNNING)  # started after create
        vid = self.vm_of(node)
        # clone copies the standard drive's content as it is (gzip data here)
        with open(self.one.image.info(0).SOURCE, "rb") as f:
            stored = f.read()
        self.assertEqual(self.drive_content(vid, len(stored)), stored)
        node = self.running(driver, node)
        self.assertEqual(node.public_ips, [self.one.vm.info(vid).TEMPLATE["NIC"]["IP"]])
        self.assertTrue(driver.reboot_node(node))  # stop (kept: STOPPED) + start (resume)
        node = self.running(driver, node)
        self.assertTrue(driver.destroy_node(node))  # stop + destroy
        self.assertEqual(self.one.vm.info(vid).STATE, DONE)
        self.assertEqual(driver.list_nodes(), [])
