"""The EC2 Query front (nebtwist.api.ec2) against an in-process daemon, with
boto3 (SigV4, and SigV2) as the client; boto3 blocks, so it runs in a thread."""

import hashlib
import os
import time
import urllib.error
import urllib.parse
import urllib.request

from lxml import etree
from twisted.internet import reactor, threads
from twisted.trial.unittest import TestCase

from nebtwist.tap import StartupError
from nebtwist.testing import start_nebula
from tests.sshd import free_port
from tests.test_xmlrpc_api import HELEN, add_user, ok, wait_host_monitored

try:
    import boto3
    import botocore.auth
    import botocore.awsrequest
    import botocore.config
    import botocore.credentials
    from botocore.exceptions import ClientError
except ImportError:  # pragma: no cover - CI installs boto3 (.ci/run)
    boto3 = None


def sha1_hex(text):
    return hashlib.sha1(text.encode()).hexdigest()


def client(neb, user="oneadmin", password="onecloud", secret=None, v2=False):
    config = botocore.config.Config(retries={"max_attempts": 1},
                                    signature_version="v2" if v2 else None)
    c = boto3.client("ec2", endpoint_url=neb.ec2_url, region_name="us-east-1",
                     aws_access_key_id=user,
                     aws_secret_access_key=secret or sha1_hex(password), config=config)
    neb.testcase_cleanup(lambda: threads.deferToThread(c.close))
    return c


def call(c, method, **kwargs):
    """``c.method(**kwargs)`` in a thread (a Deferred)."""
    return threads.deferToThread(lambda: getattr(c, method)(**kwargs))


async def sleep(seconds):
    from twisted.internet import task
    await task.deferLater(reactor, seconds, lambda: None)


def states(reply):
    """{instance id: state name} of a DescribeInstances reply."""
    return {i["InstanceId"]: i["State"]["Name"]
            for r in reply["Reservations"] for i in r["Instances"]}


async def wait_states(testcase, c, ids, wanted, timeout=90.0):
    deadline = reactor.seconds() + timeout
    while True:
        got = states(await call(c, "describe_instances", InstanceIds=ids))
        if all(got.get(i) == wanted for i in ids):
            return got
        if reactor.seconds() > deadline:
            testcase.fail(f"instances {ids} not {wanted}: {got}")
        await sleep(0.2)


