"""EC2 image actions against an in-process daemon: econe's UploadImage (a real
multipart/form-data POST signed with SigV2, built by hand as econe-upload
sends it), RegisterImage (econe 3.4's ``ami-...`` form, and ``bucket/key``
of the S3-like repository on the same endpoint) and DeregisterImage."""

import os
import time
import urllib.error
import urllib.request
import uuid

import botocore.auth
import botocore.awsrequest
import botocore.credentials
from lxml import etree
from twisted.internet import reactor, threads

from tests.test_ec2 import call, client, raw_sigv2, sha1_hex, sleep
from tests.test_ec2_actions import EC2TestCase, ready_image
from tests.test_xmlrpc_api import BOB, HELEN, add_user, ok

NS = "{http://ec2.amazonaws.com/doc/2008-12-01/}"


def upload(url, data, user="helen", secret=None, fields=None, tamper=None, file_field="file",
           truncate=False):
    """POST ``data`` as econe-upload does: multipart/form-data with the SigV2
    parameters as fields (signed with botocore's SigV2 over every field but
    Signature and file) and the image in field ``file``.

    :param tamper: fields changed after signing.
    :return: (HTTP status, parsed XML root).
    """
    secret = secret or sha1_hex("helenpass")
    params = {"Action": "UploadImage", "SignatureVersion": "2",
              "SignatureMethod": "HmacSHA256", "AWSAccessKeyId": user,
              "Version": "2008-12-01",
              "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    params.update(fields or {})
    request = botocore.awsrequest.AWSRequest(method="POST", url=url)
    auth = botocore.auth.SigV2Auth(botocore.credentials.Credentials(user, secret))
    params["Signature"] = auth.calc_signature(request, params)[1]
    params.update(tamper or {})
    boundary = uuid.uuid4().hex
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'
                    f'{v}\r\n'.encode() for k, v in params.items())
    if file_field:
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
                 f'filename="disk.img"\r\nContent-Type: application/octet-stream\r\n\r\n'
                 ).encode() + data + b"\r\n"
    if not truncate:
        body += f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, etree.fromstring(r.read())
    except urllib.error.HTTPError as e:
        return e.code, etree.fromstring(e.read())


