"""The ``one.*`` method tables of the XML-RPC front.

Each table maps OpenNebula's method names (3.4, ``src/rm/RequestManager.cc``
and the request classes it registers) to ``(MessageName, [Signature, ...])``:
the request class name 3.4 puts in its error messages, and the parameter
lists accepted (3.4's, plus the forms older and newer clients send, first
match wins), each bound to an operation of the core's requests layer
(:class:`nebtwist.core.requests.Requests`).

Image and VM template methods (:func:`image_methods`) take these forms
besides 3.4's:

* ``one.image.allocate``: 3.4 (template, datastore id) and 2.x/3.0
  (template) -- the default image datastore;
* pool infos: (filter, start, end) of 3.4, or 2.x's single filter;
* ``info``: a trailing boolean (today's ``decrypt``) is ignored;
* ``update``: a trailing int (today's replace/merge flag) is ignored
  (the 3.4 behaviour, replace, is kept);
* ``one.template.instantiate``: (id, name) of 3.4, plus today's ``hold``
  and extra template.
"""

import itertools

from nebtwist.core.groups import OWNED_KINDS


class Signature:
    """One accepted parameter list: types after the session, and a binder.

    :param types: string of ``i`` (int, not bool), ``s`` (str), ``b`` (bool
        or 0/1); optional trailing parameters are listed after ``|``.
    :param bind: ``(user, *args) -> awaitable or value`` calling the core.
    """

    def __init__(self, types, bind):
        required, _, optional = types.partition("|")
        self.required = required
        self.optional = optional
        self.bind = bind

    def matches(self, args):
        n = len(args)
        if not len(self.required) <= n <= len(self.required) + len(self.optional):
            return False
        return all(_is(t, a) for t, a in zip(self.required + self.optional, args))

    def describe(self):
        opt = f"[, {', '.join(_TYPE_NAMES[t] for t in self.optional)}]" if self.optional else ""
        return "(session" + "".join(", " + _TYPE_NAMES[t] for t in self.required) + opt + ")"


_TYPE_NAMES = {"i": "int", "s": "string", "b": "bool"}


def _is(t, value):
    if t == "i":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "s":
        return isinstance(value, str)
    if t == "b":
        return isinstance(value, bool) or (isinstance(value, int) and value in (0, 1))
    return False


def core_methods(r):
    """The ``one.user*``, ``one.group.info``, ``one.host*``, ``one.vn*``,
    ``one.vm*`` and ``one.system.*`` methods for requests ``r``."""
    S = Signature
    return {
        # users and groups
        "one.user.allocate": ("UserAllocate", [
            S("ss|s", lambda u, n, p, d="core": r.user_allocate(u, n, p, d))]),
        "one.user.delete": ("UserDelete", [S("i", r.user_delete)]),
        "one.user.info": ("UserInfo", [S("i|b", lambda u, i, *_: r.user_info(u, i))]),
        "one.user.passwd": ("UserChangePassword", [S("is", r.user_passwd)]),
        "one.userpool.info": ("UserPoolInfo", [S("", r.userpool_info)]),
        "one.group.info": ("GroupInfo", [S("i|b", lambda u, i, *_: r.group_info(u, i))]),
        "one.grouppool.info": ("GroupPoolInfo", [S("", r.grouppool_info)]),
        # hosts
        "one.host.allocate": ("HostAllocate", [
            S("ssss", lambda u, n, im, vmm, tm: r.host_allocate(u, n, im, vmm, "dummy", tm)),
            S("sssi", lambda u, n, im, vmm, c: r.host_allocate(u, n, im, vmm, "dummy",
                                                                None, c)),
            S("ssssi", lambda u, n, im, vmm, vnm, c: r.host_allocate(
                u, n, im, vmm, vnm, None, c)),
        ]),
        "one.host.delete": ("HostDelete", [S("i", r.host_delete)]),
        "one.host.info": ("HostInfo", [S("i|b", lambda u, i, *_: r.host_info(u, i))]),
        "one.host.enable": ("HostEnable", [S("ib", lambda u, i, e: r.host_enable(
            u, i, bool(e)))]),
        "one.hostpool.info": ("HostPoolInfo", [S("", r.hostpool_info)]),
        # virtual networks
        "one.vn.allocate": ("VirtualNetworkAllocate", [S("s|i", r.vn_allocate)]),
        "one.vn.delete": ("VirtualNetworkDelete", [S("i", r.vn_delete)]),
        "one.vn.info": ("VirtualNetworkInfo", [S("i|b", lambda u, i, *_: r.vn_info(u, i))]),
        "one.vnpool.info": ("VirtualNetworkPoolInfo", [S("|iii", r.vnpool_info)]),
        # virtual machines
        "one.vm.allocate": ("VirtualMachineAllocate", [
            S("s|b", lambda u, t, *_: r.vm_allocate(u, t))]),
        "one.vm.deploy": ("VirtualMachineDeploy", [
            S("ii|bis", lambda u, v, h, *_: r.vm_deploy(u, v, h))]),
        "one.vm.action": ("VirtualMachineAction", [S("si", r.vm_action)]),
        # 5.x (id, int op) and 4.2 (id, bool success); 0/1 mean the same in both
        "one.vm.recover": ("VirtualMachineRecover", [S("ii", r.vm_recover),
                                                     S("ib", r.vm_recover)]),
        "one.vm.migrate": ("VirtualMachineMigrate", [
            S("iib|bii", lambda u, v, h, live, *_: r.vm_migrate(u, v, h, live))]),
        "one.vm.info": ("VirtualMachineInfo", [S("i|b", lambda u, i, *_: r.vm_info(u, i))]),
        "one.vmpool.info": ("VirtualMachinePoolInfo", [
            S("|iiiis", lambda u, f=-2, s=-1, e=-1, st=-1, *_: r.vmpool_info(
                u, f, s, e, st))]),
        # system
        "one.system.version": ("SystemVersion", [S("", r.system_version)]),
        "one.system.config": ("SystemConfig", [S("", r.system_config)]),
    }


