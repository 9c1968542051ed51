"""Tests of EC2 instance types as Mako templates (:mod:`nebtwist.core.vmtypes`)
and of econe.conf loading (:func:`nebtwist.core.config.load_econe`).

The shipped conf/econe.conf and conf/ec2query_templates are used as shipped;
admin-added and broken types are written to trial's temporary folders. The
last test hands a rendered m1.small to a real in-process daemon's
one.vm.allocate after registering a tiny image.
"""

import base64
import itertools
import os

from twisted.trial.unittest import TestCase

from nebtwist import paths
from nebtwist.core import config as configmod
from nebtwist.core.vmtypes import VMTypeError, VMTypes, UnknownVMType
from nebtwist.template import Template
from nebtwist.testing import start_nebula
from tests.test_image import register, write
from tests.test_xmlrpc_api import ADMIN, RANGED_NET, ok, xml

SHIPPED_ECONE = paths.shipped("conf", "econe.conf")
SHIPPED_TEMPLATES = paths.shipped("conf", "ec2query_templates")

#: Expected (CPU, MEMORY) per shipped type.
SHIPPED_SIZES = {"m1.small": ("0.2", "256"), "m1.large": ("1", "1024")}

PUBLIC_KEY = 'ssh-rsa AAAAB3NzaC1yc2E "quoted" alice@example'


def econe(testcase, text, overrides=()):
    """An econe.conf with ``text`` in a fresh folder; returns (config, folder)."""
    folder = os.path.abspath(testcase.mktemp())
    os.makedirs(os.path.join(folder, "ec2query_templates"))
    path = os.path.join(folder, "econe.conf")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return configmod.load_econe(path, overrides), folder


def add_template(folder, name, text):
    with open(os.path.join(folder, "ec2query_templates", name), "w", encoding="utf-8") as f:
        f.write(text)
    return os.path.join(folder, "ec2query_templates", name)


class ShippedTypes(TestCase):
    """conf/econe.conf's types render and parse in every combination."""

    def test_shipped_econe_conf(self):
        cfg = configmod.load_econe(SHIPPED_ECONE)
        self.assertEqual(cfg.get_int("PORT"), 4567)
        self.assertEqual(sorted(v["NAME"] for v in cfg.vectors("VM_TYPE")),
                         ["m1.large", "m1.small"])
        self.assertIsNone(cfg.get("NETWORK"))
        self.assertEqual(VMTypes.load(cfg, SHIPPED_TEMPLATES).names(), ["m1.large", "m1.small"])

    def test_every_combination(self):
        cfg = configmod.load_econe(SHIPPED_ECONE)
        types = VMTypes.load(cfg, SHIPPED_TEMPLATES)
        user_data = base64.b64encode(b"#!/bin/sh\necho hi\n").decode()
        for name, ud, key, net in itertools.product(
                types.names(), (None, user_data), (None, PUBLIC_KEY), (None, "Public EC2")):
            with self.subTest(type=name, user_data=ud, key=key, network=net):
                variables = dict(image_id=42, image_path="/srv/img", user="alice", user_id=3,
                                 user_data=ud, key_name="k1" if key else None,
                                 public_key=key)
                if net is not None:
                    variables["network"] = net
                t = Template.parse(types.render(name, **variables))
                cpu, memory = SHIPPED_SIZES[name]
                self.assertEqual(t.get_str("CPU"), cpu)
                self.assertEqual(t.get_str("MEMORY"), memory)
                self.assertEqual(t.get_str("IMAGE_ID"), "42")
                self.assertEqual(t.get_str("INSTANCE_TYPE"), name)
                self.assertEqual(t.get_str("NAME"), "eco-vm")
                self.assertEqual(dict(t.get_vector("DISK")), {"IMAGE_ID": "42"})
                ctx = dict(t.get_vector("CONTEXT"))
                self.assertEqual(ctx["TARGET"], "hdb")
                self.assertEqual(ctx.get("EC2_USER_DATA"), ud)
                self.assertEqual(ctx.get("SSH_PUBLIC_KEY"), key)
                nics = t.get_all("NIC")
                if net is None:
                    self.assertEqual(nics, [])
                else:
                    self.assertEqual([dict(n) for n in nics], [{"NETWORK": net}])

    def test_network_from_econe_conf(self):
        cfg = configmod.load_econe(SHIPPED_ECONE, ['econe.NETWORK="Public EC2"'])
        types = VMTypes.load(cfg, SHIPPED_TEMPLATES)
        t = Template.parse(types.render("m1.small", image_id=1, user="alice"))
        self.assertEqual([dict(n) for n in t.get_all("NIC")], [{"NETWORK": "Public EC2"}])

    def test_device_prefix(self):
        types = VMTypes.load(configmod.load_econe(SHIPPED_ECONE), SHIPPED_TEMPLATES,
                             device_prefix="sd")
        t = Template.parse(types.render("m1.small", image_id=1, user="alice"))
        self.assertEqual(dict(t.get_vector("CONTEXT"))["TARGET"], "sdb")

    def test_unknown_type(self):
        types = VMTypes.load(configmod.load_econe(SHIPPED_ECONE), SHIPPED_TEMPLATES)
        with self.assertRaises(KeyError) as cm:
            types.render("m9.huge", image_id=1, user="alice")
        self.assertIsInstance(cm.exception, UnknownVMType)
        self.assertIn("m9.huge", str(cm.exception))
        self.assertIn("m1.small", str(cm.exception))

    def test_bad_variables(self):
        types = VMTypes.load(configmod.load_econe(SHIPPED_ECONE), SHIPPED_TEMPLATES)
        with self.assertRaisesRegex(TypeError, "imageid"):
            types.render("m1.small", imageid=1, user="alice")
        with self.assertRaisesRegex(TypeError, "image_id"):
            types.render("m1.small", user="alice")


