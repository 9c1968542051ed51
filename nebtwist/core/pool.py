"""In-memory pools written through to the database.

A pool owns its objects on the reactor thread (``oid -> object``); every
change is written through :class:`nebtwist.core.db.Database` before the API
answers. Oids are given out in order, as OpenNebula's ``PoolSQL`` does
(``src/pool/PoolSQL.cc``), and ``pool_control`` records the last one given, so
a deleted object's oid is never reused.
"""

import gc

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorCore

from nebtwist.core import db as dbm
from nebtwist.core import objects as objm
from nebtwist.core.objects import History, Lease, VirtualMachine, parse_xml
from nebtwist.errors import NoSuchObject

#: Bodies serialised in one go while a listing is built; between two batches
#: the build gives the reactor back (other calls are served meanwhile).
REBUILD_BATCH = 250

#: Identical listings remembered per pool (oldest forgotten first).
LISTINGS_KEPT = 16


class PoolXML:
    """A pool listing (``<VM_POOL>...</VM_POOL>``) as pieces of UTF-8 bytes.

    :attr:`parts` are the opening tag, each object's cached
    :meth:`~nebtwist.core.objects.PoolObject.body_bytes` and the closing tag:
    the XML-RPC front writes them into a CDATA section in slices, never
    joining the listing into one string (``nebtwist.api.xmlrpc``). ``str()``
    gives the document as text for any other use.
    """

    __slots__ = ("parts", "size", "generation")

    def __init__(self, parts, generation):
        self.parts = parts
        self.size = sum(len(p) for p in parts)
        self.generation = generation

    def __len__(self):
        return self.size

    def __str__(self):
        return b"".join(self.parts).decode("utf-8").replace("]]]]><![CDATA[>", "]]>")


class Pool:
    """Objects of one kind, by oid and by name.

    :param database: the :class:`~nebtwist.core.db.Database`.
    :param cls: the object class (its ``TABLE`` names the table).
    :param label: how errors name the kind, e.g. ``"virtual machine"``.
    """

    def __init__(self, database, cls, label):
        self.db = database
        self.cls = cls
        self.table = cls.TABLE
        self.label = label
        self.objects = {}
        self.last_oid = -1
        #: listing key -> PoolXML (finished) or Deferred (being built); see listing().
        self._listings = {}

    def __len__(self):
        return len(self.objects)

    def __iter__(self):
        return iter(list(self.objects.values()))

    def get(self, oid):
        """The object with ``oid``; raises :class:`NoSuchObject`."""
        try:
            return self.objects[oid]
        except KeyError:
            raise NoSuchObject(f"Error getting {self.label} [{oid}].") from None

    def find(self, name, uid=None):
        """The first object named ``name`` (owned by ``uid`` if given), or None."""
        for obj in self.objects.values():
            if obj.name == name and (uid is None or getattr(obj, "uid", None) == uid):
                return obj
        return None

    def reserve_oid(self):
        """Give out the next oid (rolled back by :meth:`release_oid` on failure)."""
        self.last_oid += 1
        return self.last_oid

    def release_oid(self, oid):
        """Undo :meth:`reserve_oid` when nothing was created with ``oid``."""
        if self.last_oid == oid:
            self.last_oid -= 1

    def write_ops(self, obj):
        """The statements that store ``obj``.

        ``obj`` is written because it changed: its cached body is dropped
        first (:meth:`PoolObject.touch`), so neither the database nor a later
        listing can get a body cached before the change, even when the caller
        changed it without touching it (an object written in another
        object's transaction, such as a group gaining a user).
        """
        obj.touch()
        return [dbm.upsert(self.table, {"oid": obj.oid}, dict(obj.db_columns(), body=obj.body()))]

    async def insert(self, obj, extra_ops=()):
        """Store a new object (with ``extra_ops`` in the same transaction) and add it.

        The object is visible in the pool only once committed; on a database
        error nothing is added and the error propagates.
        """
        ops = self.write_ops(obj) + list(extra_ops)
        ops.append(dbm.upsert("pool_control", {"tablename": self.table},
                              {"last_oid": max(self.last_oid, obj.oid)}))
        await self.db.run(ops)
        self.objects[obj.oid] = obj
        return obj

    def update(self, obj, extra_ops=()):
        """Write ``obj`` (already changed in memory) through; Deferred.
        Its cached body is dropped (:meth:`write_ops`)."""
        return self.db.run(self.write_ops(obj) + list(extra_ops))

    async def remove(self, obj, extra_ops=()):
        """Delete ``obj`` from the database and the pool."""
        await self.db.run([dbm.delete(self.table, oid=obj.oid)] + list(extra_ops))
        self.objects.pop(obj.oid, None)

    async def load(self):
        """Read every object and the oid counter from the database.

        The objects read live as long as the daemon: they are moved out of
        the cyclic garbage collector's generations (``gc.freeze``), so its
        full collections do not walk 10,000 VMs' objects each time (stalls
        of 60 to 100 ms every few seconds during a placement otherwise).
        """
        rows = await self.db.select(f"SELECT oid, body FROM {self.table} ORDER BY oid")
        for oid, body in rows:
            self.objects[oid] = self.cls.from_xml(parse_xml(body))
        if rows:
            gc.freeze()
        ctl = await self.db.select("SELECT last_oid FROM pool_control WHERE tablename = ?",
                                   (self.table,))
        last = max([-1] + list(self.objects))
        if ctl:
            last = max(last, int(ctl[0][0]))
        self.last_oid = last

    def dump(self, objects):
        """``<ROOT_POOL>`` of the given objects' bodies, ordered by oid."""
        root = self.cls.ROOT + "_POOL"
        return f"<{root}>" + "".join(o.body() for o in objects) + f"</{root}>"

    def listing(self, key, select, clock=None):
        """The ``<ROOT_POOL>`` of ``select()`` (a list of this pool's objects)
        as a :class:`PoolXML`; Deferred.

        Cheap when little changed: each object's body is cached and only the
        objects changed since (:meth:`PoolObject.touch`) are serialised again,
        :data:`REBUILD_BATCH` at a time with the reactor given back between
        batches when ``clock`` is a running reactor (a listing of 10,000
        changed VMs never holds the reactor for more than a few milliseconds).

        ``key`` names the request (user, filter, range): a finished listing
        with the same key is answered again while no object of any pool has
        changed since it was built (:data:`objects.generation`), and a request
        arriving while one with the same key is being built, nothing having
        changed since that build began, waits for it instead of building its
        own. A caller that changed something before asking therefore always
        gets a listing built after its change.

        Objects removed from the pool while a listing is built in batches are
        left out; each object is shown as it was when its body was taken.
        """
        gen = objm.generation
        # A finished listing is answered only at the generation it was built
        # at: once anything changed, drop them all (they hold bodies' bytes).
        stale = [k for k, v in self._listings.items()
                 if isinstance(v, PoolXML) and v.generation != gen]
        for k in stale:
            del self._listings[k]
        known = self._listings.get(key)
        if known is not None:
            if isinstance(known, PoolXML):
                if known.generation == gen:
                    return defer.succeed(known)
            elif known.started == gen:
                d = defer.Deferred()
                known.waiters.append(d)
                return d
        build = _Build(gen)
        self._listings.pop(key, None)
        self._listings[key] = build
        while len(self._listings) > LISTINGS_KEPT:
            self._listings.pop(next(iter(self._listings)))
        d = defer.ensureDeferred(self._build(select(), gen, clock))

        def done(result):
            if self._listings.get(key) is build:
                if isinstance(result, PoolXML):
                    self._listings[key] = result
                else:
                    del self._listings[key]
            for w in build.waiters:
                w.callback(result)
            return result

        return d.addBoth(done)

    async def _build(self, objects, gen, clock):
        root = self.cls.ROOT + "_POOL"
        parts = [f"<{root}>".encode()]
        append = parts.append
        yielding = clock is not None and IReactorCore.providedBy(clock)
        rebuilt = 0
        batched = False
        live = self.objects
        for obj in objects:
            if obj._body_bytes is None:
                if rebuilt == REBUILD_BATCH and yielding:
                    await task.deferLater(clock, 0, lambda: None)
                    rebuilt = 0
                    batched = True
                rebuilt += 1
            if batched and live.get(obj.oid) is not obj:
                continue  # removed while the reactor was given back
            append(obj.body_bytes())
        append(f"</{root}>".encode())
        # A listing built across several reactor turns is not remembered as
        # "current at gen": objects changed meanwhile.
        return PoolXML(parts, gen if not batched else -1)


