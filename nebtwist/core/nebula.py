"""The core: configuration, the database, the pools, paths and authorization.

:class:`Nebula` is what OpenNebula's ``Nebula`` singleton held, but passed
explicitly to every manager. It owns the pools (on the reactor thread) and
answers the questions every front asks: who is this session, may this user
use or manage this object.

Authorization follows OpenNebula 3.4 (``include/AuthRequest.h``,
``src/acl/AclManager.cc``, ``include/PoolObjectAuth.h``; see
:mod:`nebtwist.core.acl`): oneadmin (uid 0) and members of the oneadmin
group (gid 0) may do everything; otherwise an object's nine permission bits
(OWNER/GROUP/OTHER x USE/MANAGE/ADMIN) and the ACL rules decide. Sessions are
``user:password`` checked against the stored SHA1 hex of the password (3.4
``core`` driver), and trusted for SESSION_EXPIRATION_TIME seconds.
"""

import hashlib
import os
import secrets
import time

from nebtwist.core import acl as aclm
from nebtwist.core import db as dbm
from nebtwist.core.files import FileWriter
from nebtwist.core.images import Image
from nebtwist.core.objects import (ONEADMIN_GROUP, USERS_GROUP, Group, Host, User,
                                   VirtualNetwork)
from nebtwist.core.pool import Pool, VirtualMachinePool, VirtualNetworkPool
from nebtwist.core.sessions import SessionCache
from nebtwist.core.templates import compile_expressions
from nebtwist.core.vmtemplates import VMTemplate
from nebtwist.errors import AuthenticationError
from nebtwist.log import OneLogger

log = OneLogger("ONE")
vmlog = OneLogger("VM")


