"""``onedb``: look after nebtwist's database (OpenNebula's ``onedb``).

Subcommands::

    onedb version [-v]           the stored schema version and this nebtwist's
    onedb history                every db_versioning record
    onedb upgrade [VERSION]      back up, then migrate to VERSION (default: this
                                 nebtwist's) [-b FILE] [--no-backup] [-f]
    onedb backup [FILE] [-f]     copy the database to FILE
    onedb restore [FILE] [-f]    put a backup back (replacing the database)

Which database: the ``DB`` vector of oned.conf (``-c FILE``; default
``$ONE_LOCATION/etc/oned.conf`` if present, else the shipped one; ``--set
KEY=VALUE`` as for ``twistd nebula``), or, as OpenNebula 3.4's onedb, flags:
``-s FILE`` (SQLite), or ``-S server -P port -u user -p passwd -d db_name``
(a server: MySQL, as in 3.4, unless ``-t postgresql`` or oned.conf says
postgresql). SQLite databases live in ``$ONE_LOCATION/var/one.db``.

Backups: SQLite is copied with SQLite's online backup (the copy is itself a
database file; default ``<file>.bck``); PostgreSQL and MySQL are dumped as
SQL with the servers' own client tools (``pg_dump``/``psql``,
``mysqldump``/``mysql``; default ``$ONE_LOCATION/var/<backend>_<server>_<db>.sql``),
as 3.4's onedb did for MySQL. ``onedb upgrade`` backs up before it changes
anything. Stop nebtwist before an upgrade or a restore.

Every failure is one line on stderr and exit status 1.
"""

import argparse
import datetime
import os
import shutil
import sqlite3
import subprocess
import sys

from nebtwist.cli.common import CliParser, _ParserExit
from nebtwist.core import config as configmod
from nebtwist.core import db as dbm
from nebtwist.core.config import ConfigError


class OnedbError(Exception):
    """A failure reported to the user as one line (exit status 1)."""


def _add_options(parser, suppress):
    """The options accepted before and after the subcommand.

    After it (``suppress``) they have no defaults, so that they do not hide
    the same option given before the subcommand.
    """
    def default(value):
        return argparse.SUPPRESS if suppress else value

    db = parser.add_argument_group("database (default: the DB vector of oned.conf)")
    db.add_argument("-c", "--config", default=default(None), help="oned.conf to read")
    db.add_argument("--set", action="append", default=default([]), metavar="KEY=VALUE",
                    help="override a key of oned.conf (repeatable)")
    db.add_argument("-s", "--sqlite", metavar="FILE", default=default(None),
                    help="SQLite database file")
    db.add_argument("-S", "--server", default=default(None), help="database server host")
    db.add_argument("-P", "--port", type=int, default=default(None),
                    help="database server port (0: the backend's default)")
    db.add_argument("-u", "--username", default=default(None), help="database user")
    db.add_argument("-p", "--passwd", default=default(None), help="database password")
    db.add_argument("-d", "--dbname", default=default(None), help="database name")
    db.add_argument("-t", "--type", choices=["mysql", "postgresql"], default=default(None),
                    help="server backend for -S/-P/-u/-p/-d (default: oned.conf's, else mysql)")
    parser.add_argument("-v", "--verbose", action="store_true", default=default(False),
                        help="verbose output")
    parser.add_argument("-f", "--force", action="store_true", default=default(False),
                        help="overwrite existing files or databases")


def build_parser(stdout, stderr):
    """The ``onedb`` argument parser (writing to ``stdout``/``stderr``)."""
    cls = type("Parser", (CliParser,), {"out_stream": stdout, "err_stream": stderr})
    common = cls(add_help=False)
    _add_options(common, suppress=True)
    parser = cls(prog="onedb",
                 description="Show, upgrade, back up and restore nebtwist's database.")
    _add_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("version", parents=[common], help="stored and code schema versions")
    p.set_defaults(handler=do_version)
    p = sub.add_parser("history", parents=[common], help="every db_versioning record")
    p.set_defaults(handler=do_history)
    p = sub.add_parser("upgrade", parents=[common],
                       help="back up, then migrate the schema to this nebtwist's")
    p.add_argument("version", nargs="?", type=int, help="target schema version")
    p.add_argument("-b", "--backup", metavar="FILE", help="where the backup goes")
    p.add_argument("--no-backup", action="store_true", help="do not back up first")
    p.set_defaults(handler=do_upgrade)
    p = sub.add_parser("backup", parents=[common], help="copy the database to a file")
    p.add_argument("file", nargs="?", help="backup file")
    p.set_defaults(handler=do_backup)
    p = sub.add_parser("restore", parents=[common], help="restore a backup file")
    p.add_argument("file", nargs="?", help="backup file")
    p.set_defaults(handler=do_restore)
    return parser