def image_methods(r, Signature):
    """The ``one.image*`` and ``one.template*`` table for requests ``r``
    (:class:`nebtwist.core.requests_images.ImageRequests`,
    :class:`nebtwist.core.requests_templates.TemplateRequests`)."""
    S = Signature
    return {
        "one.image.allocate": ("ImageAllocate", [S("s|i", r.image_allocate)]),
        "one.image.delete": ("ImageDelete", [S("i", r.image_delete)]),
        "one.image.info": ("ImageInfo", [S("i|b", lambda u, i, *_: r.image_info(u, i))]),
        "one.image.update": ("ImageUpdateTemplate", [
            S("is|i", lambda u, i, t, *_: r.image_update(u, i, t))]),
        "one.image.enable": ("ImageEnable", [
            S("ib", lambda u, i, e: r.image_enable(u, i, bool(e)))]),
        "one.image.persistent": ("ImagePersistent", [
            S("ib", lambda u, i, p: r.image_persistent(u, i, bool(p)))]),
        "one.image.chtype": ("ImageChangeType", [S("is", r.image_chtype)]),
        "one.imagepool.info": ("ImagePoolInfo", [S("|iii", r.imagepool_info)]),
        "one.template.allocate": ("TemplateAllocate", [S("s", r.template_allocate)]),
        "one.template.info": ("TemplateInfo", [
            S("i|b", lambda u, i, *_: r.template_info(u, i))]),
        "one.template.delete": ("TemplateDelete", [S("i", r.template_delete)]),
        "one.template.update": ("TemplateUpdateTemplate", [
            S("is|i", lambda u, i, t, *_: r.template_update(u, i, t))]),
        "one.template.instantiate": ("VMTemplateInstantiate", [
            S("is|bs", lambda u, i, n, hold=False, extra="": r.template_instantiate(
                u, i, n, bool(hold), extra))]),
        "one.templatepool.info": ("TemplatePoolInfo", [S("|iii", r.templatepool_info)]),
    }


def group_methods(r, Signature):
    """The ``one.group.allocate/delete``, ``one.user.chgrp/chauth/enable``,
    ``one.acl.*`` and ``one.<kind>.chown/chmod`` methods
    (:class:`nebtwist.core.groups.PermissionRequests`).

    ``one.<kind>.chown/chmod`` are listed only for kinds whose pool the
    core has (``one.image.*`` once there is an image pool).
    """
    S = Signature
    table = {
        "one.group.allocate": ("GroupAllocate", [S("s", r.group_allocate)]),
        "one.group.delete": ("GroupDelete", [S("i", r.group_delete)]),
        "one.user.chgrp": ("UserChown", [S("ii", r.user_chgrp)]),
        "one.user.chauth": ("UserChangeAuth", [S("is|s", r.user_chauth)]),
        "one.user.enable": ("UserEnable", [
            S("ib", lambda u, i, e: r.user_enable(u, i, bool(e)))]),
        "one.acl.addrule": ("AclAddRule", [
            S("".join(types) + "|s", r.acl_addrule)
            for types in itertools.product("si", repeat=3)]),
        "one.acl.delrule": ("AclDelRule", [S("i", r.acl_delrule)]),
        "one.acl.info": ("AclInfo", [S("", r.acl_info)]),
    }
    for prefix in r.owned_kinds():
        stem = OWNED_KINDS[prefix][2]
        table[f"one.{prefix}.chown"] = (f"{stem}Chown", [S(
            "iii", lambda u, o, uid, gid, p=prefix: r.chown(u, p, o, uid, gid))])
        table[f"one.{prefix}.chmod"] = (f"{stem}Chmod", [S(
            "i" * 10, lambda u, o, *bits, p=prefix: r.chmod(u, p, o, *bits))])
    return table


#: The tables served, in order (a later table's entry replaces an earlier one's):
#: callables ``(requests, Signature) -> {method: (MessageName, [Signature, ...])}``.
TABLES = [lambda r, _S: core_methods(r), image_methods, group_methods]


def method_table(requests):
    """Every ``one.*`` method served, for ``requests`` (dict)."""
    table = {}
    for make in TABLES:
        table.update(make(requests, Signature))
    return table
