"""The ``econe-*`` commands (nebtwist.cli.econe).

The commands run for real, as subprocesses (``python -m nebtwist.cli.econe
COMMAND ...``, the code behind the console scripts), against the EC2 front
of a daemon started in-process (start_nebula) on 127.0.0.1, over HTTP and
over TLS (a certificate made by nebula-cert). The subprocesses are spawned
by the reactor, so the daemon answers while they run. Help, argument checks
and the streamed multipart body are checked in-process.
"""

import email.parser
import hashlib
import io
import os
import sys

import boto3
import botocore.config
from twisted.internet import defer, reactor, task, threads, utils
from twisted.trial.unittest import TestCase

import nebtwist
from nebtwist.cli import econe
from nebtwist.testing import start_nebula
from tests.sshd import free_port
from tests.test_xmlrpc_api import add_user, ok, wait_host_monitored

USER, PASSWORD = "consequi01", "consequi2010"
SESSION = f"{USER}:{PASSWORD}"

#: The network econe.conf NETWORK names: the seed's instance got 192.168.169.5.
PUBLIC_NET = """
NAME = "public"
TYPE = FIXED
BRIDGE = br0
LEASES = [ IP = 192.168.169.5 ]
"""

#: Image state READY (3.4).
READY = 1

#: one.*.chmod bits giving OTHER USE, the rest unchanged.
OTHER_USE = (-1, -1, -1, -1, -1, -1, 1, -1, -1)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(nebtwist.__file__)))


def sha1_hex(text):
    return hashlib.sha1(text.encode()).hexdigest()