class AdminTypes(TestCase):
    """Types an admin adds, and broken ones."""

    def test_admin_added_type(self):
        cfg, folder = econe(self, 'VM_TYPE = [ NAME = "m1.small", TEMPLATE = "m1.small.mako" ]\n'
                                  'VM_TYPE = [ NAME = "c1.tiny", TEMPLATE = "c1.tiny.mako" ]\n')
        add_template(folder, "c1.tiny.mako",
                     "NAME = ${q(vm_name)}\nCPU = 0.05\nMEMORY = 32\n"
                     "DISK = [ IMAGE_ID = ${image_id} ]\nOWNER_NAME_SEEN = ${q(user)}\n")
        types = VMTypes.load(cfg, configmod.econe_templates_dirs(cfg.path))
        self.assertEqual(types.names(), ["c1.tiny", "m1.small"])
        t = Template.parse(types.render("c1.tiny", image_id=7, user="bob"))
        self.assertEqual((t.get_str("CPU"), t.get_str("MEMORY")), ("0.05", "32"))
        self.assertEqual(t.get_str("OWNER_NAME_SEEN"), "bob")
        # the shipped m1.small is found behind the admin's folder
        self.assertEqual(Template.parse(types.render("m1.small", image_id=7, user="bob"))
                         .get_str("MEMORY"), "256")

    def test_admin_file_shadows_shipped(self):
        cfg, folder = econe(self, 'VM_TYPE = [ NAME = "m1.small", TEMPLATE = "m1.small.mako" ]\n')
        add_template(folder, "m1.small.mako", "CPU = 4\nMEMORY = 4096\n")
        types = VMTypes.load(cfg, configmod.econe_templates_dirs(cfg.path))
        self.assertEqual(Template.parse(types.render("m1.small", image_id=1, user="u"))
                         .get_str("MEMORY"), "4096")

    def test_syntax_error_names_file_and_line(self):
        cfg, folder = econe(self, 'VM_TYPE = [ NAME = "bad", TEMPLATE = "bad.mako" ]\n')
        path = add_template(folder, "bad.mako", "CPU = 1\nMEMORY = 64\n% if x:\nNAME = a\n")
        with self.assertRaises(VMTypeError) as cm:
            VMTypes.load(cfg, configmod.econe_templates_dirs(cfg.path))
        e = cm.exception
        self.assertEqual((e.type_name, e.path), ("bad", path))
        self.assertIsInstance(e.line, int)
        self.assertIn(f"{path}, line {e.line}", str(e))
        self.assertNotIn("Traceback", str(e))

    def test_expression_syntax_error_line(self):
        cfg, folder = econe(self, 'VM_TYPE = [ NAME = "bad", TEMPLATE = "bad.mako" ]\n')
        path = add_template(folder, "bad.mako", "CPU = 1\nMEMORY = 64\nNAME = ${q(}\n")
        with self.assertRaises(VMTypeError) as cm:
            VMTypes.load(cfg, configmod.econe_templates_dirs(cfg.path))
        self.assertEqual((cm.exception.path, cm.exception.line), (path, 3))

    def test_undefined_name_names_file_and_line(self):
        """Caught at start-up by the trial render."""
        cfg, folder = econe(self, 'VM_TYPE = [ NAME = "typo", TEMPLATE = "typo.mako" ]\n')
        path = add_template(folder, "typo.mako",
                            "CPU = 1\nMEMORY = 64\n\nDISK = [ IMAGE_ID = ${imageid} ]\n")
        with self.assertRaises(VMTypeError) as cm:
            VMTypes.load(cfg, configmod.econe_templates_dirs(cfg.path))
        e = cm.exception
        self.assertEqual((e.type_name, e.path, e.line), ("typo", path, 4))
        self.assertIn("imageid", str(e))
        self.assertIn(f"{path}, line 4", str(e))

    def test_render_failure_per_request(self):
        """A failure only some values trigger is reported when rendering."""
        cfg, folder = econe(self, 'VM_TYPE = [ NAME = "div", TEMPLATE = "div.mako" ]\n')
        path = add_template(folder, "div.mako",
                            "CPU = 1\nMEMORY = ${1024 // (image_id - 5)}\n")
        types = VMTypes.load(cfg, configmod.econe_templates_dirs(cfg.path))
        with self.assertRaises(VMTypeError) as cm:
            types.render("div", image_id=5, user="u")
        self.assertEqual((cm.exception.path, cm.exception.line), (path, 2))
        self.assertIn("ZeroDivisionError", str(cm.exception))

    def test_invalid_output_names_type(self):
        cfg, folder = econe(self, 'VM_TYPE = [ NAME = "junk", TEMPLATE = "junk.mako" ]\n')
        add_template(folder, "junk.mako", "CPU = [ 1\n")
        with self.assertRaisesRegex(VMTypeError, "VM type junk: .*not a valid template"):
            VMTypes.load(cfg, configmod.econe_templates_dirs(cfg.path))

    def test_missing_file(self):
        cfg, folder = econe(self, 'VM_TYPE = [ NAME = "gone", TEMPLATE = "gone.mako" ]\n')
        with self.assertRaisesRegex(VMTypeError, "VM type gone: gone.mako: template file not found"):
            VMTypes.load(cfg, configmod.econe_templates_dirs(cfg.path))

    def test_vm_type_without_template(self):
        cfg, folder = econe(self, 'VM_TYPE = [ NAME = "half" ]\n')
        with self.assertRaisesRegex(VMTypeError, "needs NAME and TEMPLATE"):
            VMTypes.load(cfg, configmod.econe_templates_dirs(cfg.path))