class _Build:
    """A listing being built: the generation it started at and who waits for it."""

    __slots__ = ("started", "waiters")

    def __init__(self, started):
        self.started = started
        self.waiters = []


class VirtualMachinePool(Pool):
    """VMs plus their history records (table ``history``)."""

    def __init__(self, database):
        super().__init__(database, VirtualMachine, "virtual machine")

    def write_ops(self, vm):
        ops = super().write_ops(vm)
        h = vm.last_history
        if h is not None:
            ops.append(dbm.upsert("history", {"vid": vm.oid, "seq": h.seq}, {"body": h.body()}))
        return ops

    def history_ops(self, vm, record):
        """Statements writing one (earlier) history record."""
        return [dbm.upsert("history", {"vid": vm.oid, "seq": record.seq},
                           {"body": record.body()})]

    async def load(self):
        await super().load()
        rows = await self.db.select("SELECT vid, seq, body FROM history ORDER BY vid, seq")
        for vid, _seq, body in rows:
            vm = self.objects.get(vid)
            if vm is not None:
                vm.history.append(History.from_xml(parse_xml(body)))


class VirtualNetworkPool(Pool):
    """Networks plus their leases (table ``leases``)."""

    def lease_ops(self, vnet, leases):
        """Statements storing ``leases`` of ``vnet``: free RANGED leases are deleted."""
        from nebtwist.core.objects import RANGED

        ops = []
        for lease in leases:
            if vnet.type == RANGED and not lease.used:
                ops.append(dbm.delete("leases", oid=vnet.oid, ip=lease.ip))
            else:
                ops.append(dbm.upsert("leases", {"oid": vnet.oid, "ip": lease.ip},
                                      {"body": lease.db_body()}))
        return ops

    async def load(self):
        await super().load()
        rows = await self.db.select("SELECT oid, ip, body FROM leases ORDER BY oid, ip")
        for oid, ip, body in rows:
            vnet = self.objects.get(oid)
            if vnet is not None:
                vnet.leases[int(ip)] = Lease.from_db(body)

    async def remove(self, obj, extra_ops=()):
        await super().remove(obj, [dbm.delete("leases", oid=obj.oid)] + list(extra_ops))