def upload_sigv4(url, data, user="helen", secret=None):
    """The same upload with its fields but no signature ones, signed with
    botocore's SigV4 (which covers the body's SHA256); returns (status, root)."""
    boundary = uuid.uuid4().hex
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'
                    f'{v}\r\n'.encode() for k, v in (("Action", "UploadImage"),
                                                     ("Version", "2008-12-01")))
    body += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
             f'filename="disk.img"\r\n\r\n').encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = botocore.awsrequest.AWSRequest(method="POST", url=url, data=body, headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    credentials = botocore.credentials.Credentials(user, secret or sha1_hex("helenpass"))
    botocore.auth.SigV4Auth(credentials, "ec2", "us-east-1").add_auth(request)
    req = urllib.request.Request(url, data=body, method="POST", headers=dict(request.headers))
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, etree.fromstring(r.read())
    except urllib.error.HTTPError as e:
        return e.code, etree.fromstring(e.read())


def staged_files(neb):
    """Upload files left in the places UploadImage stages them."""
    found = []
    for folder in (os.path.join(neb.var_dir, "econe", ".staging"),
                   os.path.join(neb.var_dir, "econe-uploads")):
        if os.path.isdir(folder):
            found += [n for n in os.listdir(folder) if n.startswith("upload-")]
    return found


class ImageTests(EC2TestCase):

    async def wait_available(self, c, ami):
        deadline = reactor.seconds() + 90
        while True:
            images = (await call(c, "describe_images", ImageIds=[ami]))["Images"]
            if images[0]["State"] == "available":
                return images[0]
            if reactor.seconds() > deadline:
                self.fail(f"{ami} not available: {images}")
            await sleep(0.05)

    async def no_staged_files(self, neb):
        deadline = reactor.seconds() + 90
        while staged_files(neb):
            if reactor.seconds() > deadline:
                self.fail(f"staged upload files left: {staged_files(neb)}")
            await sleep(0.05)

    async def test_upload_image(self):
        """A 300 kB image (Twisted keeps it in a temporary file) uploaded by
        a user outside oneadmin's group becomes their OS image ec2-<uuid>
        in the core pool; the staged copy is removed once it is copied."""
        neb = await self.start()
        await add_user(neb, HELEN)
        helen = client(neb, "helen", "helenpass")
        data = os.urandom(300 * 1024)
        status, root = await threads.deferToThread(upload, neb.ec2_url, data)
        self.assertEqual(status, 200, etree.tostring(root))
        self.assertEqual(root.tag, NS + "RegisterImageResponse")
        ami = root.findtext(NS + "imageId")
        self.assertEqual(ami, "ami-00000000")
        image = neb.nebula.imagepool.get(0)
        self.assertRegex(image.name, r"^ec2-[0-9a-f-]{36}$")
        self.assertEqual((image.uname, image.type_name), ("helen", "OS"))
        described = await self.wait_available(helen, ami)
        self.assertEqual(described["Name"], image.name)
        with open(image.source, "rb") as f:
            self.assertEqual(f.read(), data)
        await self.no_staged_files(neb)
        rows = await neb.nebula.db.select("SELECT body FROM image_pool WHERE oid = 0")
        self.assertEqual(etree.fromstring(rows[0][0].encode()).findtext("UNAME"), "helen")

        # Signed with SigV4 instead (the body's hash is part of the signature).
        status, root = await threads.deferToThread(upload_sigv4, neb.ec2_url, b"v4" * 1000)
        self.assertEqual((status, root.findtext(NS + "imageId")), (200, "ami-00000001"))
        status, root = await threads.deferToThread(upload_sigv4, neb.ec2_url, b"v4",
                                                   secret=sha1_hex("wrong"))
        self.assertEqual((status, root.findtext("Errors/Error/Code")), (401, "AuthFailure"))
        await self.wait_available(helen, "ami-00000001")
        await self.no_staged_files(neb)

        # Bad requests: nothing registered, nothing left behind.
        cases = [
            (dict(secret=sha1_hex("wrong")), 401, "AuthFailure"),
            (dict(tamper={"Version": "2012-12-01"}), 401, "AuthFailure"),
            (dict(user="nobody"), 401, "AuthFailure"),
            (dict(file_field=None), 400, "MissingParameter"),
            (dict(truncate=True), 400, "InvalidParameterValue"),
            (dict(fields={"Action": "DescribeRegions"}), 200, None),
        ]
        for kwargs, want_status, code in cases:
            status, root = await threads.deferToThread(upload, neb.ec2_url, data, **kwargs)
            self.assertEqual(status, want_status, kwargs)
            if code:
                self.assertEqual(root.findtext("Errors/Error/Code"), code, kwargs)
        self.assertEqual(len(neb.nebula.imagepool), 2)
        self.assertEqual(staged_files(neb), [])

        # A file over the EC2 resource's max_upload (the front sets it from
        # econe.conf MAX_OBJECT_SIZE, which also bounds the whole body).
        site = neb.service.ec2_ports[0].site
        front = getattr(site, "front", None)
        ec2 = front.ec2 if front is not None else site.resource
        ec2.max_upload = 200 * 1024
        status, root = await threads.deferToThread(upload, neb.ec2_url, data)
        self.assertEqual((status, root.findtext("Errors/Error/Code")),
                         (413, "RequestEntityTooLarge"))
        self.assertEqual(len(neb.nebula.imagepool), 2)
        self.assertEqual(staged_files(neb), [])

    async def test_register_and_deregister(self):
        """RegisterImage ImageLocation=ami-... enables a disabled image (3.4);
        DeregisterImage refuses an image in use and deletes a free one."""
        neb = await self.start()
        c = client(neb)
        ami = await ready_image(self, neb, c)
        iid = int(ami[4:])
        await ok(neb, "one.image.enable", iid, False)
        self.assertEqual((await call(c, "describe_images", ImageIds=[ami]))["Images"][0]
                         ["State"], "failed")
        for location in (ami, str(iid)):
            reply = await call(c, "register_image", Name="ignored", ImageLocation=location)
            self.assertEqual(reply["ImageId"], ami)
        self.assertEqual(neb.nebula.imagepool.get(iid).state_name, "READY")
        await self.fails(c, "register_image", "InvalidAMIID.NotFound", Name="ignored",
                         ImageLocation="ami-00000042")
        await self.fails(c, "register_image", "InvalidParameterValue", Name="ignored",
                         ImageLocation="nobucket")

        reply = await call(c, "run_instances", ImageId=ami, MinCount=1, MaxCount=1)
        vid = reply["Instances"][0]["InstanceId"]
        await self.fails(c, "deregister_image", "IncorrectState", ImageId=ami)
        self.assertIn(iid, neb.nebula.imagepool.objects, "nothing lost")
        await add_user(neb, HELEN)
        helen = client(neb, "helen", "helenpass")
        await self.fails(helen, "deregister_image", "InvalidAMIID.NotFound", ImageId=ami)
        await ok(neb, "one.image.chmod", iid, -1, -1, -1, -1, -1, -1, 1, -1, -1)
        await self.fails(helen, "deregister_image", "UnauthorizedOperation", status=403,
                         ImageId=ami)
        await call(c, "terminate_instances", InstanceIds=[vid])
        source = neb.nebula.imagepool.get(iid).source
        await call(c, "deregister_image", ImageId=ami)
        self.assertNotIn(iid, neb.nebula.imagepool.objects)
        self.assertFalse(os.path.exists(source))
        await self.fails(c, "describe_images", "InvalidAMIID.NotFound", ImageIds=[ami])
        await self.fails(c, "deregister_image", "InvalidAMIID.NotFound", ImageId=ami)
        await self.fails(c, "deregister_image", "InvalidAMIID.Malformed", ImageId="ami-x")
        await self.fails(c, "deregister_image", "MissingParameter", ImageId="")

    async def test_register_from_repository(self):
        """ImageLocation = bucket/key: the S3 object (put with boto3's S3
        client, path-style, on the same endpoint) becomes the user's image."""
        import boto3
        import botocore.config

        neb = await self.start()
        for session in (HELEN, BOB):
            await add_user(neb, session)
        s3 = boto3.client("s3", endpoint_url=neb.ec2_url, region_name="us-east-1",
                          aws_access_key_id="helen",
                          aws_secret_access_key=sha1_hex("helenpass"),
                          config=botocore.config.Config(s3={"addressing_style": "path"},
                                                        retries={"max_attempts": 1}))
        self.addCleanup(lambda: threads.deferToThread(s3.close))
        try:
            await call(s3, "create_bucket", Bucket="images")
        except Exception as e:  # noqa: BLE001 - the repository is another part
            self.skipTest(f"no S3 repository on the front: {e}")
        data = os.urandom(64 * 1024)
        await call(s3, "put_object", Bucket="images", Key="dir/ttylinux.img", Body=data)
        helen, bob = client(neb, "helen", "helenpass"), client(neb, "bob", "bobpass", v2=True)

        reply = await call(helen, "register_image", Name="ttylinux", Description="tty linux",
                           ImageLocation="images/dir/ttylinux.img")
        ami = reply["ImageId"]
        image = neb.nebula.imagepool.get(int(ami[4:]))
        self.assertEqual((image.name, image.uname, image.template.get_str("DESCRIPTION")),
                         ("ttylinux", "helen", "tty linux"))
        described = await self.wait_available(helen, ami)
        self.assertEqual(described["Description"], "tty linux")
        with open(neb.nebula.imagepool.get(int(ami[4:])).source, "rb") as f:
            self.assertEqual(f.read(), data)
        # No Name (boto3 requires one; econe-register sends none): the key's last part.
        status, body = await threads.deferToThread(
            raw_sigv2, neb.ec2_url, {"Action": "RegisterImage", "Version": "2016-11-15",
                                     "ImageLocation": "s3://images/dir/ttylinux.img"},
            user="helen", secret=sha1_hex("helenpass"))
        self.assertEqual(status, 200, body)
        unnamed = etree.fromstring(body).findtext(
            "{http://ec2.amazonaws.com/doc/2016-11-15/}imageId")
        self.assertEqual(neb.nebula.imagepool.get(int(unnamed[4:])).name, "ttylinux.img")
        head = await call(s3, "head_object", Bucket="images", Key="dir/ttylinux.img")
        self.assertEqual(head["ContentLength"], len(data), "the object stays")

        count = len(neb.nebula.imagepool)
        await self.fails(helen, "register_image", "InvalidAMIName.Duplicate", Name="ttylinux",
                         ImageLocation="images/dir/ttylinux.img")
        await self.fails(helen, "register_image", "InvalidParameterValue", Name="other",
                         ImageLocation="images/nope.img")
        await self.fails(helen, "register_image", "InvalidParameterValue", Name="other",
                         ImageLocation="nobucket/x.img")
        await self.fails(bob, "register_image", "UnauthorizedOperation", status=403,
                         Name="other", ImageLocation="images/dir/ttylinux.img")
        self.assertEqual(len(neb.nebula.imagepool), count)