def base_env(testcase):
    """The environment for the commands: no EC2_* or ONE_AUTH, an empty HOME
    (so no ~/.one/one_auth), this checkout first on the path."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("EC2_") and k != "ONE_AUTH" and not k.lower().endswith("_proxy")}
    env["HOME"] = os.path.abspath(testcase.mktemp())
    os.makedirs(env["HOME"])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    return env


async def econe_cmd(env, command, *args):
    """Run ``econe-<command> args`` as a subprocess; returns (stdout, stderr, status)."""
    out, err, code = await utils.getProcessOutputAndValue(
        sys.executable, ["-m", "nebtwist.cli.econe", command, *args], env=env,
        reactor=reactor)
    return out.decode(), err.decode(), code


def creds(user=USER, password=PASSWORD):
    return ["-K", user, "-S", password]


async def sleep(seconds):
    await task.deferLater(reactor, seconds, lambda: None)


async def wait_for(testcase, predicate, what, timeout=90.0):
    deadline = reactor.seconds() + timeout
    while not predicate():
        if reactor.seconds() > deadline:
            testcase.fail(f"timed out waiting for {what}")
        await sleep(0.05)


class EconeCommandTests(TestCase):
    """The commands against a daemon's EC2 front."""

    timeout = 60

    async def start(self, overrides=()):
        neb = await start_nebula(self, list(overrides))
        await add_user(neb, SESSION)
        return neb

    async def image(self, neb, name, shared):
        """An image of oneadmin's (usable by others if ``shared``), once READY."""
        src = os.path.abspath(self.mktemp())
        with open(src, "wb") as f:
            f.write(b"disk" * 256)
        iid = await ok(neb, "one.image.allocate", f'NAME = "{name}"\nPATH = "{src}"\n', 1)
        if shared:
            await ok(neb, "one.image.chmod", iid, *OTHER_USE)
        await wait_for(self, lambda: neb.nebula.imagepool.get(iid).state == READY,
                       f"image {iid} READY")
        return iid

    def assertFails(self, result, prog, fragment):
        """Status 1, nothing on stdout, one ``prog: ...`` line holding ``fragment``."""
        out, err, code = result
        self.assertEqual((code, out), (1, ""), err)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertTrue(err.startswith(f"{prog}: "), err)
        self.assertIn(fragment, err)

    async def test_seed_session(self):
        """The seed's session, with its flags and a trailing space in EC2_URL:
        describe-images -H shows oneadmin's shared image 1 (and not the
        private image 0), run-instances 1 starts instance 0 of type m1.small,
        describe-instances shows it with its image, state and the econe.conf
        NETWORK's address, terminate-instances ends it."""
        neb = await self.start(['econe.NETWORK="public"'])
        hid = await ok(neb, "one.host.allocate", "host01", "im_dummy", "vmm_dummy", "tm_dummy")
        net = await ok(neb, "one.vn.allocate", PUBLIC_NET)
        await ok(neb, "one.vn.chmod", net, *OTHER_USE)
        self.assertEqual(await self.image(neb, "private", shared=False), 0)
        self.assertEqual(await self.image(neb, "ttylinux", shared=True), 1)
        location = neb.nebula.imagepool.get(1).source
        await wait_host_monitored(neb, hid)
        env = dict(base_env(self), EC2_URL=neb.ec2_url + " ")

        out, err, code = await econe_cmd(env, "describe-images", "-H", *creds())
        self.assertEqual((code, err), (0, ""))
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["Owner", "ImageId", "Location", "Status"])
        self.assertTrue(lines[0].startswith("Owner      ImageId      Location"), lines[0])
        self.assertRegex(lines[1], r"^-+$")
        self.assertEqual(len(lines), 3, out)
        self.assertEqual(lines[2].split(), ["oneadmin", "1", location, "available"])
        self.assertTrue(lines[2].startswith("oneadmin   1            /"), lines[2])

        out, err, code = await econe_cmd(env, "run-instances", "1", *creds())
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(out.splitlines(), [f"{USER} 1            0             m1.small"])
        vm = neb.nebula.vmpool.get(0)
        self.assertEqual((vm.uid, vm.template.get_str("INSTANCE_TYPE")),
                         (neb.nebula.userpool.find(USER).oid, "m1.small"))

        await wait_for(self, lambda: neb.nebula.vmpool.get(0).short_state() == "runn",
                       "instance 0 running")
        out, err, code = await econe_cmd(env, "describe-instances", "-H", *creds())
        self.assertEqual((code, err), (0, ""))
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["Owner", "Id", "ImageId", "State", "IP", "Type"])
        self.assertEqual([line.split() for line in lines[2:]],
                         [[USER, "0", "1", "running", "192.168.169.5", "m1.small"]])
        out, _, code = await econe_cmd(env, "describe-instances", "--ec2-ids", "i-0",
                                       *creds())
        self.assertEqual((code, out.split()),
                         (0, [USER, "i-0", "ami-00000001", "running", "192.168.169.5",
                              "m1.small"]))

        out, err, code = await econe_cmd(env, "terminate-instances", "0", *creds())
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(out, "Success: Terminating 0 in running state\n")
        await wait_for(self, lambda: neb.nebula.vmpool.get(0).short_state() == "done",
                       "instance 0 done")
        out, _, code = await econe_cmd(env, "describe-instances", *creds())
        self.assertEqual((code, [line.split()[3] for line in out.splitlines()]),
                         (0, ["terminated"]))

    async def test_run_options(self):
        """-n 2 starts two instances in one reservation, -t picks the type,
        -d sends base64 user data and -f reads it from a file; ami- ids are
        accepted."""
        neb = await self.start()
        await self.image(neb, "ttylinux", shared=True)
        env = dict(base_env(self), EC2_URL=neb.ec2_url)
        out, err, code = await econe_cmd(env, "run-instances", "ami-00000000", "-n", "2",
                                         "-t", "m1.large", "-d", "hello", *creds())
        self.assertEqual((code, err), (0, ""))
        self.assertEqual([line.split() for line in out.splitlines()],
                         [[USER, "0", "0", "m1.large"], [USER, "0", "1", "m1.large"]])
        self.assertEqual(neb.nebula.vmpool.get(1).template.get_vector("CONTEXT")
                         ["EC2_USER_DATA"], "aGVsbG8=")
        data = os.path.abspath(self.mktemp())
        with open(data, "wb") as f:
            f.write(b"#!/bin/sh\n")
        out, err, code = await econe_cmd(env, "run-instances", "0", "-f", data, *creds())
        self.assertEqual((code, out.split()), (0, [USER, "0", "2", "m1.small"]), err)
        self.assertEqual(neb.nebula.vmpool.get(2).template.get_vector("CONTEXT")
                         ["EC2_USER_DATA"], "IyEvYmluL3NoCg==")
        out, _, code = await econe_cmd(env, "terminate-instances", "i-1", "2", *creds())
        self.assertEqual((code, out.splitlines()),
                         (0, ["Success: Terminating 1 in pending state",
                              "Success: Terminating 2 in pending state"]))

    async def test_credentials(self):
        """Flags beat EC2_ACCESS_KEY/EC2_SECRET_KEY, which beat ONE_AUTH
        (whose password is hashed); a 40-hex secret is used as it is; half a
        pair or none at all is a clear error. -U beats EC2_URL."""
        neb = await self.start()
        base = dict(base_env(self), EC2_URL=neb.ec2_url)
        auth = os.path.abspath(self.mktemp())
        with open(auth, "w") as f:
            f.write(f"{SESSION}\n")
        bad_auth = os.path.abspath(self.mktemp())
        with open(bad_auth, "w") as f:
            f.write(f"{USER}:wrong\n")
        good_env = {"EC2_ACCESS_KEY": USER, "EC2_SECRET_KEY": PASSWORD}
        bad_env = {"EC2_ACCESS_KEY": USER, "EC2_SECRET_KEY": "wrong"}
        cases = [
            # (label, extra environment, arguments, ok?)
            ("flags over env", bad_env, creds(), True),
            ("flags over env (bad flags)", good_env, creds(password="wrong"), False),
            ("env over ONE_AUTH", dict(good_env, ONE_AUTH=bad_auth), [], True),
            ("env over ONE_AUTH (bad env)", dict(bad_env, ONE_AUTH=auth), [], False),
            ("ONE_AUTH", {"ONE_AUTH": auth}, [], True),
            ("bad ONE_AUTH", {"ONE_AUTH": bad_auth}, [], False),
            ("-S as SHA1 hex", {}, creds(password=sha1_hex(PASSWORD).upper()), True),
            ("EC2_SECRET_KEY as SHA1 hex",
             {"EC2_ACCESS_KEY": USER, "EC2_SECRET_KEY": sha1_hex(PASSWORD)}, [], True),
            ("-U over EC2_URL", {"EC2_URL": f"http://127.0.0.1:{free_port()}/"},
             ["-U", neb.ec2_url] + creds(), True),
        ]
        results = await defer.gatherResults([
            defer.ensureDeferred(econe_cmd(dict(base, **extra), "describe-images", *args))
            for _, extra, args, _ in cases])
        for (label, _, _, good), (out, err, code) in zip(cases, results):
            if good:
                self.assertEqual((code, err), (0, ""), label)
            else:
                self.assertFails((out, err, code), "econe-describe-images",
                                 "econe-describe-images: AuthFailure: ")

        half = await econe_cmd(base, "describe-images", "-K", USER)
        self.assertFails(half, "econe-describe-images", "-K/--access-key needs -S/--secret-key")
        half = await econe_cmd(dict(base, EC2_SECRET_KEY=PASSWORD), "describe-images")
        self.assertFails(half, "econe-describe-images",
                         "EC2_SECRET_KEY is set but EC2_ACCESS_KEY is not")
        none = await econe_cmd(base, "describe-instances")
        self.assertFails(none, "econe-describe-instances", "No credentials")
        self.assertIn(os.path.join(base["HOME"], ".one", "one_auth"), none[1])

    async def test_errors(self):
        """Server errors print ``prog: Code: Message`` and exit 1: a wrong
        password, an unknown image, an unknown instance, a bad type, an
        unknown key pair; a
        refused connection and a bad URL say so, without a traceback."""
        neb = await self.start()
        await self.image(neb, "ttylinux", shared=True)
        env = dict(base_env(self), EC2_URL=neb.ec2_url)
        refused = f"http://127.0.0.1:{free_port()}/"
        results = await defer.gatherResults([defer.ensureDeferred(d) for d in [
            econe_cmd(env, "describe-images", *creds(password="wrong")),
            econe_cmd(env, "run-instances", "42", *creds()),
            econe_cmd(env, "run-instances", "0", "-t", "m9.huge", *creds()),
            econe_cmd(env, "terminate-instances", "42", *creds()),
            econe_cmd(env, "describe-instances", "-U", refused, *creds()),
            econe_cmd(env, "describe-instances", "-U", "ftp://example.org/", *creds()),
            econe_cmd(env, "run-instances", "0", "-n", "3-2", *creds()),
            econe_cmd(env, "run-instances", "0", "-k", "nokey", *creds()),
        ]])
        expected = [
            ("econe-describe-images", "econe-describe-images: AuthFailure: "),
            ("econe-run-instances",
             "econe-run-instances: InvalidAMIID.NotFound: The image id '[ami-00000042]' "
             "does not exist"),
            ("econe-run-instances", "econe-run-instances: InvalidParameterValue: "),
            ("econe-terminate-instances",
             "econe-terminate-instances: InvalidInstanceID.NotFound: "),
            ("econe-describe-instances",
             f"econe-describe-instances: Cannot connect to {refused}: connection refused"),
            ("econe-describe-instances", "Invalid URL ftp://example.org/"),
            ("econe-run-instances", "Invalid instance count 3-2"),
            ("econe-run-instances", "econe-run-instances: InvalidKeyPair.NotFound: "),
        ]
        for result, (prog, fragment) in zip(results, expected):
            self.assertFails(result, prog, fragment)
            self.assertNotIn("Traceback", result[1])
        self.assertEqual(len(neb.nebula.vmpool), 0)

    async def test_https(self):
        """Over econe.conf's ssl: LISTEN (nebula-cert's self-signed
        certificate): --ca-bundle or EC2_CA_BUNDLE trusts it; without either
        the system CAs do not, and the error says what to do; --insecure
        skips the check and warns."""
        from tests.test_tls import listen_line, make_cert
        _, cert, out = make_cert(self)
        line = listen_line(out).replace("ssl:2634:", "ssl:0:interface=127.0.0.1:", 1)
        neb = await self.start([f'econe.LISTEN="{line}"'])
        await self.image(neb, "ttylinux", shared=True)
        url = f"https://127.0.0.1:{neb.service.ec2_ports[1].getHost().port}/"
        env = dict(base_env(self), EC2_URL=url)
        results = await defer.gatherResults([defer.ensureDeferred(d) for d in [
            econe_cmd(env, "describe-images", "--ca-bundle", cert, *creds()),
            econe_cmd(dict(env, EC2_CA_BUNDLE=cert), "describe-images", *creds()),
            econe_cmd(env, "describe-images", *creds()),
            econe_cmd(env, "describe-images", "--insecure", *creds()),
            econe_cmd(env, "describe-images", "--ca-bundle", cert + ".missing", *creds()),
        ]])
        (out1, err1, code1), (out2, err2, code2), failed, insecure, missing = results
        self.assertEqual((code1, err1), (0, ""))
        self.assertEqual(out1.split()[:2], ["oneadmin", "0"])
        self.assertEqual((code2, err2, out2), (0, "", out1))
        self.assertFails(failed, "econe-describe-images", f"TLS error talking to {url}")
        self.assertIn("certificate", failed[1])
        self.assertIn("--insecure", failed[1])
        self.assertEqual((insecure[2], insecure[0]), (0, out1))
        self.assertIn("not verifying the server's certificate", insecure[1])
        self.assertFails(missing, "econe-describe-images", "CA bundle")

    async def test_upload_register(self):
        """econe-upload streams a file (multipart POST, SigV2) and prints the
        new image's id, with a progress bar when asked; the file arrives
        whole; econe-register takes the id, and a bucket/key of the S3
        repository (put there with boto3); both are listed. A missing file
        is refused before anything is sent; a wrong password is AuthFailure."""
        neb = await self.start()
        env = dict(base_env(self), EC2_URL=neb.ec2_url)
        src = os.path.join(os.path.abspath(self.mktemp()), "tty linux.img")
        os.makedirs(os.path.dirname(src))
        payload = bytes(range(256)) * 3000  # 768,000 bytes
        with open(src, "wb") as f:
            f.write(payload)
        out, err, code = await econe_cmd(env, "upload", "--progress", src, *creds())
        self.assertEqual(code, 0, err)
        self.assertRegex(out, r"^Success: ImageId [0-9]+\n$")
        iid = int(out.split()[-1])
        self.assertIn("100% [", err)
        self.assertIn("tty linux.img", err)
        image = neb.nebula.imagepool.get(iid)
        self.assertEqual(image.uname, USER)
        await wait_for(self, lambda: neb.nebula.imagepool.get(iid).state == READY,
                       f"uploaded image {iid} READY")
        with open(neb.nebula.imagepool.get(iid).source, "rb") as f:
            self.assertEqual(hashlib.sha1(f.read()).hexdigest(), sha1_hex_bytes(payload))

        out, err, code = await econe_cmd(env, "register", str(iid), *creds())
        self.assertEqual((code, out), (0, f"Success: ImageId {iid}\n"), err)

        # An object of the S3 repository (same endpoint, path-style) as bucket/key.
        s3 = boto3.client("s3", endpoint_url=neb.ec2_url, region_name="us-east-1",
                          aws_access_key_id=USER, aws_secret_access_key=sha1_hex(PASSWORD),
                          config=botocore.config.Config(s3={"addressing_style": "path"},
                                                        retries={"max_attempts": 1}))
        self.addCleanup(lambda: threads.deferToThread(s3.close))
        await threads.deferToThread(s3.create_bucket, Bucket="images")
        await threads.deferToThread(s3.put_object, Bucket="images", Key="dir/tty.img",
                                    Body=payload[:4096])
        out, err, code = await econe_cmd(env, "register", "images/dir/tty.img", *creds())
        self.assertEqual(code, 0, err)
        self.assertRegex(out, r"^Success: ImageId [0-9]+\n$")
        s3_iid = int(out.split()[-1])
        self.assertEqual(neb.nebula.imagepool.get(s3_iid).uname, USER)
        self.assertNotEqual(s3_iid, iid)

        out, _, code = await econe_cmd(env, "describe-images", *creds())
        self.assertEqual(code, 0)
        owned = [line.split()[:2] for line in out.splitlines()]
        self.assertIn([USER, str(iid)], owned)
        self.assertIn([USER, str(s3_iid)], owned)

        missing = await econe_cmd(env, "upload", src + ".nope", *creds())
        self.assertFails(missing, "econe-upload", "not found")
        wrong = await econe_cmd(env, "upload", "--no-progress", src, *creds(password="x"))
        self.assertFails(wrong, "econe-upload", "econe-upload: AuthFailure: ")