# ------------------------------------------------------------------ which database


def one_location(environ):
    """``$ONE_LOCATION`` (the working directory when unset), absolute."""
    return os.path.abspath(environ.get("ONE_LOCATION") or os.getcwd())


def database_settings(args, environ):
    """The database chosen by ``args``: a dict of :class:`Database` arguments.

    :raises OnedbError: oned.conf cannot be read.
    """
    location = one_location(environ)
    path = args.config or configmod.default_path(location)
    try:
        config = configmod.load(path, args.set)
    except ConfigError as e:
        raise OnedbError(str(e)) from None
    v = config.vector("DB")
    backend = (v.get("BACKEND") or "sqlite").lower()
    settings = dict(backend=backend, path=os.path.join(location, "var", "one.db"),
                    server=v.get("SERVER", "localhost"), port=int(v.get("PORT", 0) or 0),
                    user=v.get("USER", "oneadmin"), passwd=v.get("PASSWD", "oneadmin"),
                    db_name=v.get("DB_NAME", "opennebula"))
    if args.sqlite:
        settings.update(backend="sqlite", path=os.path.abspath(args.sqlite))
    elif any(x is not None for x in (args.server, args.port, args.username, args.passwd,
                                      args.dbname)) or args.type:
        settings["backend"] = args.type or (backend if backend != "sqlite" else "mysql")
        for key, value in (("server", args.server), ("port", args.port),
                           ("user", args.username), ("passwd", args.passwd),
                           ("db_name", args.dbname)):
            if value is not None:
                settings[key] = value
    settings["location"] = location
    return settings


def make_database(reactor, settings):
    """A :class:`~nebtwist.core.db.Database` for ``settings``."""
    s = dict(settings)
    s.pop("location", None)
    return dbm.Database(reactor, **s)


async def open_existing(database):
    """Connect to a database that must exist already (never creates one)."""
    if database.backend == "sqlite" and not os.path.isfile(database.path):
        raise OnedbError(f"{database.path}: no such database file")
    await database.connect(create=False)


# ------------------------------------------------------------------ backups


def default_backup(database, location):
    """Where a backup goes when no file is named."""
    if database.backend == "sqlite":
        return database.path + ".bck"
    return os.path.join(location, "var",
                        f"{database.backend}_{database.server}_{database.db_name}.sql")


def _tool(name, backend):
    path = shutil.which(name)
    if path is None:
        package = "postgresql-client" if backend == "postgresql" else "mariadb-client"
        raise OnedbError(f"{name} not found: backing up or restoring a {backend} database "
                         f"needs its client tools (apt-get install {package})")
    return path


def _server_command(database, tool, environ):
    """``(argv, env)`` for a PostgreSQL or MySQL client tool."""
    env = dict(environ)
    if database.backend == "postgresql":
        if database.passwd:
            env["PGPASSWORD"] = database.passwd
        argv = [_tool(tool, "postgresql"), "-h", database.server, "-p", str(database.port),
                "-U", database.user]
    else:
        if database.passwd:
            env["MYSQL_PWD"] = database.passwd
        argv = [_tool(tool, "mysql"), "--protocol=TCP", "-h", database.server,
                "-P", str(database.port), "-u", database.user]
    return argv, env


