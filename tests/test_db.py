"""The database backends: the same persistence tests on SQLite, PostgreSQL and MySQL.

:class:`PersistenceMixin` runs against each backend, every test in a fresh
database of its own (a temporary SQLite file, or a uniquely named server
database dropped in the cleanup). The PostgreSQL and MySQL/MariaDB tests use
the servers on 127.0.0.1 (see :mod:`nebtwist.dbtesting`) and are skipped,
with the reason, when a server does not answer.
"""

import io
import os
import shutil
import sqlite3
import subprocess
import sys

from twisted.internet import reactor
from twisted.trial import unittest

from nebtwist import dbtesting
from nebtwist.cli import onedb
from nebtwist.core import db as dbm
from nebtwist.core.nebula import Nebula
from nebtwist.core.objects import Host
from nebtwist.core.pool import Pool

from tests import test_lcm

VM_TEMPLATE = """NAME = vm
CPU = 0.5
MEMORY = 128
DISK = [ SOURCE = "/img/a.img", TARGET = hda ]
NIC = [ NETWORK = "net" ]
"""

NET_TEMPLATE = ('NAME = net\nTYPE = RANGED\nBRIDGE = br0\n'
                'NETWORK_ADDRESS = 10.0.0.0\nNETWORK_SIZE = C\n')

#: Schema 1 as nebtwist 0.1 created it on SQLite, frozen here: the
#: "hand-made old database" that ``onedb upgrade`` must bring up to date.
SCHEMA_1 = [
    "CREATE TABLE db_versioning (oid INTEGER, version VARCHAR(256), timestamp INTEGER, "
    "comment VARCHAR(256), PRIMARY KEY (oid))",
    "CREATE TABLE pool_control (tablename VARCHAR(32), last_oid BIGINT, "
    "PRIMARY KEY (tablename))",
    "CREATE TABLE user_pool (oid INTEGER, name VARCHAR(128), body {BODY}, uid INTEGER, "
    "gid INTEGER, owner_u INTEGER, group_u INTEGER, other_u INTEGER, PRIMARY KEY (oid), "
    "UNIQUE (name))",
    "CREATE TABLE group_pool (oid INTEGER, name VARCHAR(128), body {BODY}, uid INTEGER, "
    "gid INTEGER, owner_u INTEGER, group_u INTEGER, other_u INTEGER, PRIMARY KEY (oid), "
    "UNIQUE (name))",
    "CREATE TABLE host_pool (oid INTEGER, name VARCHAR(128), body {BODY}, state INTEGER, "
    "last_mon_time INTEGER, uid INTEGER, gid INTEGER, owner_u INTEGER, group_u INTEGER, "
    "other_u INTEGER, PRIMARY KEY (oid), UNIQUE (name))",
    "CREATE TABLE network_pool (oid INTEGER, name VARCHAR(128), body {BODY}, uid INTEGER, "
    "gid INTEGER, owner_u INTEGER, group_u INTEGER, other_u INTEGER, PRIMARY KEY (oid), "
    "UNIQUE (name, uid))",
    "CREATE TABLE leases (oid INTEGER, ip BIGINT, body {BODY}, PRIMARY KEY (oid, ip))",
    "CREATE TABLE vm_pool (oid INTEGER, name VARCHAR(128), body {BODY}, uid INTEGER, "
    "gid INTEGER, last_poll INTEGER, state INTEGER, lcm_state INTEGER, owner_u INTEGER, "
    "group_u INTEGER, other_u INTEGER, PRIMARY KEY (oid))",
    "CREATE TABLE history (vid INTEGER, seq INTEGER, body {BODY}, PRIMARY KEY (vid, seq))",
    "INSERT INTO db_versioning VALUES (0, '3.4.1', 1700000000, 'nebtwist schema 1')",
    "INSERT INTO pool_control VALUES ('host_pool', 4)",
]


def pools(nebula):
    """Every pool of ``nebula`` (present and future ones) by attribute name."""
    return {name: value for name, value in vars(nebula).items() if isinstance(value, Pool)}


def snapshot(nebula):
    """``{pool: ({oid: body}, last_oid)}``, plus every VM's history bodies."""
    shot = {name: ({o.oid: o.body() for o in pool}, pool.last_oid)
            for name, pool in pools(nebula).items()}
    shot["history"] = {vm.oid: [h.body() for h in vm.history] for vm in nebula.vmpool}
    return shot


class Core(test_lcm.Core):
    """tests.test_lcm's core (fake drivers, a Clock) on a given database."""

    @classmethod
    async def make(cls, testcase, database, var_dir):
        self = await super().make(testcase, path=var_dir, database=database)
        self.var_dir = var_dir
        self.config = self.nebula.config
        return self



