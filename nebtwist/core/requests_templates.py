"""The ``one.template.*`` and ``one.templatepool.info`` operations (OpenNebula
3.4 ``src/rm/RequestManagerVMTemplate.cc``), mixed into
:class:`nebtwist.core.requests.Requests`.

Stored VM templates (:class:`~nebtwist.core.vmtemplates.VMTemplate`):
allocate, info, update, delete, and instantiate (through the
DispatchManager, ``self.dm``).
"""

from nebtwist.core.images import _check_create, _denied
from nebtwist.core.objects import ONEADMIN_GROUP
from nebtwist.core.requests_images import _ALL, _store_template
from nebtwist.core.templates import check_restricted, max_template_size, parse_template
from nebtwist.core.vmtemplates import VMTemplate
from nebtwist.errors import APIError, ActionError


class TemplateRequests:
    """``one.template.*`` operations, mixed into
    :class:`nebtwist.core.requests.Requests` (which provides ``nebula``,
    ``dm`` and ``_filter``).

    Authorization as 3.4 (``src/rm/RequestManagerVMTemplate.cc``): info and
    instantiate need USE, update and delete need MANAGE.
    """

    def _vmtemplate(self, actor, tid, op="MANAGE"):
        tmpl = self.nebula.tplpool.get(tid)
        allowed = (self.nebula.can_use if op == "USE" else self.nebula.can_manage)(actor, tmpl)
        if not allowed:
            raise _denied(actor, op, "TEMPLATE", tid)
        return tmpl

    async def template_allocate(self, actor, text):
        """Store a VM template; returns its id.

        A user outside oneadmin's group may not give a ``VM_RESTRICTED_ATTR``
        (OpenNebula 4.x ``TemplateAllocate``; 3.4 checked at instantiation).

        :raises APIError: malformed template or no NAME.
        :raises AuthorizationError: a restricted attribute.
        :raises ActionError: the user already has a template of that name.
        """
        template = parse_template(text, "VM template", max_template_size(self.nebula.config))
        check_restricted(self.nebula, actor, template)
        _check_create(self.nebula, actor, "TEMPLATE")
        name = template.get("NAME")
        if not isinstance(name, str) or not name.strip():
            raise APIError("No NAME in template.")
        pool = self.nebula.tplpool
        other = pool.find(name, actor.oid)
        if other is not None:
            raise ActionError(f"Error allocating a new template. NAME is already taken by "
                              f"TEMPLATE {other.oid}.")
        group = self.nebula.grouppool.objects.get(actor.gid)
        oid = pool.reserve_oid()
        tmpl = VMTemplate(oid, name, actor.oid, actor.gid, actor.name,
                          group.name if group else "", template=template,
                          regtime=int(self.nebula.clock.seconds()))
        try:
            await pool.insert(tmpl)
        except BaseException:
            pool.release_oid(oid)
            raise
        return oid

    def template_info(self, actor, tid):
        """``<VMTEMPLATE>`` (USE)."""
        return self._vmtemplate(actor, tid, "USE").info()

    async def template_delete(self, actor, tid):
        """Delete a VM template (MANAGE); VMs made from it are not touched."""
        await self.nebula.tplpool.remove(self._vmtemplate(actor, tid))
        return tid

    async def template_update(self, actor, tid, text):
        """Replace a VM template's contents (MANAGE); its name is kept. A user
        outside oneadmin's group may not give a ``VM_RESTRICTED_ATTR``
        (OpenNebula 4.x ``RequestManagerUpdateTemplate``)."""
        tmpl = self._vmtemplate(actor, tid)
        template = parse_template(text, "VM template", max_template_size(self.nebula.config))
        check_restricted(self.nebula, actor, template)
        await _store_template(self.nebula.tplpool, tmpl, template)
        return tid

    async def template_instantiate(self, actor, tid, name="", hold=False, extra=""):
        """Create a VM from a stored template (USE); returns the VM id.

        The VM's template is a copy of the stored one with NAME set to
        ``name`` when given and TEMPLATE_ID added; ``extra`` (template text)
        adds or replaces attributes (later OpenNebula versions' argument);
        ``hold`` leaves the VM in HOLD. The VM belongs to the caller
        (3.4 ``VMTemplateInstantiate``). Errors are those of one.vm.allocate.

        ``VM_RESTRICTED_ATTR``, for a caller outside oneadmin's group: a
        template owned by oneadmin's group may hold restricted attributes
        (3.4 checks only templates of other owners), the ``extra`` attributes
        may not (later versions check the caller's additions).
        """
        tmpl = self._vmtemplate(actor, tid, "USE")
        template = tmpl.template.copy()
        if extra:
            added = parse_template(extra, "extra template",
                                   max_template_size(self.nebula.config))
            check_restricted(self.nebula, actor, added)
            template.replace_from(added)
        if not (tmpl.uid == 0 or tmpl.gid == ONEADMIN_GROUP):
            check_restricted(self.nebula, actor, tmpl.template)
        if name:
            template.set("NAME", name)
        template.set("TEMPLATE_ID", str(tmpl.oid))
        vm = await self.dm.allocate(actor, template.to_text(), check_restricted_attrs=False)
        if hold:
            await self.dm.action(vm, "hold")
        return vm.oid

    def templatepool_info(self, actor, flag=_ALL, start=-1, end=-1):
        """``<VMTEMPLATE_POOL>`` filtered by the 3.4 flags."""
        pool = self.nebula.tplpool
        return pool.dump(self._filter(actor, sorted(pool, key=lambda t: t.oid), flag, start,
                                      end))


__all__ = ["TemplateRequests"]
