"""The write-through store behind the pools.

One schema and one code path for every backend: SQLite (the embedded
default), PostgreSQL (psycopg2) and MySQL/MariaDB (PyMySQL), each through
``twisted.enterprise.adbapi`` so that every statement runs in a thread pool
and the reactor never blocks. Statements are written with ``?`` placeholders
and rewritten for ``format``-style drivers.

The tables follow OpenNebula 3.4's XML-body model (``db_bootstrap`` strings in
``src/*/``, reference section 9): each object is a row with its ``oid``, a few
columns used for filtering, and ``body``, the object's XML. ``pool_control``
keeps the last oid given out per table, ``db_versioning`` the schema version.

Writes are grouped into transactions (:meth:`Database.run`): an allocation
writes the object, its leases and its oid counter together, so a failure leaves
nothing half-made (the transaction is rolled back).

Server backends: as OpenNebula 3.4 does for MySQL (``src/sql/MySqlDB.cc``),
the database named ``DB_NAME`` is created when it does not exist (for
PostgreSQL through the ``postgres`` maintenance database). A connection the
server dropped (restart, idle timeout, ``pg_terminate_backend``, ``KILL``) is
replaced, and a transaction that failed because of it is run once more on the
new connection: it had not been committed, since the loss happened before
``COMMIT``.

Schema versions: :data:`SCHEMA_VERSION` is this code's version, recorded in
``db_versioning`` with the comment ``nebtwist schema N``. A database with an
older version is refused at start-up until ``onedb upgrade`` has run
:meth:`Database.upgrade`: it creates every table of :data:`TABLES` that is
missing, then runs the :data:`MIGRATIONS` steps above the stored version, then
records the new version -- in one transaction where the backend has
transactional DDL (SQLite, PostgreSQL; MySQL commits each DDL statement).

To add a table: append it to :data:`TABLES` and add 1 to
:data:`SCHEMA_VERSION`; nothing else (``onedb upgrade`` creates missing tables
by itself). To change an existing table or rewrite rows: also append a
:class:`Migration` for the new version to :data:`MIGRATIONS` (e.g. with
:func:`add_column`).
"""

import os
import re

from twisted.enterprise import adbapi
from twisted.internet import defer, threads

from nebtwist import ONE_VERSION
from nebtwist.errors import InternalError, NebulaError
from nebtwist.log import OneLogger

log = OneLogger("ONE")

#: nebtwist's own schema version; bump with every change to :data:`TABLES`.
SCHEMA_VERSION = 3

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
    # 2: ACL rules (3.4 calls the first mask column "user", reserved in PostgreSQL).
    ("acl", "oid INTEGER, usr BIGINT, resource BIGINT, rights BIGINT", "oid",
     "UNIQUE (usr, resource, rights)"),
    # 3: the image repository and VM templates (nebtwist.core.images, vmtemplates).
    ("image_pool", "oid INTEGER, name {NAME}, body {BODY}, uid INTEGER, gid INTEGER, "
     "owner_u INTEGER, group_u INTEGER, other_u INTEGER", "oid", "UNIQUE (name, uid)"),
    ("template_pool", "oid INTEGER, name {NAME}, body {BODY}, uid INTEGER, gid INTEGER, "
     "owner_u INTEGER, group_u INTEGER, other_u INTEGER", "oid", ""),
]

#: Per-backend column types (``{BODY}``: an object's XML, up to 16 MB on
#: MySQL; ``{NAME}``: a name that UNIQUE keys can index) and the suffix of
#: every CREATE TABLE (InnoDB: transactions and foreign-key-safe on MySQL).
_TYPES = {
    "sqlite": {"BODY": "TEXT", "NAME": "VARCHAR(128)"},
    "postgresql": {"BODY": "TEXT", "NAME": "VARCHAR(128)"},
    "mysql": {"BODY": "MEDIUMTEXT", "NAME": "VARCHAR(128)"},
}
_TABLE_OPTIONS = {
    "sqlite": "",
    "postgresql": "",
    "mysql": " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
}

#: Python modules of the server backends and the extras that install them.
_DRIVERS = {"postgresql": ("psycopg2", "postgres"), "mysql": ("pymysql", "mysql")}