class PersistenceMixin:
    """The persistence tests, run against :attr:`backend`."""

    backend = None

    def setUp(self):
        if self.backend == "sqlite":
            self.dir = os.path.abspath(self.mktemp())
            os.makedirs(self.dir)
            self.settings = {"backend": "sqlite", "path": os.path.join(self.dir, "one.db")}
        else:
            self.settings = dbtesting.fresh_database(self, self.backend)
            self.dir = os.path.abspath(self.mktemp())
            os.makedirs(self.dir)

    def database(self):
        """A new (unopened) Database on this test's database."""
        return dbm.Database(reactor, **self.settings)

    async def opened(self):
        """A new Database, opened (bootstrapping the schema); closed in cleanup."""
        database = self.database()
        await database.open()
        self.addCleanup(database.close)
        return database

    async def raw(self, database, sql, params=()):
        """Run ``sql`` in its own transaction; returns the rows of a query."""
        def work(cursor):
            cursor.execute(database._sql(sql), tuple(params))
            try:
                return [tuple(r) for r in cursor.fetchall()]
            except Exception:  # noqa: BLE001 - not a query
                return []
        return await database._interact(work, "test")

    async def hand_made_schema_1(self):
        """Create :data:`SCHEMA_1` by hand (with one host row) in this test's database."""
        if self.backend != "sqlite":
            dbtesting.create_database(self.backend, self.settings["db_name"])
        database = self.database()
        await database.connect(create=False)
        body = dbm._TYPES[self.backend]["BODY"]
        host = Host(3, "oldhost", "im_fake", "vmm_fake", "tm_fake")
        for sql in SCHEMA_1 + [
                "INSERT INTO host_pool (oid, name, body, state, last_mon_time, uid, gid, "
                "owner_u, group_u, other_u) VALUES (3, 'oldhost', ?, 0, 0, 0, 0, 1, 0, 0)"]:
            await self.raw(database, sql.format(BODY=body),
                           (host.body(),) if "?" in sql else ())
        await database.close()
        return host

    # -- the tests ---------------------------------------------------------------------

    async def test_bootstrap_once(self):
        """The first open creates the schema and records the version; the next does not."""
        database = self.database()
        self.assertTrue(await database.open())
        info = await database.version_info()
        self.assertEqual((info["stored"], info["code"], info["empty"]),
                         (dbm.SCHEMA_VERSION, dbm.SCHEMA_VERSION, False))
        self.assertEqual([r[3] for r in info["history"]],
                         [f"nebtwist schema {dbm.SCHEMA_VERSION}"])
        await database.close()
        again = self.database()
        self.assertFalse(await again.open())
        self.addCleanup(again.close)
        rows = await self.raw(again, "SELECT comment FROM db_versioning")
        self.assertEqual(len(rows), 1)
        tables = await again._interact(again._existing_tables, "test")
        self.assertLessEqual({t[0] for t in dbm.TABLES}, tables)

    async def test_insert_update_remove(self):
        """Pool writes land in the database and come back on reload."""
        core = await Core.make(self, await self.opened(), self.dir)
        hid = await core.requests.host_allocate(core.admin, "h0", "im_fake", "vmm_fake",
                                                "tm_fake")
        host = core.nebula.hostpool.get(hid)
        rows = await core.nebula.db.select("SELECT oid, name, state FROM host_pool")
        self.assertEqual(rows, [(hid, "h0", host.state)])
        host.share.max_cpu = 800
        host.template.set("NOTE", "changed")
        await core.nebula.hostpool.update(host)
        body = (await core.nebula.db.select("SELECT body FROM host_pool WHERE oid = ?",
                                            (hid,)))[0][0]
        self.assertIn("changed", body)
        self.assertIn("<MAX_CPU>800</MAX_CPU>", body)
        second = await core.requests.host_allocate(core.admin, "h1", "im_fake", "vmm_fake",
                                                   "tm_fake")
        await core.nebula.hostpool.remove(core.nebula.hostpool.get(second))
        self.assertEqual(await core.nebula.db.select("SELECT oid FROM host_pool"), [(hid,)])

        reloaded = Nebula(core.config, core.clock, self.dir, await self.opened())
        await reloaded.open()
        self.addCleanup(reloaded.close)
        self.assertEqual(list(reloaded.hostpool.objects), [hid])
        self.assertEqual(reloaded.hostpool.get(hid).body(), host.body())
        # The removed host's oid is not given out again (pool_control).
        self.assertEqual(reloaded.hostpool.reserve_oid(), second + 1)

    async def test_upsert_unchanged_row(self):
        """Writing a row twice with the same values keeps one row (MySQL: FOUND_ROWS)."""
        database = await self.opened()
        op = dbm.upsert("pool_control", {"tablename": "x_pool"}, {"last_oid": 7})
        await database.run([op])
        await database.run([op])
        await database.run([op, op])
        self.assertEqual(
            await database.select("SELECT tablename, last_oid FROM pool_control "
                                  "WHERE tablename = ?", ("x_pool",)), [("x_pool", 7)])
        await database.run([dbm.upsert("pool_control", {"tablename": "x_pool"},
                                       {"last_oid": 8})])
        self.assertEqual(await database.select(
            "SELECT last_oid FROM pool_control WHERE tablename = 'x_pool'"), [(8,)])

    async def test_pool_control(self):
        """Oids of deleted objects are not reused after a reload; counters are per table."""
        core = await Core.make(self, await self.opened(), self.dir)
        ids = [await core.requests.host_allocate(core.admin, f"h{i}", "im_fake", "vmm_fake",
                                                 "tm_fake") for i in range(3)]
        for hid in ids:
            await core.nebula.hostpool.remove(core.nebula.hostpool.get(hid))
        rows = dict(await core.nebula.db.select("SELECT tablename, last_oid FROM pool_control"))
        self.assertEqual(rows["host_pool"], ids[-1])
        self.assertEqual(rows["user_pool"], 0)
        reloaded = Nebula(core.config, core.clock, self.dir, await self.opened())
        await reloaded.open()
        self.addCleanup(reloaded.close)
        self.assertEqual(len(reloaded.hostpool), 0)
        self.assertEqual(reloaded.hostpool.last_oid, ids[-1])

    async def test_history_and_leases_reload(self):
        """A running VM, its history and its lease; every pool reloads identically."""
        core = await Core.make(self, await self.opened(), self.dir)
        await core.requests.vn_allocate(core.admin, NET_TEMPLATE)
        hid = await core.requests.host_allocate(core.admin, "h0", "im_fake", "vmm_fake",
                                                "tm_fake")
        host = core.nebula.hostpool.get(hid)
        host.share.max_cpu = host.share.free_cpu = 800
        host.share.max_mem = host.share.free_mem = 8 * 1024 * 1024
        vm = await core.dm.allocate(core.admin, VM_TEMPLATE)
        await core.dm.deploy(vm, host)
        core.tmd.last("transfer").succeed()
        await core.settle()
        core.vmmd.last("deploy").succeed("dep-1")
        await core.settle()
        self.assertEqual(vm.deploy_id, "dep-1")
        self.assertEqual(len(vm.history), 1)
        leases = await core.nebula.db.select("SELECT oid, ip FROM leases")
        self.assertEqual(leases, [(0, 0x0A000001)])
        history = await core.nebula.db.select("SELECT vid, seq FROM history")
        self.assertEqual(history, [(vm.oid, 0)])

        before = snapshot(core.nebula)
        reloaded = Nebula(core.config, core.clock, self.dir, await self.opened())
        await reloaded.open()
        self.addCleanup(reloaded.close)
        self.assertEqual(snapshot(reloaded), before)
        self.assertTrue(reloaded.vnpool.get(0).leases[0x0A000001].used)
        self.assertEqual(reloaded.vmpool.get(vm.oid).info(), vm.info())

    async def test_rollback_on_error(self):
        """A failing statement rolls the whole transaction back; the database goes on."""
        database = await self.opened()
        good = dbm.upsert("pool_control", {"tablename": "a_pool"}, {"last_oid": 1})
        clash = dbm.Op("INSERT INTO pool_control (tablename, last_oid) VALUES (?, ?)",
                       ("a_pool", 2))
        with self.assertRaises(dbm.DatabaseError) as caught:
            await database.run([good, clash])
        self.assertIsNotNone(caught.exception.__cause__)
        self.assertIn(f"cannot write to the {self.backend}", str(caught.exception))
        self.assertEqual(await database.select(
            "SELECT last_oid FROM pool_control WHERE tablename = 'a_pool'"), [])
        await database.run([good])
        self.assertEqual(await database.select(
            "SELECT last_oid FROM pool_control WHERE tablename = 'a_pool'"), [(1,)])
        with self.assertRaises(dbm.DatabaseError):
            await database.select("SELECT nothing FROM no_such_table")
        self.assertEqual(len(await database.select("SELECT oid FROM db_versioning")), 1)

    async def test_failed_insert_leaves_pool_unchanged(self):
        """A pool insert whose transaction fails adds nothing, in memory or on disk."""
        core = await Core.make(self, await self.opened(), self.dir)
        pool = core.nebula.hostpool
        oid = pool.reserve_oid()
        host = Host(oid, "h0", "im_fake", "vmm_fake", "tm_fake")
        bad = dbm.Op("INSERT INTO no_such_table VALUES (1)")
        with self.assertRaises(dbm.DatabaseError):
            await pool.insert(host, [bad])
        self.assertEqual(len(pool), 0)
        self.assertEqual(await core.nebula.db.select("SELECT oid FROM host_pool"), [])

    async def test_types(self):
        """Large bodies, non-ASCII names, 32-bit unsigned IPs and big counters round-trip."""
        database = await self.opened()
        big = "<VM>" + "x" * (1024 * 1024) + "</VM>"         # over MySQL TEXT's 64 KB
        name = "vm-ñandú-\u4e91-\U0001F600"                   # utf8mb4 on MySQL
        await database.run([
            dbm.upsert("vm_pool", {"oid": 1}, {"name": name, "body": big, "uid": 0, "gid": 0,
                                               "last_poll": 0, "state": 0, "lcm_state": 0,
                                               "owner_u": 1, "group_u": 0, "other_u": 0}),
            dbm.upsert("leases", {"oid": 1, "ip": 0xFFFFFFFF}, {"body": "<LEASE/>"}),
            dbm.upsert("pool_control", {"tablename": "vm_pool"}, {"last_oid": 2 ** 40}),
        ])
        self.assertEqual(await database.select("SELECT name, body FROM vm_pool"), [(name, big)])
        self.assertEqual(await database.select("SELECT ip FROM leases"), [(0xFFFFFFFF,)])
        self.assertEqual(await database.select(
            "SELECT last_oid FROM pool_control WHERE tablename = 'vm_pool'"), [(2 ** 40,)])

    async def test_version_mismatch_refused(self):
        """Older, newer and foreign schema versions are refused with what to do."""
        database = await self.opened()
        comment = "UPDATE db_versioning SET comment = ? WHERE oid = 0"
        cases = [
            (f"nebtwist schema {dbm.SCHEMA_VERSION - 1}" if dbm.SCHEMA_VERSION > 1
             else "nebtwist schema 0", ["older than this nebtwist's", "'onedb upgrade'"]),
            (f"nebtwist schema {dbm.SCHEMA_VERSION + 1}", ["newer than this nebtwist's"]),
            ("Database migrated from 3.2.1 to 3.4.0", ["not a nebtwist schema"]),
        ]
        for text, expected in cases:
            await self.raw(database, comment, (text,))
            other = self.database()
            with self.assertRaises(dbm.SchemaVersionError) as caught:
                await other.open()
            for fragment in expected:
                self.assertIn(fragment, str(caught.exception))
            self.assertIsNone(other.pool, "a refused database is closed")

    async def test_tables_without_versioning_refused(self):
        """Tables but no db_versioning: not bootstrapped over."""
        database = await self.opened()
        await self.raw(database, "DROP TABLE db_versioning")
        with self.assertRaises(dbm.SchemaVersionError) as caught:
            await self.database().open()
        self.assertIn("no db_versioning table", str(caught.exception))

    async def test_onedb_upgrade_from_schema_1(self):
        """A hand-made schema-1 database: refused at start, upgraded by onedb, then used."""
        host = await self.hand_made_schema_1()
        if dbm.SCHEMA_VERSION > 1:
            with self.assertRaises(dbm.SchemaVersionError) as caught:
                await self.database().open()
            self.assertIn("has schema version 1, older", str(caught.exception))
            self.assertIn("'onedb upgrade'", str(caught.exception))

        argv = self.onedb_flags() + ["upgrade", "-b", os.path.join(self.dir, "backup")]
        if self.backend != "sqlite" and shutil.which(
                "pg_dump" if self.backend == "postgresql" else "mysqldump") is None:
            argv[-2:] = ["--no-backup"]
        status, out, err = await self.onedb(argv)
        self.assertEqual((status, err), (0, ""), out)
        if dbm.SCHEMA_VERSION > 1:
            self.assertIn(f"Database migrated from schema 1 to {dbm.SCHEMA_VERSION} by onedb.",
                          out)
        if argv[-1] != "--no-backup":
            self.assertTrue(os.path.getsize(os.path.join(self.dir, "backup")) > 0)
        if self.backend == "sqlite":
            old = sqlite3.connect(os.path.join(self.dir, "backup"))
            self.addCleanup(old.close)
            self.assertEqual(old.execute("SELECT comment FROM db_versioning").fetchall(),
                             [("nebtwist schema 1",)])

        status, out, err = await self.onedb(self.onedb_flags() + ["version"])
        self.assertEqual(status, 0, err)
        self.assertIn(f"Database: {dbm.SCHEMA_VERSION} (", out)
        self.assertIn("Status:   up to date", out)
        status, out, _ = await self.onedb(self.onedb_flags() + ["upgrade"])
        self.assertIn("nothing to do", out)

        core = await Core.make(self, await self.opened(), self.dir)
        self.assertEqual(core.nebula.hostpool.get(3).body(), host.body())
        hid = await core.requests.host_allocate(core.admin, "new", "im_fake", "vmm_fake",
                                                "tm_fake")
        self.assertEqual(hid, 5, "pool_control's last oid (4) survived the upgrade")

    async def test_migration_steps(self):
        """Each kind of migration step runs once, in order, and the version is recorded."""
        database = await self.opened()
        await database.run([dbm.upsert("pool_control", {"tablename": "z"}, {"last_oid": 1})])
        calls = []

        def step(cursor, db):
            calls.append(db.backend)
            cursor.execute("UPDATE pool_control SET last_oid = last_oid + 10 "
                           "WHERE tablename = 'z'")

        new = dbm.SCHEMA_VERSION + 1
        self.patch(dbm, "SCHEMA_VERSION", new)
        self.patch(dbm, "MIGRATIONS", dbm.MIGRATIONS + [dbm.Migration(new, "test changes", [
            dbm.add_column("pool_control", "note", "{NAME}"),
            dbm.add_column("no_such_table", "note", "INTEGER"),
            "UPDATE pool_control SET note = 'migrated'",
            {self.backend: ["UPDATE pool_control SET last_oid = last_oid + 1 "
                            "WHERE tablename = 'z'"],
             "other": "this is not SQL"},
            step,
        ])])
        with self.assertRaises(dbm.SchemaVersionError):
            await self.database().open()
        stored, target, done = await database.upgrade()
        self.assertEqual((stored, target), (new - 1, new))
        self.assertEqual([m.description for m in done if isinstance(m, dbm.Migration)],
                         ["test changes"])
        self.assertEqual(calls, [self.backend])
        self.assertEqual(await database.select(
            "SELECT last_oid, note FROM pool_control WHERE tablename = 'z'"), [(12, "migrated")])
        self.assertEqual((await database.version_info())["stored"], new)
        self.assertEqual(await database.upgrade(), (new, new, []))
        await (await self.opened()).close()  # the new version is accepted

    async def test_failed_migration_rolls_back(self):
        """A failing step leaves the old version, and (transactional DDL) no new table.

        MySQL commits every DDL statement, so there the table stays (which is
        why ``onedb upgrade`` backs up first), but the version is not bumped.
        """
        database = await self.opened()
        await self.raw(database, "DROP TABLE history")
        new = dbm.SCHEMA_VERSION + 1
        self.patch(dbm, "SCHEMA_VERSION", new)
        self.patch(dbm, "MIGRATIONS", dbm.MIGRATIONS + [dbm.Migration(new, "broken", [
            "UPDATE db_versioning SET version = 'changed'",
            "UPDATE no_such_table SET x = 1",
        ])])
        with self.assertRaises(dbm.DatabaseError):
            await database.upgrade()
        info = await database.version_info()
        self.assertEqual(info["stored"], new - 1)
        self.assertEqual([r[1] for r in info["history"]], ["3.4.1"])
        tables = await database._interact(database._existing_tables, "test")
        if self.backend == "mysql":
            self.assertIn("history", tables)
        else:
            self.assertNotIn("history", tables, "the table made by the upgrade is rolled back")

    # -- onedb helpers -----------------------------------------------------------------

    def onedb_flags(self):
        """onedb's flags naming this test's database."""
        s = self.settings
        if s["backend"] == "sqlite":
            return ["-s", s["path"]]
        flags = ["-t", s["backend"], "-S", s["server"], "-P", str(s["port"]), "-u", s["user"],
                 "-d", s["db_name"], "-p", s.get("passwd") or ""]
        return flags

    async def onedb(self, argv):
        """``(status, stdout, stderr)`` of ``onedb argv`` run in-process."""
        out, err = io.StringIO(), io.StringIO()
        env = dict(os.environ, ONE_LOCATION=self.dir)
        status = await onedb.run(reactor, argv, out, err, env)
        return status, out.getvalue(), err.getvalue()