def raw_sigv2_post(url, params, user="oneadmin", secret=sha1_hex("onecloud")):
    """POST ``params`` form-encoded, signed with botocore's SigV2; returns
    (status, body bytes)."""
    request = botocore.awsrequest.AWSRequest(method="POST", url=url, data=dict(params))
    botocore.auth.SigV2Auth(botocore.credentials.Credentials(user, secret)).add_auth(request)
    body = urllib.parse.urlencode(request.data).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def raw_sigv2(url, params, method="POST", timestamp=None, user="oneadmin",
              secret=None, sign_url=None):
    """Send ``params`` signed with SigV2 (botocore's calculation) with the
    given ``Timestamp`` (default now), as a form POST or a GET query;
    returns (status, body bytes). ``sign_url``: sign for this URL's host
    instead (a client that reached the front through a proxy)."""
    secret = secret or sha1_hex("onecloud")
    params = dict(params, AWSAccessKeyId=user, SignatureVersion="2",
                  SignatureMethod="HmacSHA256",
                  Timestamp=timestamp or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    request = botocore.awsrequest.AWSRequest(method=method, url=sign_url or url)
    auth = botocore.auth.SigV2Auth(botocore.credentials.Credentials(user, secret))
    params["Signature"] = auth.calc_signature(request, params)[1]
    encoded = urllib.parse.urlencode(params)
    if method == "GET":
        req = urllib.request.Request(f"{url}?{encoded}", method="GET")
    else:
        req = urllib.request.Request(url, data=encoded.encode(), method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class EC2Tests(TestCase):
    """boto3 against the EC2 front of a daemon with one dummy host."""

    timeout = 120

    def setUp(self):
        if boto3 is None:
            self.skipTest("boto3 is not installed")

    async def start(self):
        neb = await start_nebula(self)
        return neb

    async def image(self, neb, c):
        src = self.mktemp()
        with open(src, "wb") as f:
            f.write(b"disk" * 256)
        iid = await ok(neb, "one.image.allocate", f'NAME = "tty"\nPATH = "{os.path.abspath(src)}"\n', 1)
        deadline = reactor.seconds() + 90
        while True:
            images = (await call(c, "describe_images"))["Images"]
            if images and images[0]["State"] == "available":
                return iid, images
            if reactor.seconds() > deadline:
                self.fail(f"image not available: {images}")
            await sleep(0.1)

    async def test_describe_static(self):
        """Regions, zones and the configured instance types (with the CPU and
        MEMORY their templates render)."""
        neb = await self.start()
        c = client(neb)
        regions = (await call(c, "describe_regions"))["Regions"]
        self.assertEqual([r["RegionName"] for r in regions], ["default"])
        zones = (await call(c, "describe_availability_zones"))["AvailabilityZones"]
        self.assertEqual([(z["ZoneName"], z["State"]) for z in zones], [("default", "available")])
        types = (await call(c, "describe_instance_types"))["InstanceTypes"]
        by_name = {t["InstanceType"]: t for t in types}
        self.assertEqual(sorted(by_name), ["m1.large", "m1.small"])
        self.assertEqual(by_name["m1.small"]["MemoryInfo"]["SizeInMiB"], 256)

    async def test_run_describe_terminate(self):
        """An image shows as ami-00000000; two m1.small run, are listed in one
        reservation with privateIpAddress unset (no network), reach running,
        then shutting-down and terminated; SigV2 sees the same."""
        neb = await self.start()
        hid = await ok(neb, "one.host.allocate", "host01", "im_dummy", "vmm_dummy", "tm_dummy")
        c = client(neb)
        iid, images = await self.image(neb, c)
        self.assertEqual(iid, 0)
        self.assertEqual(images[0]["ImageId"], "ami-00000000")
        self.assertEqual(images[0]["ImageType"], "machine")
        await wait_host_monitored(neb, hid)
        reply = await call(c, "run_instances", ImageId="ami-00000000", InstanceType="m1.small",
                           MinCount=2, MaxCount=2, UserData="hello")
        ids = [i["InstanceId"] for i in reply["Instances"]]
        self.assertEqual(ids, ["i-0", "i-1"])
        self.assertRegex(reply["ReservationId"], r"^r-[0-9a-f]{8}$")
        self.assertEqual({i["InstanceType"] for i in reply["Instances"]}, {"m1.small"})
        vm = neb.nebula.vmpool.get(0)
        self.assertEqual(vm.template.get_vector("CONTEXT")["EC2_USER_DATA"], "aGVsbG8=")
        self.assertEqual(vm.template.get_str("INSTANCE_TYPE"), "m1.small")

        described = await call(c, "describe_instances")
        self.assertEqual(len(described["Reservations"]), 1)
        self.assertEqual(described["Reservations"][0]["ReservationId"], reply["ReservationId"])
        await wait_states(self, c, ids, "running")
        v2 = client(neb, v2=True)
        self.assertEqual(states(await call(v2, "describe_instances")),
                         {"i-0": "running", "i-1": "running"})
        one = (await call(c, "describe_instances", InstanceIds=["i-1"]))["Reservations"]
        self.assertEqual([i["InstanceId"] for r in one for i in r["Instances"]], ["i-1"])
        self.assertEqual(one[0]["Instances"][0]["ImageId"], "ami-00000000")

        filtered = await call(c, "describe_instances", Filters=[
            {"Name": "instance-state-name", "Values": ["running", "pending"]},
            {"Name": "instance-type", "Values": ["m1.small"]},
            {"Name": "image-id", "Values": ["ami-00000000"]}])
        self.assertEqual(sorted(states(filtered)), ids)
        none = await call(c, "describe_instances", Filters=[
            {"Name": "instance-type", "Values": ["m1.large"]}])
        self.assertEqual(none["Reservations"], [])
        with self.assertRaises(ClientError) as caught:
            await call(c, "describe_instances", Filters=[{"Name": "colour", "Values": ["red"]}])
        self.assertEqual(caught.exception.response["Error"]["Code"], "InvalidParameterValue")
        term = (await call(c, "terminate_instances", InstanceIds=ids))["TerminatingInstances"]
        self.assertEqual([(t["InstanceId"], t["PreviousState"]["Name"],
                           t["CurrentState"]["Name"]) for t in term],
                         [("i-0", "running", "shutting-down"),
                          ("i-1", "running", "shutting-down")])
        await wait_states(self, c, ids, "terminated")

    async def test_errors(self):
        """Wrong secret -> AuthFailure and nothing created; unknown action,
        instance, AMI and type get their codes; missing ImageId."""
        neb = await self.start()
        c = client(neb)
        bad = client(neb, secret=sha1_hex("wrong"))
        with self.assertRaises(ClientError) as caught:
            await call(bad, "run_instances", ImageId="ami-00000000", MinCount=1, MaxCount=1)
        self.assertEqual(caught.exception.response["Error"]["Code"], "AuthFailure")
        self.assertEqual(caught.exception.response["ResponseMetadata"]["HTTPStatusCode"], 401)
        self.assertEqual(len(neb.nebula.vmpool), 0)

        status, body = await threads.deferToThread(
            raw_sigv2_post, neb.ec2_url, {"Action": "FlyToTheMoon", "Version": "2016-11-15"})
        self.assertEqual(status, 400)
        root = etree.fromstring(body)
        self.assertEqual(root.tag, "Response")
        self.assertEqual(root.findtext("Errors/Error/Code"), "InvalidAction")
        self.assertTrue(root.findtext("RequestID"))
        status, body = await threads.deferToThread(
            raw_sigv2_post, neb.ec2_url, {"Action": "DescribeRegions"},
            secret=sha1_hex("wrong"))
        self.assertEqual((status, etree.fromstring(body).findtext("Errors/Error/Code")),
                         (401, "AuthFailure"))

        cases = [
            ("describe_instances", dict(InstanceIds=["i-42"]), "InvalidInstanceID.NotFound"),
            ("terminate_instances", dict(InstanceIds=["i-42"]), "InvalidInstanceID.NotFound"),
            ("describe_images", dict(ImageIds=["ami-00000042"]), "InvalidAMIID.NotFound"),
            ("run_instances", dict(ImageId="ami-00000042", MinCount=1, MaxCount=1),
             "InvalidAMIID.NotFound"),
            ("run_instances", dict(ImageId="", MinCount=1, MaxCount=1), "MissingParameter"),
        ]
        for method, kwargs, code in cases:
            with self.assertRaises(ClientError, msg=method) as caught:
                await call(c, method, **kwargs)
            self.assertEqual(caught.exception.response["Error"]["Code"], code, method)
            self.assertEqual(caught.exception.response["ResponseMetadata"]["HTTPStatusCode"],
                             400, method)
        await self.image(neb, c)
        with self.assertRaises(ClientError) as caught:
            await call(c, "run_instances", ImageId="ami-00000000", InstanceType="m9.huge",
                       MinCount=1, MaxCount=1)
        self.assertEqual(caught.exception.response["Error"]["Code"], "InvalidParameterValue")
        with self.assertRaises(ClientError) as caught:
            await call(c, "run_instances", ImageId="ami-00000000", MinCount=3, MaxCount=2)
        self.assertEqual(caught.exception.response["Error"]["Code"], "InvalidParameterValue")
        self.assertEqual(len(neb.nebula.vmpool), 0)

    async def test_users_see_their_own(self):
        """helen sees none of oneadmin's instances, even by id."""
        neb = await self.start()
        await add_user(neb, HELEN)
        c = client(neb)
        await self.image(neb, c)
        reply = await call(c, "run_instances", ImageId="ami-00000000", MinCount=1, MaxCount=1)
        vid = reply["Instances"][0]["InstanceId"]
        helen = client(neb, "helen", "helenpass")
        self.assertEqual((await call(helen, "describe_instances"))["Reservations"], [])
        for method in ("describe_instances", "terminate_instances"):
            with self.assertRaises(ClientError) as caught:
                await call(helen, method, InstanceIds=[vid])
            self.assertEqual(caught.exception.response["Error"]["Code"],
                             "InvalidInstanceID.NotFound")
        self.assertEqual(states(await call(c, "describe_instances")), {vid: "pending"})
        term = (await call(c, "terminate_instances", InstanceIds=[vid]))["TerminatingInstances"]
        self.assertEqual([(t["PreviousState"]["Name"], t["CurrentState"]["Name"]) for t in term],
                         [("pending", "terminated")], "a pending VM is finalized")
        self.assertEqual(states(await call(c, "describe_instances")), {vid: "terminated"})

    async def test_raw_requests(self):
        """A SigV2 GET query works and answers in the request's Version
        namespace; a Timestamp an hour old is RequestExpired (400)."""
        neb = await self.start()
        status, body = await threads.deferToThread(
            raw_sigv2, neb.ec2_url, {"Action": "DescribeRegions", "Version": "2012-12-01"},
            method="GET")
        self.assertEqual(status, 200, body)
        root = etree.fromstring(body)
        ns = "{http://ec2.amazonaws.com/doc/2012-12-01/}"
        self.assertEqual(root.tag, ns + "DescribeRegionsResponse")
        self.assertTrue(root.findtext(ns + "requestId"))
        self.assertEqual(root.findtext(f"{ns}regionInfo/{ns}item/{ns}regionName"), "default")
        old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
        status, body = await threads.deferToThread(
            raw_sigv2, neb.ec2_url, {"Action": "DescribeRegions"}, timestamp=old)
        self.assertEqual((status, etree.fromstring(body).findtext("Errors/Error/Code")),
                         (400, "RequestExpired"))
        status, body = await threads.deferToThread(
            raw_sigv2, neb.ec2_url, {"Version": "2016-11-15"})
        self.assertEqual((status, etree.fromstring(body).findtext("Errors/Error/Code")),
                         (400, "MissingParameter"))


class StartupTests(TestCase):
    """The EC2 front at start-up: econe.conf PORT and LISTEN, bad VM types."""

    async def test_bad_vm_type(self):
        """A VM type whose template file is missing stops the start with a
        one-line error naming it."""
        with self.assertRaises(StartupError) as caught:
            await start_nebula(self, ['econe.VM_TYPE=[NAME="m1.bad", TEMPLATE="nope.mako"]'])
        message = str(caught.exception)
        self.assertIn("m1.bad", message)
        self.assertIn("nope.mako", message)
        self.assertNotIn("\n", message)

    async def test_listen(self):
        """econe.conf LISTEN adds endpoints beside PORT; both answer."""
        port = free_port()
        neb = await start_nebula(self, [f'econe.LISTEN="tcp:{port}:interface=127.0.0.1"'])
        self.assertEqual(len(neb.service.ec2_ports), 2)
        self.assertEqual(neb.service.ec2_ports[1].getHost().port, port)
        for url in (neb.ec2_url, f"http://127.0.0.1:{port}/"):
            status, _ = await threads.deferToThread(raw_sigv2, url, {"Action": "DescribeRegions"})
            self.assertEqual(status, 200, url)

    async def test_server_name(self):
        """A SigV2 signature naming econe.conf SERVER as its host is accepted
        (a proxy in front); one naming another host is AuthFailure."""
        neb = await start_nebula(self, ['econe.SERVER="cloud.example.org"'])
        cases = [("http://cloud.example.org/", 200, None),
                 ("http://elsewhere.example.org/", 401, "AuthFailure")]
        for sign_url, status, code in cases:
            got, body = await threads.deferToThread(
                raw_sigv2, neb.ec2_url, {"Action": "DescribeRegions"}, sign_url=sign_url)
            self.assertEqual(got, status, sign_url)
            if code:
                self.assertEqual(etree.fromstring(body).findtext("Errors/Error/Code"), code)

    async def test_boto3_over_tls(self):
        """econe.conf LISTEN with an ssl: endpoint (nebula-cert's certificate):
        boto3 verifies it and runs DescribeRegions over HTTPS."""
        from tests.test_tls import listen_line, make_cert
        _, cert, out = make_cert(self)
        line = listen_line(out).replace("ssl:2634:", "ssl:0:interface=127.0.0.1:", 1)
        neb = await start_nebula(self, [f'econe.LISTEN="{line}"'])
        port = neb.service.ec2_ports[1].getHost().port
        c = boto3.client("ec2", endpoint_url=f"https://127.0.0.1:{port}/",
                         region_name="us-east-1", aws_access_key_id="oneadmin",
                         aws_secret_access_key=sha1_hex("onecloud"), verify=cert,
                         config=botocore.config.Config(retries={"max_attempts": 1}))
        self.addCleanup(lambda: threads.deferToThread(c.close))
        regions = (await call(c, "describe_regions"))["Regions"]
        self.assertEqual([r["RegionName"] for r in regions], ["default"])
