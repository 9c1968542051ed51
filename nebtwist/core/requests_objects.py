"""Requests that return core objects, for the API fronts.

The XML-RPC front renders OpenNebula's XML bodies; the other fronts (EC2,
OpenStack, OCCI, ElasticHosts) render the same objects in their own shapes.
These operations give them the objects, with the same authorization as the
``one.*`` calls (OpenNebula 3.4 ``src/rm/RequestManagerInfo.cc`` and
``RequestManagerPoolInfoFilter.cc``: USE on the object; pool listings hold
what the user may use). They never change anything.

Errors: :class:`~nebtwist.errors.NoSuchObject` for an unknown id,
:class:`~nebtwist.errors.AuthorizationError` for an object the user may not
use, :class:`~nebtwist.errors.AuthenticationError` for a bad login.
"""

from nebtwist.core.objects import DONE
from nebtwist.errors import AuthenticationError, AuthorizationError

#: The 3.4 pool filter "every object the user may use" (``-2``).
_ALL = -2


class ObjectRequests:
    """Mixin of :class:`nebtwist.core.requests.Requests`: read operations that
    return pool objects (``self.nebula``, ``self._filter``, ``self._vm``,
    ``self._image`` and ``self._vmtemplate`` come from the class it is mixed
    into)."""

    def authenticate(self, name, password):
        """The :class:`~nebtwist.core.objects.User` whose name and password
        these are (the ``core`` driver's SHA1 check, disabled and ``public``
        users refused; :meth:`nebtwist.core.nebula.Nebula.authenticate`).

        :param name: the user name (str).
        :param password: the clear-text password (str).
        :raises AuthenticationError: unknown user, wrong password, disabled.
        """
        if not isinstance(name, str) or not isinstance(password, str) or not name:
            raise AuthenticationError("User couldn't be authenticated, aborting call.")
        return self.nebula.authenticate(f"{name}:{password}")

    def authenticate_session(self, session):
        """The :class:`~nebtwist.core.objects.User` of a ``user:password``
        session string (XML-RPC's first parameter), checked sessions cached
        (:meth:`nebtwist.core.nebula.Nebula.authenticate`).

        :raises AuthenticationError: malformed, unknown user, wrong password,
            disabled.
        """
        return self.nebula.authenticate(session)

    def vm_get(self, actor, vid):
        """The :class:`~nebtwist.core.objects.VirtualMachine` ``vid`` (USE).

        :raises NoSuchObject: no such VM.
        :raises AuthorizationError: the user may not use it.
        """
        return self._vm(actor, int(vid), "USE")

    def vm_list(self, actor, include_done=False):
        """The VMs the user may use, by id (DONE ones only with ``include_done``)."""
        vms = self._filter(actor, self.nebula.vmpool.objects.values(), _ALL)
        if not include_done:
            vms = [vm for vm in vms if vm.state != DONE]
        return sorted(vms, key=lambda vm: vm.oid)

    def image_get(self, actor, iid):
        """The :class:`~nebtwist.core.images.Image` ``iid`` (USE).

        :raises NoSuchObject: no such image.
        :raises AuthorizationError: the user may not use it.
        """
        return self._image(actor, int(iid), "USE")

    def image_list(self, actor):
        """The images the user may use, by id."""
        return sorted(self._filter(actor, self.nebula.imagepool.objects.values(), _ALL),
                      key=lambda i: i.oid)

    def vnet_get(self, actor, nid):
        """The :class:`~nebtwist.core.objects.VirtualNetwork` ``nid`` (USE).

        :raises NoSuchObject: no such network.
        :raises AuthorizationError: the user may not use it.
        """
        vnet = self.nebula.vnpool.get(int(nid))
        if not self.nebula.can_use(actor, vnet):
            raise AuthorizationError(
                f"User [{actor.oid}] : Not authorized to perform USE NET [{vnet.oid}].")
        return vnet

    def vnet_list(self, actor):
        """The virtual networks the user may use, by id."""
        return sorted(self._filter(actor, self.nebula.vnpool.objects.values(), _ALL),
                      key=lambda v: v.oid)

    def host_list(self, actor):
        """Every host, by id (any user may list hosts, as ``one.hostpool.info``)."""
        return sorted(self.nebula.hostpool.objects.values(), key=lambda h: h.oid)

    def template_list(self, actor):
        """The VM templates the user may use, by id."""
        return sorted(self._filter(actor, self.nebula.tplpool.objects.values(), _ALL),
                      key=lambda t: t.oid)

    def template_get(self, actor, tid):
        """The :class:`~nebtwist.core.vmtemplates.VMTemplate` ``tid`` (USE).

        :raises NoSuchObject: no such template.
        :raises AuthorizationError: the user may not use it.
        """
        return self._vmtemplate(actor, int(tid), "USE")