class SQLitePersistenceTests(PersistenceMixin, unittest.TestCase):
    """The persistence tests on SQLite (the embedded default)."""

    backend = "sqlite"


class PostgreSQLPersistenceTests(PersistenceMixin, unittest.TestCase):
    """The persistence tests on the PostgreSQL server at 127.0.0.1:5432."""

    backend = "postgresql"


class MySQLPersistenceTests(PersistenceMixin, unittest.TestCase):
    """The persistence tests on the MySQL/MariaDB server at 127.0.0.1:3306."""

    backend = "mysql"


class ServerMixin:
    """What only the server backends do: create the database, survive a lost connection."""

    backend = None

    def setUp(self):
        self.settings = dbtesting.fresh_database(self, self.backend)
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    async def opened(self):
        database = dbm.Database(reactor, **self.settings)
        await database.open()
        self.addCleanup(database.close)
        return database

    async def connection_id(self, database):
        return (await database.select(dbtesting.CONNECTION_ID[self.backend]))[0][0]

    async def test_creates_missing_database(self):
        """DB_NAME is created on first start (3.4 MySqlDB; PostgreSQL via 'postgres')."""
        self.assertFalse(dbtesting.database_exists(self.backend, self.settings["db_name"]))
        await self.opened()
        self.assertTrue(dbtesting.database_exists(self.backend, self.settings["db_name"]))

    async def test_write_after_connection_killed(self):
        """The server ends our session: the next write reconnects and commits."""
        database = await self.opened()
        first = await self.connection_id(database)
        dbtesting.kill_connection(self.backend, first)
        await database.run([dbm.upsert("pool_control", {"tablename": "k"}, {"last_oid": 1})])
        self.assertEqual(await database.select(
            "SELECT last_oid FROM pool_control WHERE tablename = 'k'"), [(1,)])
        self.assertNotEqual(await self.connection_id(database), first)
        # Reads reconnect the same way.
        dbtesting.kill_connection(self.backend, await self.connection_id(database))
        self.assertEqual(len(await database.select("SELECT oid FROM db_versioning")), 1)

    async def test_daemon_keeps_serving(self):
        """A whole daemon on this backend: its connection killed, the API still writes."""
        from nebtwist.testing import start_nebula

        one = await start_nebula(self, [dbtesting.db_setting(self.settings)])
        self.assertEqual(one.nebula.db.backend, self.backend)
        ok, hid, _ = await one.call("one.host.allocate", "h0", "im_dummy", "vmm_dummy",
                                    "tm_dummy")
        self.assertTrue(ok, hid)
        dbtesting.kill_connection(self.backend, await self.connection_id(one.nebula.db))
        ok, hid2, _ = await one.call("one.host.allocate", "h1", "im_dummy", "vmm_dummy",
                                     "tm_dummy")
        self.assertTrue(ok, hid2)
        ok, body, _ = await one.call("one.hostpool.info")
        self.assertTrue(ok)
        self.assertIn("<NAME>h1</NAME>", body)
        rows = await one.nebula.db.select("SELECT name FROM host_pool ORDER BY oid")
        self.assertEqual(rows, [("h0",), ("h1",)])
        with open(os.path.join(one.var_dir, "oned.log"), encoding="utf-8") as f:
            self.assertIn("Lost the connection to the", f.read())

    async def test_backup_and_restore(self):
        """onedb backup dumps with the server's tools; restore brings the rows back."""
        tool = "pg_dump" if self.backend == "postgresql" else "mysqldump"
        if shutil.which(tool) is None:
            raise unittest.SkipTest(f"{tool} is not installed")
        database = await self.opened()
        await database.run([dbm.upsert("pool_control", {"tablename": "b"}, {"last_oid": 3})])
        flags = PersistenceMixin.onedb_flags(self)
        path = os.path.join(self.dir, "dump.sql")
        status, out, err = await PersistenceMixin.onedb(self, flags + ["backup", path])
        self.assertEqual((status, err), (0, ""))
        self.assertIn(f"backup stored in {path}", out)
        status, _, err = await PersistenceMixin.onedb(self, flags + ["backup", path])
        self.assertEqual(status, 1)
        self.assertIn("exists, backup aborted. Use -f to overwrite.", err)

        await database.run([dbm.upsert("pool_control", {"tablename": "b"}, {"last_oid": 9})])
        await database.close()
        status, _, err = await PersistenceMixin.onedb(self, flags + ["restore", path])
        self.assertEqual(status, 1)
        self.assertIn("is not empty, use -f to overwrite.", err)
        status, out, err = await PersistenceMixin.onedb(self, flags + ["restore", "-f", path])
        self.assertEqual((status, err), (0, ""))
        again = await self.opened()
        self.assertEqual(await again.select(
            "SELECT last_oid FROM pool_control WHERE tablename = 'b'"), [(3,)])

        # Into a database that does not exist yet (a new server): created first.
        other = dict(self.settings, db_name=dbtesting.unique_name())
        self.addCleanup(dbtesting.drop_database, self.backend, other["db_name"])
        saved, self.settings = self.settings, other
        try:
            flags = PersistenceMixin.onedb_flags(self)
        finally:
            self.settings = saved
        status, out, err = await PersistenceMixin.onedb(self, flags + ["restore", path])
        self.assertEqual((status, err), (0, ""))
        restored = dbm.Database(reactor, **other)
        await restored.open()
        self.addCleanup(restored.close)
        self.assertEqual(await restored.select(
            "SELECT last_oid FROM pool_control WHERE tablename = 'b'"), [(3,)])