def sha1_hex(text):
    """Lowercase SHA1 hex digest of ``text`` (OpenNebula ``User::sha1_digest``)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def read_one_auth(path):
    """``(user, password)`` from a one_auth file (first line ``user:password``).

    :raises ValueError: the file has no ``user:password`` line.
    """
    with open(path, encoding="utf-8") as f:
        line = f.readline().strip()
    if ":" not in line:
        raise ValueError(f"{path} must hold user:password")
    user, password = line.split(":", 1)
    return user, password


def oneadmin_credentials(var_dir, environ=None):
    """Where oneadmin's first password comes from, as 3.4 ``UserPool`` does.

    ``$ONE_AUTH``, else ``~/.one/one_auth``; if neither exists, a random
    password is generated and written to ``<var>/.one/one_auth`` (mode 600).

    :return: ``(user, password, path)``.
    """
    environ = os.environ if environ is None else environ
    candidates = []
    if environ.get("ONE_AUTH"):
        candidates.append(environ["ONE_AUTH"])
    home = environ.get("HOME") or os.path.expanduser("~")
    candidates.append(os.path.join(home, ".one", "one_auth"))
    for path in candidates:
        if os.path.exists(path):
            user, password = read_one_auth(path)
            return user, password, path
    path = os.path.join(var_dir, ".one", "one_auth")
    if os.path.exists(path):
        user, password = read_one_auth(path)
        return user, password, path
    password = secrets.token_hex(16)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"oneadmin:{password}\n")
    return "oneadmin", password, path


class Nebula:
    """The core state and the helpers every manager and front uses.

    :param config: :class:`nebtwist.core.config.Config`.
    :param clock: an ``IReactorTime`` (the reactor, or a Clock in tests).
    :param var_dir: ``$ONE_LOCATION/var``: database, logs, VM directories.
    :param database: a :class:`~nebtwist.core.db.Database` (built from the
        config's ``DB`` vector when None).
    """

    def __init__(self, config, clock, var_dir, database=None):
        self.config = config
        self.clock = clock
        self.var_dir = os.path.abspath(var_dir)
        if database is None:
            database = database_from_config(config, clock, self.var_dir)
        self.db = database
        self.userpool = Pool(database, User, "user")
        self.grouppool = Pool(database, Group, "group")
        self.hostpool = Pool(database, Host, "host")
        self.vnpool = VirtualNetworkPool(database, VirtualNetwork, "virtual network")
        self.vmpool = VirtualMachinePool(database)
        self.imagepool = Pool(database, Image, "image")
        self.tplpool = Pool(database, VMTemplate, "virtual machine template")
        self.datastore_location = config.get(
            "DATASTORE_LOCATION", os.path.join(self.var_dir, "datastores"))
        self._user_by_name = {}
        #: The VM directories' file writer: a worker thread when ``clock`` is a
        #: reactor, synchronous on a test Clock (see nebtwist.core.files).
        self.files = FileWriter(clock)
        #: ACL rules (``one.acl.*``), loaded by :meth:`open`.
        self.acl = aclm.AclManager(database)
        #: Sessions trusted for SESSION_EXPIRATION_TIME seconds (0: none).
        self.sessions = SessionCache(clock, config.get_float("SESSION_EXPIRATION_TIME", 0.0))

    # -- start-up ---------------------------------------------------------------------

    async def open(self, oneadmin=None):
        """Open the database, load every pool, bootstrap on first start.

        :param oneadmin: ``(name, password)`` for user 0 on first start.
        :raises nebtwist.errors.InternalError: the database cannot be used.
        """
        await self.db.open()
        for pool in (self.grouppool, self.userpool, self.hostpool, self.vnpool, self.vmpool,
                     self.imagepool, self.tplpool):
            await pool.load()
        if not self.grouppool.objects:
            for gid, name in ((ONEADMIN_GROUP, "oneadmin"), (USERS_GROUP, "users")):
                self.grouppool.reserve_oid()
                await self.grouppool.insert(Group(gid, name))
        if not self.userpool.objects:
            name, password = oneadmin or ("oneadmin", secrets.token_hex(16))
            self.userpool.reserve_oid()
            admin = User(0, name, sha1_hex(password), ONEADMIN_GROUP, "oneadmin")
            group = self.grouppool.get(ONEADMIN_GROUP)
            group.users = sorted(set(group.users) | {0})
            await self.userpool.insert(admin, self.grouppool.write_ops(group))
            log.info("Bootstrapped user 0 ({name})", name=name)
        for vm in self.vmpool:
            try:
                compile_expressions(vm, vm.template)
            except Exception:  # noqa: BLE001 - a stored VM keeps loading
                log.warn("VM {vid}: stored REQUIREMENTS/RANK do not parse", vid=vm.oid)
        await self.acl.load()
        self.reindex_users()

    async def close(self):
        """Finish the queued file writes, then close the database."""
        self.files.stop()
        await self.db.close()

    def reindex_users(self):
        """Rebuild the name -> user index (after users change)."""
        self._user_by_name = {u.name: u for u in self.userpool}

    # -- authentication and authorization ------------------------------------------------

    def authenticate(self, session):
        """The :class:`User` of a ``user:password`` session string.

        Split at the first ``:`` (``User::split_secret``); the password is
        checked against the stored SHA1 hex (3.4 ``core`` driver). A session
        checked successfully is trusted for SESSION_EXPIRATION_TIME seconds
        (:class:`~nebtwist.core.sessions.SessionCache`) unless its user is
        deleted, disabled or changes password. ``public`` users cannot log
        in directly (3.4).

        :raises AuthenticationError: malformed, unknown user, disabled
            (``ENABLED`` 0), ``public`` driver, or wrong password.
        """
        if not isinstance(session, str) or ":" not in session:
            raise AuthenticationError("User couldn't be authenticated, aborting call.")
        user = self.sessions.lookup(session, self.userpool.objects)
        if user is not None:
            return user
        name, secret = session.split(":", 1)
        user = self._user_by_name.get(name)
        self.sessions.checks += 1
        if (user is None or not user.enabled or user.auth_driver == "public"
                or user.password != sha1_hex(secret)):
            raise AuthenticationError("User couldn't be authenticated, aborting call.")
        self.sessions.remember(session, user)
        return user

    @staticmethod
    def is_admin(user):
        """oneadmin (uid 0) or a member of the oneadmin group (gid 0)."""
        return aclm.is_admin(user)

    def authorize(self, user, op, obj):
        """May ``user`` do ``op`` to ``obj``? (:func:`nebtwist.core.acl.authorize`)

        :param op: ``"USE"``, ``"MANAGE"``, ``"ADMIN"`` or ``"CREATE"``.
        :param obj: a pool object, or a type name (``"VM"``, ``"NET"``, ...)
            for CREATE.
        """
        return aclm.authorize(self.acl, user, op, obj)

    def can_use(self, user, obj):
        """May ``user`` see and use ``obj``? Admins; the owner with OWNER_U;
        its group's users with GROUP_U; anyone with OTHER_U; or an ACL rule
        granting USE (3.4 ``AuthRequest``, ``AclManager::authorize``)."""
        return aclm.authorize(self.acl, user, "USE", obj)

    def can_manage(self, user, obj):
        """May ``user`` manage (act on, delete) ``obj``? As :meth:`can_use`
        with the ``_M`` bits and MANAGE rules."""
        return aclm.authorize(self.acl, user, "MANAGE", obj)

    def can_admin(self, user, obj):
        """May ``user`` do administrative operations on ``obj`` (deploy,
        migrate, change ADMIN bits)? As :meth:`can_use` with the ``_A`` bits
        and ADMIN rules."""
        return aclm.authorize(self.acl, user, "ADMIN", obj)

    def can_create(self, user, kind):
        """May ``user`` create objects of ``kind`` (``"VM"``, ``"NET"``,
        ``"IMAGE"``, ``"TEMPLATE"``, ...)? Admins, or a CREATE rule (by default
        ``@1 VM+NET+IMAGE+TEMPLATE/* CREATE``)."""
        return aclm.authorize(self.acl, user, "CREATE", kind)

    # -- paths and logs -------------------------------------------------------------------

    def vm_dir(self, vid):
        """The VM's front-end directory ``<var>/<vid>`` (deployment and transfer files)."""
        return os.path.join(self.var_dir, str(vid))

    def remote_vm_dir(self, vid):
        """The VM's directory on its host: ``<DATASTORE_LOCATION>/0/<vid>`` (3.4)."""
        return f"{self.datastore_location}/0/{vid}"

    def vm_log(self, vm, module, level, message, to_file=True, to_oned=True):
        """Log a VM event to oned.log (``to_oned``) and (``to_file``) to the VM's
        own ``vm.log``.

        :param level: ``"I"``, ``"E"``, ``"W"`` or ``"D"``.
        """
        if to_oned:
            emit = {"E": vmlog.error, "W": vmlog.warn, "D": vmlog.debug}.get(level, vmlog.info)
            emit("VM {vid}: [{module}] {message}", vid=vm.oid, module=module, message=message)
        if not to_file:
            return
        stamp = time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(self.clock.seconds()))
        self.files.append(os.path.join(self.vm_dir(vm.oid), "vm.log"),
                          f"{stamp} [{module}][{level}]: {message}\n")


def database_from_config(config, reactor, var_dir):
    """A :class:`Database` for oned.conf's ``DB`` vector (default SQLite ``<var>/one.db``)."""
    v = config.vector("DB")
    backend = (v.get("BACKEND") or "sqlite").lower()
    return dbm.Database(reactor, backend, path=os.path.join(var_dir, "one.db"),
                        server=v.get("SERVER", "localhost"), port=v.get("PORT", 0) or 0,
                        user=v.get("USER", "oneadmin"), passwd=v.get("PASSWD", "oneadmin"),
                        db_name=v.get("DB_NAME", "opennebula"))