#: Default ports of the server backends (``PORT = 0`` in oned.conf).
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}

#: Names a server database may have (they are quoted into CREATE DATABASE).
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")

_COMMENT = re.compile(r"^nebtwist schema (\d+)\b")


class DatabaseError(InternalError):
    """The database cannot be reached, or a statement failed (rolled back).

    ``__cause__`` holds the driver's exception when there is one.
    """


class SchemaVersionError(DatabaseError):
    """The database's schema is not this nebtwist's (older: ``onedb upgrade``).

    :attr:`stored` is the stored version (None: not a nebtwist database).
    """

    def __init__(self, message, stored=None):
        super().__init__(message)
        self.stored = stored


class Migration:
    """How ``onedb upgrade`` brings a database from ``version - 1`` to ``version``.

    Tables missing from the database are created from :data:`TABLES` before
    any step runs, so a migration that only adds tables needs no steps.

    :param version: the schema version this migration produces (>= 2).
    :param description: one line shown by ``onedb upgrade``.
    :param steps: run in order, each one of: an SQL string (``{BODY}`` and
        ``{NAME}`` replaced per backend); a dict ``backend -> SQL string or
        list of them`` (a backend absent from the dict skips the step); a
        callable ``step(cursor, database)`` run in the database thread.
    """

    def __init__(self, version, description, steps=()):
        self.version = int(version)
        self.description = description
        self.steps = list(steps)

    def __repr__(self):
        return f"Migration({self.version}, {self.description!r})"


def add_column(table, column, ddl):
    """A :class:`Migration` step: ``ALTER TABLE table ADD COLUMN column ddl``.

    Skipped when the table is absent or already has the column (a table
    created by the same upgrade already has its newest columns).

    :param ddl: the column type, e.g. ``"INTEGER"`` or ``"{BODY}"``.
    """

    def step(cursor, database):
        if table not in database._existing_tables(cursor):
            return
        if column.lower() in database._columns(cursor, table):
            return
        cursor.execute(f"ALTER TABLE {table} ADD COLUMN {column} "
                       + ddl.format(**_TYPES[database.backend]))

    step.__name__ = f"add_column({table}.{column})"
    return step


#: The schema's history: one :class:`Migration` per version above 1 that
#: needs more than creating the new tables (see the module docstring).
MIGRATIONS = [
]


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


class _ReconnectingPool(adbapi.ConnectionPool):
    """adbapi's pool, with a dropped connection replaced quietly.

    adbapi (with ``cp_reconnect``) notices a dead connection only while
    rolling back, logs two tracebacks and fails the interaction. Here an
    interaction that failed on a dead connection is run once more on a new
    connection (it was not committed), and only a warning is logged. A
    connection lost during ``COMMIT`` fails with :class:`adbapi.ConnectionLost`
    (the outcome is unknown). Interactions get the driver's own cursor.
    """

    def __init__(self, dbapiName, *args, on_lost=None, **kw):
        super().__init__(dbapiName, *args, **kw)
        self.on_lost = on_lost

    def _usable(self, conn):
        """Roll back; True when the connection still answers afterwards."""
        try:
            conn.rollback()
            cursor = conn.cursor()
            cursor.execute(self.good_sql)
            cursor.fetchall()
            cursor.close()
            conn.commit()
            return True
        except Exception:  # noqa: BLE001 - any failure means the connection is gone
            return False

    def _forget(self, conn):
        try:
            self.disconnect(conn)
        except Exception:  # noqa: BLE001 - closing a dead connection may fail too
            self.connections.pop(self.threadID(), None)

    def _runInteraction(self, interaction, *args, **kw):
        retry = kw.pop("_retry", True) and self.reconnect
        while True:
            conn = self.connect()
            try:
                cursor = conn.cursor()
                try:
                    result = interaction(cursor, *args, **kw)
                finally:
                    try:
                        cursor.close()
                    except Exception:  # noqa: BLE001, S110 - a dead cursor
                        pass
            except BaseException as e:
                if self._usable(conn):
                    raise
                self._forget(conn)
                if not self.reconnect:
                    raise
                if self.on_lost is not None:
                    self.on_lost(e, retry)
                if retry:
                    retry = False
                    continue
                raise adbapi.ConnectionLost(f"connection lost: {e}") from e
            try:
                conn.commit()
            except BaseException as e:
                if self._usable(conn):
                    raise
                self._forget(conn)
                if self.on_lost is not None:
                    self.on_lost(e, False)
                raise adbapi.ConnectionLost(
                    f"connection lost during COMMIT (the transaction may or may not have "
                    f"been committed): {e}") from e
            return result