class PostgreSQLServerTests(ServerMixin, unittest.TestCase):
    """PostgreSQL only: database creation, reconnection, dumps."""

    backend = "postgresql"


class MySQLServerTests(ServerMixin, unittest.TestCase):
    """MySQL/MariaDB only: database creation, reconnection, dumps."""

    backend = "mysql"


class DatabaseErrorsTests(unittest.TestCase):
    """Clear errors for unusable settings, whatever servers run here."""

    def test_bad_settings(self):
        with self.assertRaises(dbm.DatabaseError) as caught:
            dbm.Database(reactor, "oracle", path="x")
        self.assertIn("unknown DB backend 'oracle'", str(caught.exception))
        with self.assertRaises(dbm.DatabaseError) as caught:
            dbm.Database(reactor, "mysql", db_name="one; DROP TABLE x")
        self.assertIn("is not a usable database name", str(caught.exception))

    async def test_missing_driver(self):
        self.patch(dbm, "_DRIVERS", {"postgresql": ("no_such_module_x", "postgres")})
        database = dbm.Database(reactor, "postgresql", db_name="x")
        with self.assertRaises(dbm.DatabaseError) as caught:
            await database.open()
        self.assertIn("needs the Python module no_such_module_x "
                      "(pip install 'nebtwist[postgres]')", str(caught.exception))

    async def test_server_not_answering(self):
        """Nothing listens on the port: one clear DatabaseError, nothing left open."""
        import socket

        for backend, module in (("postgresql", "psycopg2"), ("mysql", "pymysql")):
            try:
                __import__(module)
            except ImportError:
                continue
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            database = dbm.Database(reactor, backend, server="127.0.0.1", port=port,
                                    user="u", passwd="p", db_name="nebtwist_none")
            with self.assertRaises(dbm.DatabaseError) as caught:
                await database.open()
            self.assertIn(f"cannot open the {backend} database nebtwist_none on "
                          f"127.0.0.1:{port}: OperationalError", str(caught.exception))
            self.assertIsNone(database.pool)

    def test_migrations_are_consistent(self):
        """Versions between 2 and SCHEMA_VERSION, each once; table names unique."""
        versions = [m.version for m in dbm.MIGRATIONS]
        self.assertEqual(len(versions), len(set(versions)))
        self.assertTrue(all(2 <= v <= dbm.SCHEMA_VERSION for v in versions), versions)
        names = [t[0] for t in dbm.TABLES]
        self.assertEqual(len(names), len(set(names)))

    async def test_start_refused_on_old_schema(self):
        """twistd's service: an old schema stops start-up with one line naming onedb."""
        from nebtwist import paths
        from nebtwist.core import config as configmod
        from nebtwist.tap import build_service

        var_dir = os.path.abspath(self.mktemp())
        database = dbm.Database(reactor, "sqlite", path=os.path.join(var_dir, "one.db"))
        await database.open()
        await database.run([dbm.Op("UPDATE db_versioning SET comment = 'nebtwist schema 0'")])
        await database.close()
        failures = []
        svc = build_service(configmod.load(paths.shipped("conf", "oned.conf"), ["PORT=0"]),
                            reactor,
                            var_dir, environ=dict(os.environ, ONE_AUTH="/nonexistent"),
                            on_failure=failures.append)
        svc.startService()
        with self.assertRaises(dbm.SchemaVersionError):
            await svc.ready
        await svc.stopService()
        with open(os.path.join(var_dir, "oned.log"), encoding="utf-8") as f:
            log = f.read()
        self.assertIn("[ONE][E]: nebtwist could not start: the sqlite database", log)
        self.assertIn("run 'onedb upgrade' with nebtwist stopped", log)
        self.assertNotIn("Traceback", log)


