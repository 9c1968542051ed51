"""Unknown keys in oned.conf and econe.conf are warned about at start-up,
naming the file and line (issue 9 section 4: they were ignored silently)."""

import os
import re

from twisted.trial import unittest

from nebtwist.core import config as configmod
from nebtwist.paths import shipped


class UnknownKeyTests(unittest.TestCase):
    def write(self, text):
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_oned_conf_typo_names_file_and_line(self):
        path = self.write('PORT = 2633\n# a comment\nMANAGER_TIMR = 15\n'
                          'IM_MAD = [ name = "x",\n  executable = "dummy" ]\nVNC_BASE_PORT = 5900\n')
        config = configmod.load(path)
        self.assertEqual(config.unknown_keys(), [(f"{path} line 3", "MANAGER_TIMR")])

    def test_set_override(self):
        config = configmod.load(self.write("PORT = 1\n"), ["SCHED_INTERVALL=3"])
        self.assertEqual(config.unknown_keys(), [("--set", "SCHED_INTERVALL")])

    def test_econe_conf_typo(self):
        path = self.write('SERVER = "127.0.0.1"\nPROT = 4567\n')
        econe = configmod.load_econe(path)
        self.assertEqual(econe.unknown_keys(), [(f"{path} line 2", "PROT")])

    def test_opennebula_keys_accepted(self):
        """Keys of OpenNebula's oned.conf that nebtwist ignores draw no warning."""
        path = self.write("MANAGER_TIMER = 15\nVNC_BASE_PORT = 5900\nMAX_CONN = 15\n"
                          "MAX_CONN_BACKLOG = 15\nDATASTORE_MAD = [ executable = \"x\" ]\n"
                          "VM_RESTRICTED_ATTR = \"DISK/SOURCE\"\n")
        self.assertEqual(configmod.load(path).unknown_keys(), [])

    def test_shipped_files_have_no_unknown_key(self):
        """Every key of the shipped oned.conf and econe.conf is known, the
        commented-out examples included (uncommenting one must not warn)."""
        for name, loader in (("oned.conf", configmod.load), ("econe.conf", configmod.load_econe)):
            with open(shipped("conf", name)) as f:
                text = f.read()
            uncommented = "\n".join(
                line[1:] if configmod._KEY_LINE.match(line) and line.startswith("#") else line
                for line in text.splitlines())
            for body in (text, uncommented):
                try:
                    conf = loader(self.write(body))
                except configmod.ConfigError:
                    continue  # an uncommented example that needs its neighbours
                self.assertEqual(conf.unknown_keys(), [], name)
            # The settings (commented or not) are in the built-in lists too.
            keys = {m.group(1) for m in re.finditer(r"^#?([A-Z][A-Z0-9_]*)[ \t]*=", text, re.M)}
            builtin = configmod.ONED_KEYS if name == "oned.conf" else configmod.ECONE_KEYS
            self.assertEqual(keys - builtin, set(), f"{name}: add these keys to config.py")