def sha1_hex_bytes(data):
    return hashlib.sha1(data).hexdigest()


class EconeLocalTests(TestCase):
    """In-process: help, version, usage errors, ids, secrets and the body."""

    def main(self, name, *argv, environ=None):
        out, err = io.StringIO(), io.StringIO()
        description, configure, handler, headers = econe.COMMANDS[name]
        code = econe.run(name, description, configure, handler, argv=list(argv), stdout=out,
                         stderr=err, environ=environ or {}, headers=headers)
        return out.getvalue(), err.getvalue(), code

    def test_help_and_version(self):
        """Every command has -h (options, the credential order, the -S rule)
        and --version; -H only where there is a table."""
        for name in econe.COMMANDS:
            out, err, code = self.main(name, "-h")
            self.assertEqual((code, err), (0, ""), name)
            self.assertTrue(out.startswith(f"usage: {name} "), out)
            for fragment in ("--access-key", "--secret-key", "--url", "--ca-bundle",
                             "--insecure", "EC2_ACCESS_KEY", "EC2_SECRET_KEY", "ONE_AUTH",
                             "SHA1", "EC2_URL", "EC2_CA_BUNDLE"):
                self.assertIn(fragment, out, name)
            self.assertEqual("--headers" in out, econe.COMMANDS[name][3], name)
            out, err, code = self.main(name, "--version")
            self.assertEqual(code, 0)
            self.assertRegex(out, rf"^{name} \(nebtwist\) \S+\n$")

    def test_usage_errors(self):
        """Missing arguments and conflicting options end with status 1 before
        any credentials are looked for."""
        for name, argv, fragment in [
            ("econe-run-instances", [], "IMAGE"),
            ("econe-terminate-instances", [], "INSTANCE"),
            ("econe-upload", [], "FILE"),
            ("econe-register", [], "LOCATION"),
            ("econe-run-instances", ["1", "-d", "x", "-f", "y"], "not allowed with"),
            ("econe-upload", ["f", "--progress", "--no-progress"], "not allowed with"),
        ]:
            out, err, code = self.main(name, *argv)
            self.assertEqual((code, out), (1, ""), name)
            self.assertIn(fragment, err, name)

    def test_ids_and_secrets(self):
        """Numbers become ami-%08d / i-N; EC2 ids print back as numbers; a
        40-hex secret is kept (lower-cased), a password hashed."""
        self.assertEqual(econe.image_param("1"), "ami-00000001")
        self.assertEqual(econe.image_param("ami-00000007"), "ami-00000007")
        self.assertEqual(econe.image_param("bucket/key"), "bucket/key")
        self.assertEqual(econe.instance_param("18"), "i-18")
        self.assertEqual(econe.instance_param("i-18"), "i-18")
        self.assertEqual(econe.short_image("ami-00000010"), "10")
        self.assertEqual(econe.short_image("ami-00000000"), "0")
        self.assertEqual(econe.short_instance("i-18"), "18")
        self.assertEqual(econe.short_instance("r-1"), "r-1")
        digest = sha1_hex("consequi2010")
        self.assertEqual(econe.ec2_secret("consequi2010"), digest)
        self.assertEqual(econe.ec2_secret(digest.upper()), digest)

    def test_endpoint(self):
        """-U, else EC2_URL (blanks dropped), else localhost:4567; a path is
        added; only http and https."""
        class Args:
            url = None
        args = Args()
        self.assertEqual(econe.endpoint(args, {}), "http://localhost:4567/")
        self.assertEqual(econe.endpoint(args, {"EC2_URL": " https://cloud.example:8443 "}),
                         "https://cloud.example:8443/")
        args.url = "HTTP://user:pw@Cloud.Example:80"
        self.assertEqual(econe.endpoint(args, {}), "http://cloud.example/")
        args.url = "https://[::1]:4567/"
        self.assertEqual(econe.endpoint(args, {}), "https://[::1]:4567/")
        args.url = "http://127.0.0.1:1/x"
        self.assertEqual(econe.endpoint(args, {"EC2_URL": "http://other/"}),
                         "http://127.0.0.1:1/x")
        for bad in ("ftp://host/", "http:///", "http://host:99999/"):
            args.url = bad
            with self.assertRaises(econe.CommandError):
                econe.endpoint(args, {})

    def test_multipart_body(self):
        """The body is the fields then the file, read block by block (never
        more than asked), its length known in advance, and parses back as
        multipart/form-data."""
        path = os.path.join(os.path.abspath(self.mktemp()), 'my "disk".img')
        os.makedirs(os.path.dirname(path))
        payload = os.urandom(100_000)
        with open(path, "wb") as f:
            f.write(payload)
        seen = []
        fields = {"Action": "UploadImage", "Signature": "abc+/="}
        body = econe.MultipartBody(fields, "file", path, progress=seen.append)
        self.addCleanup(body.close)
        chunks = []
        while True:
            chunk = body.read(4096)
            if not chunk:
                break
            self.assertLessEqual(len(chunk), 4096)
            chunks.append(chunk)
        data = b"".join(chunks)
        self.assertEqual(len(data), body.length)
        self.assertEqual(sum(seen), len(payload))
        self.assertEqual(max(seen), 4096)
        message = email.parser.BytesParser().parsebytes(
            b"Content-Type: multipart/form-data; boundary=" + body.boundary.encode()
            + b"\r\n\r\n" + data)
        parts = {p.get_param("name", header="content-disposition"): p
                 for p in message.get_payload()}
        self.assertEqual(list(parts), ["Action", "Signature", "file"])
        self.assertEqual(parts["Signature"].get_payload(decode=True), b"abc+/=")
        self.assertEqual(parts["file"].get_payload(decode=True), payload)
        self.assertEqual(parts["file"].get_filename(), 'my "disk".img')

    def test_progress(self):
        """The bar shows the name, percentage and sizes, and ends its line."""
        now = [0.0]
        stream = io.StringIO()
        bar = econe.Progress(stream, "disk.img", 2 << 20, clock=lambda: now[0])
        now[0] = 1.0
        bar(1 << 20)
        self.assertIn("disk.img  50% [###############               ] 1.0 MiB / 2.0 MiB",
                      stream.getvalue())
        now[0] = 1.01
        bar(1)  # within PROGRESS_INTERVAL: not redrawn
        self.assertEqual(stream.getvalue().count("\r"), 1)
        bar((1 << 20) - 1)  # the end is always drawn
        bar.finish()
        self.assertIn("100% [" + "#" * 30 + "] 2.0 MiB / 2.0 MiB", stream.getvalue())
        self.assertTrue(stream.getvalue().endswith("\n"))
