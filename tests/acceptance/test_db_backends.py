"""Acceptance: the seed's cloud on PostgreSQL and MySQL/MariaDB, across a restart.

The same real ``twistd nebula`` process and CLI steps as ``test_seed000``
(its ``RestartTest`` is reused as it is), with
``--set 'DB=[BACKEND=..., SERVER="127.0.0.1", PORT=..., USER=..., DB_NAME="<unique>"]'``:
the daemon creates the database on its first start, and everything the
tutorial made is read back from it after the restart. Each test's database
is dropped after the daemon has stopped. Skipped, with the reason, when the
server does not answer (see :mod:`nebtwist.dbtesting`).
"""

from nebtwist import dbtesting
# The module, not its classes: names imported here would be collected and run twice.
from tests.acceptance import test_seed000


class _ServerBackend:
    """Mixin: run a :class:`SeedCloudTestCase` on a fresh server database."""

    backend = None

    def setUp(self):
        # Registered first, so the drop runs after the daemon's stop (cleanups: last first).
        self.db = dbtesting.fresh_database(self, self.backend)
        self.settings = test_seed000.SEED_DRIVERS + test_seed000.FAST + [dbtesting.db_setting(self.db)]
        super().setUp()

    def test_restart(self):
        """The seed's create/run/restart flow; the rows are in the server's database."""
        super().test_restart()
        self.assertTrue(dbtesting.database_exists(self.backend, self.db["db_name"]))
        conn = dbtesting.admin_connection(self.backend, self.db["db_name"])
        try:
            cursor = conn.cursor()
            cursor.execute("SELECT name FROM host_pool ORDER BY oid")
            self.assertEqual([r[0] for r in cursor.fetchall()], ["host01", "host02"])
            cursor.execute("SELECT name FROM user_pool ORDER BY oid")
            self.assertEqual([r[0] for r in cursor.fetchall()], ["oneadmin", "helen"])
            cursor.execute("SELECT count(*) FROM history")
            self.assertGreaterEqual(cursor.fetchall()[0][0], 4)
        finally:
            conn.close()
        self.assertIn(f"Database {self.backend} opened", self.one.oned_log())


class PostgreSQLRestartTest(_ServerBackend, test_seed000.RestartTest):
    """Seed 000 create/run/restart with ``DB = [ BACKEND = "postgresql", ... ]``."""

    backend = "postgresql"


class MySQLRestartTest(_ServerBackend, test_seed000.RestartTest):
    """Seed 000 create/run/restart with ``DB = [ BACKEND = "mysql", ... ]``."""

    backend = "mysql"