def _run_tool(argv, env, stdin=None):
    done = subprocess.run(argv, env=env, stdin=stdin, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        message = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
        raise OnedbError(f"{os.path.basename(argv[0])} failed: {message}")


def backup(database, path, environ):
    """Copy ``database`` to ``path`` (blocking). See the module docstring."""
    if database.backend == "sqlite":
        tmp = path + ".tmp"
        try:
            src = sqlite3.connect(f"file:{database.path}?mode=ro", uri=True)
            try:
                dst = sqlite3.connect(tmp)
                try:
                    src.backup(dst)
                finally:
                    dst.close()
            finally:
                src.close()
            os.replace(tmp, path)
        except (sqlite3.Error, OSError) as e:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise OnedbError(f"cannot back up {database.path} to {path}: {e}") from None
        return
    if database.backend == "postgresql":
        argv, env = _server_command(database, "pg_dump", environ)
        argv += ["--clean", "--if-exists", "--no-owner", "-f", path, database.db_name]
        _run_tool(argv, env)
    else:
        argv, env = _server_command(database, "mysqldump", environ)
        argv += ["--single-transaction", f"--result-file={path}", database.db_name]
        _run_tool(argv, env)


def restore(database, path, environ):
    """Replace ``database`` with the backup at ``path`` (blocking)."""
    if database.backend == "sqlite":
        try:
            src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                src.execute("SELECT count(*) FROM sqlite_master").fetchall()
                os.makedirs(os.path.dirname(database.path), exist_ok=True)
                dst = sqlite3.connect(database.path)
                try:
                    src.backup(dst)
                finally:
                    dst.close()
            finally:
                src.close()
        except sqlite3.Error as e:
            raise OnedbError(f"cannot restore {path} into {database.path}: {e}") from None
        return
    if database.backend == "postgresql":
        argv, env = _server_command(database, "psql", environ)
        argv += ["-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-d",
                 database.db_name, "-f", path]
        _run_tool(argv, env)
    else:
        argv, env = _server_command(database, "mysql", environ)
        argv += [database.db_name]
        with open(path, "rb") as f:
            _run_tool(argv, env, stdin=f)


# ------------------------------------------------------------------ commands


def _stamp(seconds):
    return datetime.datetime.fromtimestamp(int(seconds or 0)).strftime("%m/%d %H:%M:%S")


async def do_version(ctx, database):
    """``onedb version``: stored and code versions, and what to do."""
    await open_existing(database)
    info = await database.version_info()
    out = ctx.out
    if info["empty"]:
        out(f"Database: empty ({database.describe()})")
        out(f"nebtwist: {info['code']}")
        out("Status:   no schema yet: nebtwist creates it on its first start")
        return
    newest = info["history"][0] if info["history"] else None
    stored = info["stored"]
    out(f"Database: {stored if stored is not None else 'not a nebtwist schema'} "
        f"({database.describe()})")
    out(f"nebtwist: {info['code']}")
    if stored is None:
        status = "nebtwist cannot use this database"
    elif stored < info["code"]:
        status = "upgrade needed: stop nebtwist and run 'onedb upgrade'"
    elif stored > info["code"]:
        status = "the database is newer than this nebtwist"
    else:
        status = "up to date"
    out(f"Status:   {status}")
    if ctx.args.verbose and newest is not None:
        out(f"Version:   {newest[1]}")
        out(f"Timestamp: {_stamp(newest[2])}")
        out(f"Comment:   {newest[3]}")


async def do_history(ctx, database):
    """``onedb history``: every db_versioning record, oldest first."""
    await open_existing(database)
    info = await database.version_info()
    if info["empty"]:
        raise OnedbError(f"the {database.describe()} has no db_versioning table")
    for oid, version, timestamp, comment in reversed(info["history"]):
        ctx.out(f"Version:   {version}")
        ctx.out(f"Timestamp: {_stamp(timestamp)}")
        ctx.out(f"Comment:   {comment}")
        ctx.out("")


async def do_upgrade(ctx, database):
    """``onedb upgrade``: back up, then run :meth:`Database.upgrade`."""
    args = ctx.args
    await open_existing(database)
    info = await database.version_info()
    if info["empty"]:
        raise OnedbError(f"the {database.describe()} is empty: nebtwist creates the schema "
                         f"on its first start; there is nothing to upgrade")
    stored, target = info["stored"], args.version or info["code"]
    if stored is None:
        database.check_version(None, info["history"][0])
    ctx.out(f"Version read: {stored} ({database.describe()})")
    if stored == target:
        ctx.out(f"The database is already at schema version {target}; nothing to do.")
        return
    if stored < target and not args.no_backup:
        path = args.backup or default_backup(database, ctx.location)
        if os.path.exists(path) and not args.force:
            if args.backup:
                raise OnedbError(f"File {path} exists, upgrade aborted. Use -f to overwrite.")
            path += "." + datetime.datetime.now().strftime("%Y%m%d%H%M%S")
        try:
            backup(database, path, ctx.environ)
        except OnedbError as e:
            raise OnedbError(f"{e}; nothing was changed (onedb upgrade --no-backup skips "
                             f"the backup)") from None
        ctx.out(f"{_label(database)} backup stored in {path}")
        ctx.out("Use 'onedb restore' to go back to it.")
        ctx.out("")
    stored, target, done = await database.upgrade(target)
    for step in done:
        text = step if isinstance(step, str) else f"{step.version}: {step.description}"
        ctx.out(f"  > {text}")
    ctx.out(f"Database migrated from schema {stored} to {target} by onedb.")


def _label(database):
    return {"sqlite": "Sqlite", "postgresql": "PostgreSQL", "mysql": "MySQL"}[database.backend]


async def do_backup(ctx, database):
    """``onedb backup [FILE]``."""
    await open_existing(database)
    await database.close()
    path = os.path.abspath(ctx.args.file or default_backup(database, ctx.location))
    if os.path.exists(path) and not ctx.args.force:
        raise OnedbError(f"File {path} exists, backup aborted. Use -f to overwrite.")
    backup(database, path, ctx.environ)
    ctx.out(f"{_label(database)} database backup stored in {path}")
    ctx.out("Use 'onedb restore' to restore the DB.")


async def do_restore(ctx, database):
    """``onedb restore [FILE]``: refuses to replace a non-empty database without -f."""
    path = os.path.abspath(ctx.args.file or default_backup(database, ctx.location))
    if not os.path.isfile(path):
        raise OnedbError(f"{path}: no such backup file")
    if database.backend == "sqlite":
        if os.path.exists(database.path) and not ctx.args.force:
            raise OnedbError(f"File {database.path} exists, use -f to overwrite.")
    else:
        await database.connect(create=True)
        info = await database.version_info()
        await database.close()
        if not info["empty"] and not ctx.args.force:
            raise OnedbError(f"the {database.describe()} is not empty, use -f to overwrite.")
    restore(database, path, ctx.environ)
    ctx.out(f"{_label(database)} database backup restored from {path}")


class _Context:
    def __init__(self, args, stdout, stderr, environ, location):
        self.args = args
        self.stdout = stdout
        self.stderr = stderr
        self.environ = environ
        self.location = location

    def out(self, line=""):
        self.stdout.write(line + "\n")


async def run(reactor, argv, stdout=None, stderr=None, environ=None):
    """Run ``onedb argv`` on a running ``reactor``; returns the exit status.

    :param environ: replaces :data:`os.environ` (``ONE_LOCATION``, tools' env).
    """
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    environ = dict(os.environ if environ is None else environ)
    parser = build_parser(stdout, stderr)
    try:
        args = parser.parse_args(list(argv))
    except _ParserExit as e:
        return e.status
    database = None
    try:
        settings = database_settings(args, environ)
        database = make_database(reactor, settings)
        ctx = _Context(args, stdout, stderr, environ, settings["location"])
        await args.handler(ctx, database)
        return 0
    except (OnedbError, dbm.DatabaseError) as e:
        stderr.write(f"onedb: {e}\n")
        return 1
    finally:
        if database is not None:
            await database.close()


def main(argv=None):
    """Console script entry point: runs :func:`run` under ``task.react``."""
    from twisted.internet import defer, task

    argv = sys.argv[1:] if argv is None else list(argv)
    statuses = []

    async def go(reactor):
        statuses.append(await run(reactor, argv))

    try:
        task.react(lambda reactor: defer.ensureDeferred(go(reactor)))
    except SystemExit:
        pass
    sys.exit(statuses[0] if statuses else 1)


if __name__ == "__main__":
    main()