class Database:
    """A connection pool plus the nebtwist schema.

    :param reactor: the reactor whose thread pool runs the statements.
    :param backend: ``"sqlite"``, ``"postgresql"`` or ``"mysql"``
        (oned.conf ``DB = [ BACKEND = ... ]``).
    :param path: SQLite file path (``<var>/one.db``).
    :param server, port, user, passwd, db_name: server backends' settings
        (``port`` 0: the backend's default, 5432 or 3306).
    :raises DatabaseError: an unknown backend or an unusable ``db_name``;
        on :meth:`open` when the database cannot be reached, and
        :class:`SchemaVersionError` when it carries another schema version.
    """

    def __init__(self, reactor, backend="sqlite", path=None, server="localhost", port=0,
                 user="oneadmin", passwd="oneadmin", db_name="opennebula"):
        backend = (backend or "sqlite").lower()
        if backend not in _TYPES:
            raise DatabaseError(f"unknown DB backend {backend!r} (sqlite, mysql, postgresql)")
        if backend != "sqlite" and not _DB_NAME.match(db_name or ""):
            raise DatabaseError(f"DB_NAME {db_name!r} is not a usable database name "
                                f"(letters, digits, _ and $; at most 63)")
        if backend == "sqlite" and not path:
            raise DatabaseError("the sqlite backend needs a file path")
        self.reactor = reactor
        self.backend = backend
        self.path = path
        self.server = server or "localhost"
        self.port = int(port or 0) or DEFAULT_PORTS.get(backend, 0)
        self.user = user
        self.passwd = passwd
        self.db_name = db_name
        self.pool = None
        self._format = backend != "sqlite"

    def describe(self):
        """Where the data lives, for messages: ``sqlite database /v/one.db``, ..."""
        if self.backend == "sqlite":
            return f"sqlite database {self.path}"
        return f"{self.backend} database {self.db_name} on {self.server}:{self.port}"

    # -- connections -------------------------------------------------------------------

    def _dbapi(self):
        """The server backend's driver module; DatabaseError when not installed."""
        module, extra = _DRIVERS[self.backend]
        try:
            return __import__(module)
        except ImportError:
            raise DatabaseError(
                f"the {self.backend} backend needs the Python module {module} "
                f"(pip install 'nebtwist[{extra}]')") from None

    def _connect_args(self, db_name):
        """Keyword arguments of the driver's ``connect`` for database ``db_name``."""
        if self.backend == "postgresql":
            return dict(host=self.server, port=self.port, user=self.user,
                        password=self.passwd or None, dbname=db_name, connect_timeout=10)
        import pymysql.constants.CLIENT as CLIENT

        args = dict(host=self.server, port=self.port, user=self.user,
                    password=self.passwd or "", client_flag=CLIENT.FOUND_ROWS,
                    charset="utf8mb4", connect_timeout=10)
        if db_name is not None:
            args["database"] = db_name
        return args

    def _lost(self, error, retrying):
        log.warn("Lost the connection to the {what} ({error}); {next}",
                 what=self.describe(), error=_reason(error),
                 next="reconnecting and running the transaction again" if retrying
                 else "reconnecting")

    def _connect(self):
        if self.backend == "sqlite":
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)

            def opened(conn):
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")

            return _ReconnectingPool(
                "sqlite3", self.path, check_same_thread=False, cp_min=1, cp_max=1,
                cp_openfun=opened, cp_reactor=self.reactor)
        self._dbapi()
        return _ReconnectingPool(
            _DRIVERS[self.backend][0], cp_min=1, cp_max=1, cp_reconnect=True,
            cp_reactor=self.reactor, on_lost=self._lost, **self._connect_args(self.db_name))

    def _ensure_database(self):
        """Create the server database ``db_name`` if it does not exist (thread).

        PostgreSQL: through the ``postgres`` database; MySQL: connected to no
        database (as 3.4 ``MySqlDB`` does). When that first connection fails,
        nothing is done: connecting to ``db_name`` itself reports the error.

        :return: True if the database was created.
        :raises DatabaseError: it is missing and cannot be created.
        """
        dbapi = self._dbapi()
        try:
            admin = dbapi.connect(**self._connect_args(
                "postgres" if self.backend == "postgresql" else None))
        except Exception:  # noqa: BLE001 - reported when connecting to db_name
            return False
        try:
            if self.backend == "postgresql":
                admin.autocommit = True
            cursor = admin.cursor()
            if self.backend == "postgresql":
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.db_name,))
            else:
                cursor.execute("SELECT schema_name FROM information_schema.schemata "
                               "WHERE schema_name = %s", (self.db_name,))
            if cursor.fetchall():
                return False
            try:
                if self.backend == "postgresql":
                    cursor.execute(f'CREATE DATABASE "{self.db_name}" ENCODING \'UTF8\' '
                                   f"TEMPLATE template0")
                else:
                    cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{self.db_name}` "
                                   f"CHARACTER SET utf8mb4")
                    admin.commit()
            except Exception as e:
                raise DatabaseError(f"the {self.describe()} does not exist and cannot be "
                                    f"created: {e}") from e
            log.info("Created the {what}", what=self.describe())
            return True
        finally:
            admin.close()

    async def connect(self, create=True):
        """Open the connection pool without looking at the schema.

        :param create: create a missing server database (as start-up does).
        :raises DatabaseError: the driver is missing, or the database cannot
            be reached (or created).
        """
        if self.pool is not None:
            return
        self.pool = self._connect()
        try:
            if create and self.backend != "sqlite":
                await threads.deferToThreadPool(self.reactor, self.pool.threadpool,
                                                self._ensure_database)
            await self.pool.runInteraction(self._ping)
        except Exception as e:
            await self.close()
            if isinstance(e, NebulaError):
                raise
            raise DatabaseError(f"cannot open the {self.describe()}: {_reason(e)}") from e

    def _ping(self, cursor):
        cursor.execute("SELECT 1")
        cursor.fetchall()

    async def open(self):
        """Connect, create missing tables and check the schema version.

        :return: True when the database was empty (first start: bootstrap).
        :raises DatabaseError: cannot connect (or create the database).
        :raises SchemaVersionError: the stored schema is older (run ``onedb
            upgrade``), newer, or not nebtwist's.
        """
        await self.connect(create=True)
        try:
            return await self.pool.runInteraction(self._bootstrap)
        except Exception as e:
            await self.close()
            if isinstance(e, NebulaError):
                raise
            raise DatabaseError(f"cannot open the {self.describe()}: {_reason(e)}") from e

    async def close(self):
        """Close every connection (waits for running statements)."""
        if self.pool is not None:
            pool, self.pool = self.pool, None
            pool.close()

    # -- schema ------------------------------------------------------------------------

    def _sql(self, sql):
        return sql.replace("?", "%s") if self._format else sql

    def _existing_tables(self, cursor):
        """Names (lowercase) of the tables in the database."""
        if self.backend == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        elif self.backend == "postgresql":
            cursor.execute("SELECT table_name FROM information_schema.tables "
                           "WHERE table_schema = current_schema()")
        else:
            cursor.execute("SELECT table_name FROM information_schema.tables "
                           "WHERE table_schema = DATABASE()")
        return {row[0].lower() for row in cursor.fetchall()}

    def _columns(self, cursor, table):
        """Names (lowercase) of the columns of ``table``."""
        if self.backend == "sqlite":
            cursor.execute(f"PRAGMA table_info({table})")
            return {row[1].lower() for row in cursor.fetchall()}
        schema = "current_schema()" if self.backend == "postgresql" else "DATABASE()"
        cursor.execute(self._sql("SELECT column_name FROM information_schema.columns "
                                 f"WHERE table_schema = {schema} AND table_name = ?"), (table,))
        return {row[0].lower() for row in cursor.fetchall()}

    def _create_tables(self, cursor):
        """CREATE every table of :data:`TABLES` that is missing; returns their names."""
        existing = self._existing_tables(cursor)
        types = _TYPES[self.backend]
        created = []
        for table, cols, pk, extra in TABLES:
            if table in existing:
                continue
            body = cols.format(**types) + f", PRIMARY KEY ({pk})"
            if extra:
                body += ", " + extra
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {table} ({body})"
                           + _TABLE_OPTIONS[self.backend])
            created.append(table)
        return created

    def _begin(self, cursor):
        """Open the transaction explicitly on SQLite, so that DDL is part of it
        (Python's sqlite3 starts transactions only before DML)."""
        if self.backend == "sqlite" and not cursor.connection.in_transaction:
            cursor.execute("BEGIN")

    def _version_rows(self, cursor):
        """``db_versioning`` rows, newest first: ``(oid, version, timestamp, comment)``."""
        cursor.execute("SELECT oid, version, timestamp, comment FROM db_versioning "
                       "ORDER BY oid DESC")
        return [tuple(row) for row in cursor.fetchall()]

    def _stored_version(self, cursor):
        """The stored schema version: ``(N or None, newest db_versioning row or None)``.

        ``(None, None)``: an empty database (no db_versioning table).
        :raises SchemaVersionError: db_versioning exists but holds no row.
        """
        if "db_versioning" not in self._existing_tables(cursor):
            return None, None
        rows = self._version_rows(cursor)
        if not rows:
            raise SchemaVersionError(
                f"the {self.describe()} has an empty db_versioning table: its schema "
                f"version is unknown")
        m = _COMMENT.match(rows[0][3] or "")
        return (int(m.group(1)) if m else None), rows[0]

    def _bootstrap(self, cursor):
        self._begin(cursor)
        existing = self._existing_tables(cursor)
        if "db_versioning" not in existing:
            known = existing & {t[0] for t in TABLES}
            if known:
                raise SchemaVersionError(
                    f"the {self.describe()} holds tables ({', '.join(sorted(known))}) but "
                    f"no db_versioning table: it is not a nebtwist database nebtwist can use")
            self._create_tables(cursor)
            cursor.execute(
                self._sql("INSERT INTO db_versioning (oid, version, timestamp, comment) "
                          "VALUES (?, ?, ?, ?)"),
                (0, ONE_VERSION, int(self.reactor.seconds()), f"nebtwist schema {SCHEMA_VERSION}"))
            return True
        stored, row = self._stored_version(cursor)
        self.check_version(stored, row)
        self._create_tables(cursor)
        return False

    def check_version(self, stored, row=None):
        """Raise :class:`SchemaVersionError` unless ``stored`` is :data:`SCHEMA_VERSION`.

        :param stored: the stored version (int) or None for a database
            whose db_versioning row is not nebtwist's.
        :param row: that row ``(oid, version, timestamp, comment)``, for the message.
        """
        if stored == SCHEMA_VERSION:
            return
        if stored is None:
            raise SchemaVersionError(
                f"the {self.describe()} records version {row[1]!r} ({row[3]!r}), not a "
                f"nebtwist schema: nebtwist cannot use it")
        if stored < SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the {self.describe()} has schema version {stored}, older than this "
                f"nebtwist's ({SCHEMA_VERSION}): run 'onedb upgrade' with nebtwist stopped "
                f"(it reads the same oned.conf, and backs the database up first)", stored)
        raise SchemaVersionError(
            f"the {self.describe()} has schema version {stored}, newer than this nebtwist's "
            f"({SCHEMA_VERSION}): run a newer nebtwist, or restore a backup with "
            f"'onedb restore'", stored)

    async def version_info(self):
        """What ``onedb version`` shows.

        :return: dict with ``stored`` (int, or None for an empty or foreign
            database), ``code`` (:data:`SCHEMA_VERSION`), ``history``
            (db_versioning rows, newest first: ``(oid, version, timestamp,
            comment)``) and ``empty`` (no db_versioning table).
        :raises DatabaseError: not connected, or the query failed.
        """
        def query(cursor):
            tables = self._existing_tables(cursor)
            if "db_versioning" not in tables:
                return {"stored": None, "code": SCHEMA_VERSION, "history": [], "empty": True}
            rows = self._version_rows(cursor)
            m = _COMMENT.match(rows[0][3] or "") if rows else None
            return {"stored": int(m.group(1)) if m else None, "code": SCHEMA_VERSION,
                    "history": rows, "empty": False}

        return await self._interact(query, "read")

    async def upgrade(self, target=None):
        """Bring the schema to ``target`` (default :data:`SCHEMA_VERSION`).

        Creates missing tables, runs the migrations above the stored version
        and records the new version, in one transaction where the backend
        allows (SQLite and PostgreSQL; MySQL commits each DDL statement, so
        back it up first: ``onedb upgrade`` does).

        :return: ``(stored, target, [Migration or "create table NAME", ...])``
            (an empty list when already at ``target``).
        :raises SchemaVersionError: empty or foreign database, stored version
            newer than ``target``, or ``target`` not between 1 and
            :data:`SCHEMA_VERSION`.
        :raises DatabaseError: a statement failed (everything rolled back where
            the backend allows).
        """
        target = SCHEMA_VERSION if target is None else int(target)
        if not 1 <= target <= SCHEMA_VERSION:
            raise SchemaVersionError(
                f"cannot upgrade to schema version {target}: this nebtwist knows versions "
                f"1 to {SCHEMA_VERSION}")
        now = int(self.reactor.seconds())

        def work(cursor):
            self._begin(cursor)
            stored, row = self._stored_version(cursor)
            if row is None:
                raise SchemaVersionError(
                    f"the {self.describe()} is empty: there is nothing to upgrade (nebtwist "
                    f"creates the schema on its first start)")
            if stored is None:
                self.check_version(None, row)
            if stored > target:
                raise SchemaVersionError(
                    f"the {self.describe()} has schema version {stored}, newer than "
                    f"{target}: onedb cannot downgrade (restore a backup instead)", stored)
            if stored == target:
                return stored, target, []
            done = [f"create table {t}" for t in self._create_tables(cursor)]
            for migration in sorted(MIGRATIONS, key=lambda m: m.version):
                if stored < migration.version <= target:
                    self._apply(cursor, migration)
                    done.append(migration)
            cursor.execute(
                self._sql("INSERT INTO db_versioning (oid, version, timestamp, comment) "
                          "VALUES (?, ?, ?, ?)"),
                (row[0] + 1, ONE_VERSION, now,
                 f"nebtwist schema {target} (upgraded from {stored} by onedb)"))
            return stored, target, done

        return await self._interact(work, "upgrade", retry=False)

    def _apply(self, cursor, migration):
        types = _TYPES[self.backend]
        for step in migration.steps:
            if isinstance(step, dict):
                step = step.get(self.backend, [])
            if callable(step):
                step(cursor, self)
                continue
            for sql in [step] if isinstance(step, str) else step:
                cursor.execute(sql.format(**types))

    # -- statements --------------------------------------------------------------------

    def _interact(self, work, what, retry=True):
        """Run ``work(cursor)`` in one transaction; driver errors become DatabaseError."""
        if self.pool is None:
            return defer.fail(DatabaseError(f"the {self.describe()} is not open"))
        d = self.pool.runInteraction(work, _retry=retry)
        d.addErrback(self._failed, what)
        return d

    def _failed(self, failure, what):
        if failure.check(NebulaError):
            return failure
        e = failure.value
        log.error("Error in the {db} ({what}): {e}", db=self.describe(), what=what,
                  e=_reason(e))
        raise DatabaseError(f"cannot {what} the {self.describe()}: {_reason(e)}") from e

    def run(self, ops):
        """Run ``ops`` (:class:`Op`/:class:`Upsert`) in one transaction.

        :return: Deferred firing with None once committed; errbacks with
            :class:`DatabaseError` (the transaction is rolled back; its
            ``__cause__`` is the driver's exception).
        """
        ops = list(ops)
        return self._interact(lambda cursor: self._run(cursor, ops), "write to")

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
        """Run one query; Deferred firing with a list of row tuples.

        Errbacks with :class:`DatabaseError`.
        """
        def query(cursor):
            cursor.execute(self._sql(sql), tuple(params))
            return [tuple(row) for row in cursor.fetchall()]

        return self._interact(query, "read from")


def _reason(error):
    """A one-line description of a driver error."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
