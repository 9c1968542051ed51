"""Small requests the API fronts need besides the object reads of
:mod:`nebtwist.core.requests_objects`: may-I questions, the clock, look-ups
by name, and the write-through of template attributes the EC2-style
operations (:mod:`nebtwist.core.requests_keypairs`,
:mod:`~nebtwist.core.requests_addresses`, :mod:`~nebtwist.core.requests_tags`)
keep in core objects.

Authorization follows OpenNebula 3.4 (``AuthRequest``, ``AclManager``):
:meth:`~nebtwist.core.nebula.Nebula.can_use`, ``can_manage``, ``can_create``.
"""

import os

from twisted.internet import defer

from nebtwist.errors import NoSuchObject

#: Object kinds of :meth:`AccessRequests._store_attributes` -> the Nebula pool.
_POOLS = {"user": "userpool", "vm": "vmpool", "image": "imagepool", "vnet": "vnpool"}


def replace_attribute(template, name, values):
    """Replace every ``name`` attribute of ``template`` (in place) by ``values``
    (strings or vector dicts)."""
    template.remove(name)
    for value in values:
        template.add(name, value)


def vectors(obj, name):
    """The vector (dict) values of attribute ``name`` of ``obj.template``."""
    return [v for v in obj.template.get_all(name) if isinstance(v, dict)]


class AccessRequests:
    """Mixin of :class:`nebtwist.core.requests.Requests` (``self.nebula``,
    ``self.dm`` come from it)."""

    def now(self):
        """The core clock's time, in seconds since the epoch (float)."""
        return self.nebula.clock.seconds()

    def work_dir(self, name):
        """``<var>/<name>``: a folder of the daemon's state for a front's
        own files (not created here)."""
        return os.path.join(self.nebula.var_dir, name)

    def user_by_name(self, name):
        """The :class:`~nebtwist.core.objects.User` named ``name``, or None.

        For fronts that authenticated the caller already (a signature whose
        access key is the user name, :mod:`nebtwist.api.awsauth`), and for
        names in requests ("images user X may launch").
        """
        return self.nebula.userpool.find(name)

    def user_secret(self, name):
        """The signature secret of user ``name`` (EC2/S3 access key = the user
        name): its stored ``PASSWORD`` (the SHA1 hex of the password) if the
        user exists, is enabled and uses the ``core`` or ``public`` auth
        driver (OpenNebula 3.4 ``EC2CloudAuth``); otherwise None. A
        ``secret_lookup`` for :func:`nebtwist.api.awsauth.verify_request`.
        """
        user = self.nebula.userpool.find(name)
        if user is None or not user.enabled or user.auth_driver not in ("core", "public"):
            return None
        return user.password

    def may_create(self, actor, kind):
        """May ``actor`` create objects of ``kind`` (``"VM"``, ``"IMAGE"``,
        ``"NET"``, ``"TEMPLATE"``)? (3.4 CREATE rights, the ACL rules.)"""
        return self.nebula.can_create(actor, kind)

    def may_use(self, actor, obj):
        """May ``actor`` use ``obj`` (a pool object)? (USE right.)"""
        return self.nebula.can_use(actor, obj)

    def may_manage(self, actor, obj):
        """May ``actor`` manage ``obj`` (act on it, delete it)? (MANAGE right.)"""
        return self.nebula.can_manage(actor, obj)

    def image_find(self, actor, name):
        """The image named ``name`` that ``actor`` owns, or None (image names
        are unique per owner, 3.4 ``ImagePool::allocate``)."""
        return self.nebula.imagepool.find(name, actor.oid)

    def image_copy_ended(self, actor, iid):
        """A Deferred firing (with None) once image ``iid``'s copy into its
        datastore ends, whatever the outcome (:class:`nebtwist.core.imagem.
        ImageManager` jobs), or None when no copy runs. For a front that
        must keep a source file until then (USE on the image).

        :raises NoSuchObject: no such image.
        :raises AuthorizationError: the user may not use it.
        """
        self._image(actor, int(iid), "USE")
        job = getattr(getattr(self, "images", None), "jobs", {}).get(int(iid))
        if job is None:
            return None
        ended = defer.Deferred()

        def done(result):
            ended.callback(None)
            return result
        job.addBoth(done)
        return ended

    def vm_action_allowed(self, actor, vm, action):
        """Would ``one.vm.action`` ``action`` (``"stop"``, ``"resume"``...) be
        taken by ``vm`` in its present state? (The life-cycle manager's
        table, :meth:`nebtwist.core.lcm.LifeCycleManager.allowed`; True when
        there is none to ask.) Authorization is not checked here.

        :raises NoSuchObject: an unknown action.
        """
        from nebtwist.core.dm import ACTIONS

        if action not in ACTIONS:
            raise NoSuchObject(f"Unknown action {action!r}.")
        lcm = getattr(getattr(self, "dm", None), "lcm", None)
        return lcm is None or lcm.allowed(vm, ACTIONS[action])

    async def _store_attributes(self, changes):
        """Give core objects new values of one template attribute each and
        write them in one transaction; if the write fails, the old values
        are put back.

        :param changes: ``[(kind, obj, name, values, extra_ops)]``: ``kind``
            one of ``user``, ``vm``, ``image``, ``vnet``; every ``name``
            attribute of ``obj.template`` is replaced by ``values``, in place
            (the managers holding the object see the change); ``extra_ops``
            are more statements (or ``()``).
        """
        saved = []
        ops = []
        try:
            for kind, obj, name, values, extra in changes:
                pool = getattr(self.nebula, _POOLS[kind])
                saved.append((obj, name, obj.template.get_all(name)))
                replace_attribute(obj.template, name, values)
                obj.touch()
                ops += pool.write_ops(obj) + list(extra)
            await self.nebula.db.run(ops)
        except BaseException:
            for obj, name, values in reversed(saved):
                replace_attribute(obj.template, name, values)
                obj.touch()
            raise
