"""Acceptance: ``kill -9`` of the daemon during a VM churn, on every database backend.

Issue 9, section 1: after a crash and a restart no acknowledged change is lost, the
daemon answers again, and start-up reconciliation settles every VM that was in a
driver-driven state (PROLOG, BOOT, SHUTDOWN, SAVE_*, EPILOG, CLEANUP, ...): none is
left there. OpenNebula 3.4 left such VMs for ``onevm recover`` by hand; Nova's
``init_host`` reconciles at start.

A real ``twistd -n nebula`` with the dummy drivers (every operation takes 1 s, so
VMs are caught mid-operation) is driven by three XML-RPC client processes
(``tests/acceptance/crashchurn.py``: allocate, deploy through the scheduler,
shutdown / cancel / delete / stop-resume / suspend-resume / live and cold
migration) and killed with SIGKILL twice. After each restart, with the clients
paused: every acknowledged change is found (the VM exists, in the state its last
acknowledged action leads to or a later one), and the pool is polled (generous
deadline) until no VM is in a transient state. SQLite always; PostgreSQL and
MariaDB when their servers answer (skipped with the reason otherwise).

The full-size run (1,000 VMs, three kills, figures) is ``bench/bench_crash.py``.
"""

import os

from twisted.trial import unittest

from nebtwist import dbtesting
from tests.acceptance import crashchurn
from tests.acceptance.test_seed000 import FAST, NebulaDaemon

CrashDaemon = crashchurn.make_daemon_class(NebulaDaemon)

#: VMs allocated in all, client processes, VMs each walks at once.
VMS, WORKERS, IN_FLIGHT = 150, 3, 8
#: Allocations acknowledged before each kill.
KILL_AT = (50, 110)
#: Seconds the pool may take to settle after a restart: the reconciliation's
#: driver operations take 1 s each; a loaded machine may be many times slower.
SETTLE_DEADLINE = 180
#: Seconds the whole churn may take.
CHURN_DEADLINE = 900

SETTINGS = FAST + [
    "MAX_VM=1000", "MAX_DISPATCH=100", "MAX_HOST=50",
]


class CrashRecoveryMixin:
    """The churn with two kills; subclasses name the backend."""

    backend = "sqlite"
    timeout = CHURN_DEADLINE + 4 * SETTLE_DEADLINE

    def setUp(self):
        db = None
        if self.backend != "sqlite":
            db = dbtesting.fresh_database(self, self.backend)
        self.one = CrashDaemon(self.mktemp(), SETTINGS, db=db)
        self.addCleanup(self.one.stop)
        self.one.start(timeout=60)
        self.folder = self.one.path("churn")
        os.makedirs(self.folder)
        self.churn = crashchurn.CrashChurn(self.one, self.folder, vms=VMS, workers=WORKERS,
                                           in_flight=IN_FLIGHT, delay=1.0, hosts=3,
                                           log=lambda line: None)
        self.addCleanup(self.churn.stop)

    def test_kill9_during_churn(self):
        self.churn.add_hosts()
        self.churn.start()
        for at in KILL_AT:
            self.churn.wait_allocated(at, timeout=CHURN_DEADLINE)
            self.churn.wait_busy(WORKERS * IN_FLIGHT // 3)
            result = self.churn.kill_and_restart(settle=SETTLE_DEADLINE, until_settled=True)
            n = len(self.churn.kills)
            # the daemon answers again (the time is bench_crash's figure, not asserted)
            self.assertIsNotNone(result["serve_s"])
            self.assertEqual(result["lost"], [], f"kill #{n}: acknowledged changes lost:\n"
                             + crashchurn.describe_lost(result["lost"]))
            if result["transient"]:
                self.fail(f"kill #{n}: {len(result['transient'])} VMs still in a transient "
                          f"state {SETTLE_DEADLINE} s after the restart "
                          f"({result['transient_at_kill']} were at the kill): "
                          f"{crashchurn.describe_states(result['transient'])}\n"
                          + self.one.diagnostics(lines=15))
            self.assertGreater(result["acked"], at)
            self.churn.resume()
        self.assertTrue(self.churn.finished(CHURN_DEADLINE), "the churn did not finish")
        lost, transient, states = self.churn.final_check(SETTLE_DEADLINE)
        self.assertEqual(lost, [], crashchurn.describe_lost(lost))
        self.assertFalse(transient, "transient after the churn: "
                         + crashchurn.describe_states(transient))
        journal = crashchurn.Journal(self.churn.journals)
        self.assertEqual(len(journal.acked) + journal.allocations_unanswered
                         + self._refused_allocations(), VMS)
        # at least one kill caught VMs mid-operation (else the test tests nothing)
        self.assertTrue(any(k["transient_at_kill"] for k in self.churn.kills),
                        self.churn.kills)

    def _refused_allocations(self):
        n = 0
        for path in self.churn.journals:
            with open(path, encoding="utf-8") as f:
                n += sum(1 for line in f if line.startswith("REFUSED - allocate"))
        return n


class SQLiteCrashRecovery(CrashRecoveryMixin, unittest.TestCase):
    backend = "sqlite"


class PostgreSQLCrashRecovery(CrashRecoveryMixin, unittest.TestCase):
    backend = "postgresql"


class MariaDBCrashRecovery(CrashRecoveryMixin, unittest.TestCase):
    backend = "mysql"
