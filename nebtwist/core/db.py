"""The write-through store behind the pools.

One schema and one code path for every backend: SQLite (the embedded
default), PostgreSQL and MySQL/MariaDB, each through
``twisted.enterprise.adbapi`` so that every statement runs in a thread pool
and the reactor never blocks. Statements are written with ``?`` placeholders
and rewritten for ``format``-style drivers.

The tables follow OpenNebula 3.4's XML-body model (``db_bootstrap`` strings in
``src/*/``, reference section 9): each object is a row with its ``oid``, a few
columns used for filtering, and ``body``, the object's XML. ``pool_control``
keeps the last oid given out per table, ``db_versioning`` the schema version.

Writes are grouped into transactions (:meth:`Database.run`): an allocation
writes the object, its leases and its oid counter together, so a failure leaves
nothing half-made.
"""

import os

from twisted.enterprise import adbapi

from nebtwist import ONE_VERSION
from nebtwist.errors import InternalError
from nebtwist.log import OneLogger

log = OneLogger("ONE")

#: nebtwist's own schema version; bump with every change to :data:`TABLES`.
SCHEMA_VERSION = 1

#: (table, columns DDL, primary key, extra constraints). ``{BODY}`` and
#: ``{NAME}`` are replaced per backend.
TABLES = [
    ("db_versioning", "oid INTEGER, version VARCHAR(256), timestamp INTEGER, comment VARCHAR(256)",
     "oid", ""),
    ("pool_control", "tablename VARCHAR(32), last_oid BIGINT", "tablename", ""),
    ("user_pool", "oid INTEGER, name {NAME}, body {BODY}, uid INTEGER, gid INTEGER, "
     "owner_u INTEGER, group_u INTEGER, other_u INTEGER", "oid", "UNIQUE (name)"),
    ("group_pool", "oid INTEGER, name {NAME}, body {BODY}, uid INTEGER, gid INTEGER, "
     "owner_u INTEGER, group_u INTEGER, other_u INTEGER", "oid", "UNIQUE (name)"),
    ("host_pool", "oid INTEGER, name {NAME}, body {BODY}, state INTEGER, last_mon_time INTEGER, "
     "uid INTEGER, gid INTEGER, owner_u INTEGER, group_u INTEGER, other_u INTEGER", "oid",
     "UNIQUE (name)"),
    ("network_pool", "oid INTEGER, name {NAME}, body {BODY}, uid INTEGER, gid INTEGER, "
     "owner_u INTEGER, group_u INTEGER, other_u INTEGER", "oid", "UNIQUE (name, uid)"),
    ("leases", "oid INTEGER, ip BIGINT, body {BODY}", "oid, ip", ""),
    ("vm_pool", "oid INTEGER, name {NAME}, body {BODY}, uid INTEGER, gid INTEGER, "
     "last_poll INTEGER, state INTEGER, lcm_state INTEGER, owner_u INTEGER, group_u INTEGER, "
     "other_u INTEGER", "oid", ""),
    ("history", "vid INTEGER, seq INTEGER, body {BODY}", "vid, seq", ""),
]

_TYPES = {
    "sqlite": {"BODY": "TEXT", "NAME": "VARCHAR(128)"},
    "postgresql": {"BODY": "TEXT", "NAME": "VARCHAR(128)"},
    "mysql": {"BODY": "MEDIUMTEXT", "NAME": "VARCHAR(128)"},
}


class Op:
    """One SQL statement with its parameters, run inside a transaction."""

    __slots__ = ("sql", "params")

    def __init__(self, sql, params=()):
        self.sql = sql
        self.params = tuple(params)

    def __repr__(self):
        return f"Op({self.sql!r}, {self.params!r})"


class Upsert:
    """Insert or replace one row, the same way on every backend.

    Runs ``UPDATE ... WHERE keys``, then ``INSERT`` when no row matched (MySQL
    is connected with ``FOUND_ROWS`` so an unchanged row still counts).

    :param table: table name.
    :param keys: dict of key column -> value.
    :param values: dict of other column -> value.
    """

    __slots__ = ("table", "keys", "values")

    def __init__(self, table, keys, values):
        self.table = table
        self.keys = keys
        self.values = values


def upsert(table, keys, values):
    """Shorthand for :class:`Upsert`."""
    return Upsert(table, keys, values)


def delete(table, **keys):
    """An :class:`Op` deleting the rows of ``table`` matching ``keys``."""
    where = " AND ".join(f"{k} = ?" for k in keys)
    return Op(f"DELETE FROM {table} WHERE {where}", keys.values())