class EconeConf(TestCase):
    """econe.conf loading, overrides and where it is found."""

    def test_set_override(self):
        overrides = ["PORT=2700", "econe.PORT=4600", "ECONE.SERVER=cloud.example"]
        cfg = configmod.load_econe(SHIPPED_ECONE, overrides)
        self.assertEqual(cfg.get_int("PORT"), 4600)
        self.assertEqual(cfg.get("SERVER"), "cloud.example")
        oned = configmod.load(paths.shipped("conf", "oned.conf"), overrides)
        self.assertEqual(oned.get_int("PORT"), 2700)

    def test_default_port(self):
        cfg, _ = econe(self, "SERVER = a\n")
        self.assertEqual(cfg.get_int("PORT"), 4567)

    def test_bad_override(self):
        with self.assertRaises(configmod.ConfigError):
            configmod.load_econe(SHIPPED_ECONE, ["econe.PORT"])

    def test_paths(self):
        oned = configmod.load(paths.shipped("conf", "oned.conf"))
        loc = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(loc, "etc"))
        self.assertEqual(configmod.econe_path(oned, loc), SHIPPED_ECONE)
        local = os.path.join(loc, "etc", "econe.conf")
        open(local, "w").close()
        self.assertEqual(configmod.econe_path(oned, loc), local)
        named = configmod.load(paths.shipped("conf", "oned.conf"), ['ECONE_CONF="my/e.conf"'])
        self.assertEqual(configmod.econe_path(named, loc),
                         os.path.join(os.path.dirname(named.path), "my", "e.conf"))
        self.assertEqual(configmod.econe_templates_dirs(local), [SHIPPED_TEMPLATES])


