"""The VM directories' file writer: ordered writes on a worker thread, or at
once when there is no reactor thread."""

import os

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from nebtwist.core.files import FileWriter


class FileWriterTests(unittest.TestCase):
    """Both modes write the same files in the order asked."""

    def _writers(self):
        threaded = FileWriter(reactor)
        self.addCleanup(threaded.stop)
        return {"threaded": threaded, "synchronous": FileWriter(Clock())}

    async def test_write_then_append_in_order(self):
        for mode, writer in self._writers().items():
            base = os.path.join(os.path.abspath(self.mktemp()), "7")
            log = os.path.join(base, "vm.log")
            for i in range(50):
                writer.append(log, f"line {i}\n")
            await writer.write([(os.path.join(base, "vm.xml"), "<VM/>"),
                                (os.path.join(base, "transfer.0.prolog"), "DELETE x\n")])
            # the write fired after every earlier append had run
            with open(log) as f:
                self.assertEqual(f.read().splitlines(), [f"line {i}" for i in range(50)], mode)
            with open(os.path.join(base, "vm.xml")) as f:
                self.assertEqual(f.read(), "<VM/>", mode)
            self.assertFalse(os.path.exists(os.path.join(base, "vm.xml.tmp")), mode)
            self.assertEqual(writer.reactor is not None, mode == "threaded")

    async def test_errors(self):
        for mode, writer in self._writers().items():
            blocker = os.path.abspath(self.mktemp())
            with open(blocker, "w") as f:
                f.write("a file where a folder should be")
            with self.assertRaises(OSError, msg=mode):
                await writer.write([(os.path.join(blocker, "x", "vm.xml"), "<VM/>")])
            writer.append(os.path.join(blocker, "y", "vm.log"), "lost\n")  # logged, not raised
            ok = os.path.join(os.path.abspath(self.mktemp()), "f")
            await writer.write([(ok, "still working")])
            with open(ok) as f:
                self.assertEqual(f.read(), "still working", mode)