class Database:
    """A connection pool plus the nebtwist schema.

    :param reactor: the reactor whose thread pool runs the statements.
    :param backend: ``"sqlite"``, ``"postgresql"`` or ``"mysql"``
        (oned.conf ``DB = [ BACKEND = ... ]``).
    :param path: SQLite file path (``<var>/one.db``).
    :param server, port, user, passwd, db_name: server backends' settings.
    :raises InternalError: on :meth:`open` when the database cannot be reached
        or carries another schema version.
    """

    def __init__(self, reactor, backend="sqlite", path=None, server="localhost", port=0,
                 user="oneadmin", passwd="oneadmin", db_name="opennebula"):
        backend = (backend or "sqlite").lower()
        if backend not in _TYPES:
            raise InternalError(f"unknown DB backend {backend!r} (sqlite, mysql, postgresql)")
        self.reactor = reactor
        self.backend = backend
        self.path = path
        self.server = server
        self.port = int(port or 0)
        self.user = user
        self.passwd = passwd
        self.db_name = db_name
        self.pool = None
        self._format = backend != "sqlite"

    def _connect(self):
        if self.backend == "sqlite":
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)

            def opened(conn):
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")

            return adbapi.ConnectionPool(
                "sqlite3", self.path, check_same_thread=False, cp_min=1, cp_max=1,
                cp_openfun=opened, cp_reactor=self.reactor)
        if self.backend == "postgresql":
            return adbapi.ConnectionPool(
                "psycopg2", host=self.server, port=self.port or 5432, user=self.user,
                password=self.passwd or None, dbname=self.db_name, cp_min=1, cp_max=1,
                cp_reconnect=True, cp_reactor=self.reactor)
        import pymysql.constants.CLIENT as CLIENT

        return adbapi.ConnectionPool(
            "pymysql", host=self.server, port=self.port or 3306, user=self.user,
            password=self.passwd or "", database=self.db_name, client_flag=CLIENT.FOUND_ROWS,
            charset="utf8mb4", cp_min=1, cp_max=1, cp_reconnect=True, cp_reactor=self.reactor)

    def _sql(self, sql):
        return sql.replace("?", "%s") if self._format else sql

    async def open(self):
        """Connect, create missing tables and check the schema version.

        :return: True when the database was empty (first start: bootstrap).
        """
        self.pool = self._connect()
        try:
            return await self.pool.runInteraction(self._bootstrap)
        except InternalError:
            raise
        except Exception as e:
            raise InternalError(f"cannot open the {self.backend} database: {e}") from e

    def _bootstrap(self, cursor):
        types = _TYPES[self.backend]
        for table, cols, pk, extra in TABLES:
            body = cols.format(**types) + f", PRIMARY KEY ({pk})"
            if extra:
                body += ", " + extra
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {table} ({body})")
        cursor.execute(self._sql("SELECT version, comment FROM db_versioning ORDER BY oid DESC"))
        rows = cursor.fetchall()
        if not rows:
            cursor.execute(
                self._sql("INSERT INTO db_versioning VALUES (?, ?, ?, ?)"),
                (0, ONE_VERSION, int(self.reactor.seconds()), f"nebtwist schema {SCHEMA_VERSION}"))
            return True
        version, comment = rows[0]
        if comment != f"nebtwist schema {SCHEMA_VERSION}":
            raise InternalError(
                f"database schema is {comment!r}, this nebtwist needs "
                f"'nebtwist schema {SCHEMA_VERSION}'")
        return False

    async def close(self):
        """Close every connection (waits for running statements)."""
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def run(self, ops):
        """Run ``ops`` (:class:`Op`/:class:`Upsert`) in one transaction.

        :return: Deferred firing with None once committed; errbacks with the
            driver's exception (the transaction is rolled back).
        """
        return self.pool.runInteraction(self._run, list(ops))

    def _run(self, cursor, ops):
        for op in ops:
            if isinstance(op, Upsert):
                sets = ", ".join(f"{c} = ?" for c in op.values)
                where = " AND ".join(f"{k} = ?" for k in op.keys)
                cursor.execute(
                    self._sql(f"UPDATE {op.table} SET {sets} WHERE {where}"),
                    tuple(op.values.values()) + tuple(op.keys.values()))
                if cursor.rowcount == 0:
                    cols = list(op.keys) + list(op.values)
                    marks = ", ".join("?" for _ in cols)
                    cursor.execute(
                        self._sql(f"INSERT INTO {op.table} ({', '.join(cols)}) VALUES ({marks})"),
                        tuple(op.keys.values()) + tuple(op.values.values()))
            else:
                cursor.execute(self._sql(op.sql), op.params)

    def select(self, sql, params=()):
        """Run one query; Deferred firing with a list of row tuples."""
        return self.pool.runQuery(self._sql(sql), tuple(params))