class AllocateRendered(TestCase):
    """A rendered m1.small is a VM template the daemon accepts."""

    async def test_allocate(self):
        src = write(self, b"\0" * 4096)
        neb = await start_nebula(self)
        iid, _ = await register(neb, f'NAME = "tiny"\nPATH = {src}\n')
        types = VMTypes.load(configmod.load_econe(SHIPPED_ECONE), SHIPPED_TEMPLATES)
        text = types.render("m1.small", image_id=iid, user="oneadmin", user_id=0,
                            user_data=base64.b64encode(b"hello").decode(), key_name="k",
                            public_key=PUBLIC_KEY)
        vid = await ok(neb, "one.vm.allocate", text, session=ADMIN)
        vm = xml(await ok(neb, "one.vm.info", vid))
        self.assertEqual(vm.findtext("TEMPLATE/CPU"), "0.2")
        self.assertEqual(vm.findtext("TEMPLATE/MEMORY"), "256")
        self.assertEqual(vm.findtext("TEMPLATE/DISK/IMAGE_ID"), str(iid))
        self.assertEqual(vm.findtext("TEMPLATE/CONTEXT/EC2_USER_DATA"), "aGVsbG8=")
        self.assertEqual(vm.findtext("TEMPLATE/CONTEXT/SSH_PUBLIC_KEY"), PUBLIC_KEY)
        self.assertEqual(vm.findtext("TEMPLATE/INSTANCE_TYPE"), "m1.small")

    async def test_allocate_with_network(self):
        """With econe.conf NETWORK the instance gets a lease on that network."""
        src = write(self, b"\0" * 4096)
        neb = await start_nebula(self)
        iid, _ = await register(neb, f'NAME = "tiny"\nPATH = {src}\n')
        vnid = await ok(neb, "one.vn.allocate", RANGED_NET)
        cfg = configmod.load_econe(SHIPPED_ECONE, ['econe.NETWORK="public"'])
        text = VMTypes.load(cfg, SHIPPED_TEMPLATES).render("m1.small", image_id=iid,
                                                           user="oneadmin")
        vid = await ok(neb, "one.vm.allocate", text)
        vm = xml(await ok(neb, "one.vm.info", vid))
        self.assertEqual(vm.findtext("TEMPLATE/NIC/NETWORK_ID"), str(vnid))
        self.assertRegex(vm.findtext("TEMPLATE/NIC/IP") or "", r"^192\.168\.0\.\d+$")
        self.assertIsNone(vm.find("TEMPLATE/CONTEXT/SSH_PUBLIC_KEY"))
