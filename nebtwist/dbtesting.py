"""Database servers for tests: the PostgreSQL and MySQL/MariaDB backends.

Tests of the server backends use the real servers that run on our machines
(PostgreSQL on 127.0.0.1:5432 with trust authentication as ``postgres``;
MariaDB on 127.0.0.1:3306 as ``root`` with an empty password). Each test
gets a database of its own with a unique name, dropped in its cleanup; when a
server does not answer (or its Python driver is missing), the test is
skipped with the reason.

The addresses can be changed with ``NEBTWIST_TEST_PG`` and
``NEBTWIST_TEST_MYSQL`` (``host:port:user[:password]``).

Everything here blocks (short administrative statements on a direct
connection); it is meant for test set-up and cleanup only.
"""

import os
import secrets
import time

from twisted.trial.unittest import SkipTest

#: Backend -> (environment variable, default ``host:port:user:password``).
_DEFAULTS = {
    "postgresql": ("NEBTWIST_TEST_PG", "127.0.0.1:5432:postgres:"),
    "mysql": ("NEBTWIST_TEST_MYSQL", "127.0.0.1:3306:root:"),
}

_LABELS = {"postgresql": "PostgreSQL", "mysql": "MySQL/MariaDB"}

_unavailable = {}


def server(backend):
    """``dict(server, port, user, passwd)`` of the test server for ``backend``."""
    var, default = _DEFAULTS[backend]
    parts = (os.environ.get(var) or default).split(":", 3) + ["", "", "", ""]
    return {"server": parts[0] or "127.0.0.1", "port": int(parts[1] or 0),
            "user": parts[2], "passwd": parts[3]}


def admin_connection(backend, db_name=None):
    """A direct DB-API connection (autocommit) to the test server.

    :param db_name: the database to use (PostgreSQL default ``postgres``;
        MySQL default none).
    """
    s = server(backend)
    if backend == "postgresql":
        import psycopg2

        conn = psycopg2.connect(host=s["server"], port=s["port"], user=s["user"],
                                password=s["passwd"] or None, dbname=db_name or "postgres",
                                connect_timeout=3)
        conn.autocommit = True
        return conn
    import pymysql

    return pymysql.connect(host=s["server"], port=s["port"], user=s["user"],
                           password=s["passwd"], database=db_name, connect_timeout=3,
                           autocommit=True)


def unavailable(backend):
    """Why the test server for ``backend`` cannot be used, or None (cached)."""
    if backend == "sqlite":
        return None
    if backend not in _unavailable:
        s = server(backend)
        module = "psycopg2" if backend == "postgresql" else "pymysql"
        try:
            __import__(module)
        except ImportError:
            _unavailable[backend] = (f"the Python module {module} is not installed "
                                     f"(pip install psycopg2-binary PyMySQL)")
            return _unavailable[backend]
        try:
            conn = admin_connection(backend)
            try:
                cursor = conn.cursor()
                cursor.execute("SELECT 1")
                cursor.fetchall()
            finally:
                conn.close()
            _unavailable[backend] = None
        except Exception as e:  # noqa: BLE001 - any failure: the server cannot be used
            _unavailable[backend] = (
                f"no {_LABELS[backend]} server answers at {s['server']}:{s['port']} as "
                f"{s['user']!r}: {' '.join(str(e).split()) or type(e).__name__}")
    return _unavailable[backend]


def require(backend):
    """Raise SkipTest (with the reason) unless the test server for ``backend`` answers."""
    reason = unavailable(backend)
    if reason:
        raise SkipTest(reason)


def unique_name(prefix="nebtwist_t"):
    """A database name no other test (or test run) uses."""
    return f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"


def database_exists(backend, name):
    """True if database ``name`` exists on the test server."""
    conn = admin_connection(backend)
    try:
        cursor = conn.cursor()
        if backend == "postgresql":
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        else:
            cursor.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
                           (name,))
        return bool(cursor.fetchall())
    finally:
        conn.close()


def _wait_gone(cursor, query, param, timeout=10.0):
    """Poll ``query`` until it returns no row (a session has really ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cursor.execute(query, (param,))
        if not cursor.fetchall():
            return
        time.sleep(0.02)


def drop_database(backend, name):
    """Drop database ``name`` if it exists (PostgreSQL: ending its sessions)."""
    conn = admin_connection(backend)
    try:
        cursor = conn.cursor()
        if backend == "postgresql":
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            cursor.fetchall()
            _wait_gone(cursor, "SELECT 1 FROM pg_stat_activity WHERE datname = %s", name)
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        else:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


def create_database(backend, name):
    """Create (empty) database ``name`` on the test server."""
    conn = admin_connection(backend)
    try:
        cursor = conn.cursor()
        if backend == "postgresql":
            cursor.execute(f'CREATE DATABASE "{name}"')
        else:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    finally:
        conn.close()


def fresh_database(testcase, backend, create=False):
    """Settings of a new, uniquely named database for ``testcase``.

    Skips the test when the server does not answer. The database is dropped
    in a cleanup registered here (register it before anything that must
    stop using the database first, e.g. a daemon: cleanups run last first).

    :param create: create it now (otherwise nebtwist creates it).
    :return: dict of :class:`~nebtwist.core.db.Database` keyword arguments
        (``backend``, ``server``, ``port``, ``user``, ``passwd``, ``db_name``).
    """
    require(backend)
    name = unique_name()
    testcase.addCleanup(drop_database, backend, name)
    if create:
        create_database(backend, name)
    return dict(backend=backend, db_name=name, **server(backend))


def db_setting(settings):
    """The oned.conf ``DB=[...]`` override (for ``--set``) of ``settings``."""
    parts = [f'BACKEND="{settings["backend"]}"', f'SERVER="{settings["server"]}"',
             f'PORT={settings["port"]}', f'USER="{settings["user"]}"',
             f'DB_NAME="{settings["db_name"]}"', f'PASSWD="{settings.get("passwd") or ""}"']
    return "DB=[" + ", ".join(parts) + "]"


def kill_connection(backend, connection_id):
    """End the server session ``connection_id`` (``pg_terminate_backend`` / ``KILL``).

    :param connection_id: ``SELECT pg_backend_pid()`` / ``SELECT CONNECTION_ID()``
        as run on the connection to kill.
    """
    conn = admin_connection(backend)
    try:
        cursor = conn.cursor()
        if backend == "postgresql":
            cursor.execute("SELECT pg_terminate_backend(%s)", (connection_id,))
            cursor.fetchall()
            _wait_gone(cursor, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", connection_id)
        else:
            cursor.execute(f"KILL {int(connection_id)}")
            _wait_gone(cursor, "SELECT 1 FROM information_schema.processlist WHERE id = %s",
                       connection_id)
    finally:
        conn.close()


#: The query giving a connection's id for :func:`kill_connection`.
CONNECTION_ID = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}