class OnedbCommandTests(unittest.TestCase):
    """``onedb`` on SQLite: which database, files, messages."""

    def setUp(self):
        self.location = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.location, "var"))
        self.path = os.path.join(self.location, "var", "one.db")

    async def onedb(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        env = dict(os.environ, ONE_LOCATION=self.location)
        status = await onedb.run(reactor, list(argv), out, err, env)
        return status, out.getvalue(), err.getvalue()

    async def make_db(self, path=None):
        database = dbm.Database(reactor, "sqlite", path=path or self.path)
        await database.open()
        await database.run([dbm.upsert("pool_control", {"tablename": "t"}, {"last_oid": 1})])
        await database.close()

    async def test_missing_database(self):
        status, out, err = await self.onedb("version")
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(err, f"onedb: {self.path}: no such database file\n")
        self.assertFalse(os.path.exists(self.path), "onedb version creates nothing")

    async def test_version_from_one_location(self):
        await self.make_db()
        status, out, err = await self.onedb("-v", "version")
        self.assertEqual((status, err), (0, ""))
        lines = out.splitlines()
        self.assertEqual(lines[0], f"Database: {dbm.SCHEMA_VERSION} (sqlite database "
                                   f"{self.path})")
        self.assertEqual(lines[1:3], [f"nebtwist: {dbm.SCHEMA_VERSION}",
                                      "Status:   up to date"])
        self.assertEqual(lines[5], f"Comment:   nebtwist schema {dbm.SCHEMA_VERSION}")

    async def test_config_file_and_set(self):
        """``-c oned.conf`` and ``--set DB=[...]`` choose the database, as for twistd."""
        other = os.path.join(self.location, "elsewhere.db")
        await self.make_db(other)
        conf = os.path.join(self.location, "my.conf")
        with open(conf, "w", encoding="utf-8") as f:
            f.write('DB = [ BACKEND = "mysql", SERVER = "127.0.0.1", PORT = 1 ]\n')
        status, out, err = await self.onedb("version", "-c", conf, "-s", other)
        self.assertEqual(status, 0, err)
        self.assertIn(other, out)
        status, out, err = await self.onedb("-c", conf, "version")
        self.assertEqual(status, 1)
        self.assertIn("cannot open the mysql database opennebula on 127.0.0.1:1", err)
        status, out, err = await self.onedb("--set", 'DB=[BACKEND="sqlite"]', "version")
        self.assertEqual(status, 1)
        self.assertIn("no such database file", err)
        status, _out, err = await self.onedb("-c", os.path.join(self.location, "none"),
                                             "version")
        self.assertEqual(status, 1)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("cannot read", err)

    async def test_backup_restore(self):
        await self.make_db()
        status, out, err = await self.onedb("backup")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(out.splitlines()[0],
                         f"Sqlite database backup stored in {self.path}.bck")
        status, _, err = await self.onedb("backup")
        self.assertEqual((status, err), (1, f"onedb: File {self.path}.bck exists, backup "
                                            f"aborted. Use -f to overwrite.\n"))
        conn = sqlite3.connect(self.path)
        conn.execute("UPDATE pool_control SET last_oid = 99 WHERE tablename = 't'")
        conn.commit()
        conn.close()
        status, _, err = await self.onedb("restore")
        self.assertEqual((status, err), (1, f"onedb: File {self.path} exists, use -f to "
                                            f"overwrite.\n"))
        status, out, err = await self.onedb("restore", "-f")
        self.assertEqual((status, err), (0, ""))
        conn = sqlite3.connect(self.path)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("SELECT last_oid FROM pool_control WHERE "
                                      "tablename = 't'").fetchall(), [(1,)])
        junk = os.path.join(self.location, "junk")
        with open(junk, "w") as f:
            f.write("not a database at all " * 100)
        status, _, err = await self.onedb("restore", "-f", junk)
        self.assertEqual(status, 1)
        self.assertIn(f"cannot restore {junk}", err)

    async def test_upgrade_empty_and_usage(self):
        open(self.path, "w").close()
        status, _, err = await self.onedb("upgrade")
        self.assertEqual(status, 1)
        self.assertIn("is empty: nebtwist creates the schema on its first start", err)
        status, _, err = await self.onedb("frobnicate")
        self.assertEqual(status, 1)
        self.assertIn("invalid choice", err)

    def test_console_script(self):
        """The installed ``onedb`` command: exit status and one line on stderr."""
        command = [sys.executable, "-m", "nebtwist.cli.onedb", "version"]
        done = subprocess.run(command, env=dict(os.environ, ONE_LOCATION=self.location),
                              capture_output=True, text=True, timeout=60, check=False)
        self.assertEqual((done.returncode, done.stdout), (1, ""))
        self.assertEqual(done.stderr, f"onedb: {self.path}: no such database file\n")

    async def test_upgrade_stops_when_backup_fails(self):
        """No backup, no upgrade: the error says so and the schema is untouched."""
        await self.make_db()
        self.patch(dbm, "SCHEMA_VERSION", dbm.SCHEMA_VERSION + 1)
        target = os.path.join(self.location, "no", "such", "dir", "backup")
        status, _, err = await self.onedb("upgrade", "-b", target)
        self.assertEqual(status, 1)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("nothing was changed (onedb upgrade --no-backup skips the backup)", err)
        status, out, _ = await self.onedb("version")
        self.assertIn(f"Database: {dbm.SCHEMA_VERSION - 1} (", out)
        self.assertIn("Status:   upgrade needed: stop nebtwist and run 'onedb upgrade'", out)
        status, out, err = await self.onedb("upgrade", "--no-backup")
        self.assertEqual((status, err), (0, ""))
        self.assertIn(f"to {dbm.SCHEMA_VERSION} by onedb.", out)
        self.assertFalse(os.path.exists(self.path + ".bck"))
