"""User template text: parsing, size limits, restricted attributes, safe dirs.

The checks every operation that takes a template from a user makes before it
creates or changes anything (VMs, VM templates, images, networks): the text
parses (OpenNebula's template syntax or ``<TEMPLATE>`` XML) and is not over
oned.conf ``MAX_TEMPLATE_SIZE``; a user outside oneadmin's group gives no
attribute of oned.conf ``VM_RESTRICTED_ATTR`` / ``IMAGE_RESTRICTED_ATTR``
(OpenNebula 3.4 ``VirtualMachineAllocate``, ``ImageAllocate``; 4.x
``RequestManagerUpdateTemplate``) unless it names a file under
``IMAGE_SAFE_DIRS``; a VM's ``REQUIREMENTS`` and ``RANK`` compile.

Moved out of :mod:`nebtwist.core.dm` (and ``under_safe_dirs`` out of the
image module) so that the image, disk and VM template modules can use them
without importing the DispatchManager: this module imports no other
``nebtwist.core`` module.
"""

import os

from nebtwist.errors import APIError, AuthorizationError
from nebtwist.expr import ExpressionSyntaxError, compile_rank, compile_requirements
from nebtwist.template import Template, TemplateSyntaxError

#: Default of oned.conf ``MAX_TEMPLATE_SIZE`` (bytes; nebtwist's key, OpenNebula has none).
DEFAULT_MAX_TEMPLATE_SIZE = 1024 * 1024


def max_template_size(config):
    """oned.conf ``MAX_TEMPLATE_SIZE``: the largest template text (UTF-8 bytes)
    a user may give (VM, VM template, image, network; allocate, update and
    instantiate's extra attributes). Default 1 MiB; 0 or less: no limit."""
    return config.get_int("MAX_TEMPLATE_SIZE", DEFAULT_MAX_TEMPLATE_SIZE)


def check_template_size(text, what, limit):
    """Refuse ``text`` over ``limit`` UTF-8 bytes (None or <= 0: no limit).

    :raises APIError: naming the size, the limit and the oned.conf key.
    """
    if not limit or limit <= 0 or not isinstance(text, str) or len(text) * 4 <= limit:
        return
    size = len(text) if len(text) > limit else len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise APIError(f"The {what} is too large: {size} bytes or more, over the "
                       f"{limit} bytes allowed (MAX_TEMPLATE_SIZE in oned.conf).")


def parse_template(text, what="template", limit=None):
    """Parse user template text (template syntax or ``<TEMPLATE>`` XML).

    :param limit: the largest text accepted, in UTF-8 bytes
        (:func:`max_template_size`; None: no limit), checked before parsing.
    :raises APIError: a text over ``limit``; naming the line and column of a
        syntax error; or an attribute name that cannot be an XML element
        (``1A = x``), which the body of the new object could not hold.
    """
    if not isinstance(text, str):
        raise APIError(f"The {what} must be a string.")
    check_template_size(text, what, limit)
    try:
        template = Template.parse_any(text)
    except TemplateSyntaxError as e:
        raise APIError(f"Parse error in {what}: {e}") from None
    try:
        template.to_xml()
    except ValueError as e:
        raise APIError(f"Wrong attribute name in {what}: {e}.") from None
    return template


#: OpenNebula's shipped ``VM_RESTRICTED_ATTR`` (oned.conf), used when oned.conf
#: names none: attributes only oneadmin and its group may give a VM.
VM_RESTRICTED_DEFAULT = ("CONTEXT/FILES", "DISK/SOURCE", "NIC/MAC", "NIC/VLAN_ID", "RANK")
#: OpenNebula's shipped ``IMAGE_RESTRICTED_ATTR``.
IMAGE_RESTRICTED_DEFAULT = ("SOURCE",)


def restricted_attributes(config, key):
    """oned.conf's ``VM_RESTRICTED_ATTR`` or ``IMAGE_RESTRICTED_ATTR`` list
    (one value per line, ``NAME`` or ``VECTOR/NAME``, as OpenNebula's
    oned.conf). A file that names none gets OpenNebula's shipped list
    (:data:`VM_RESTRICTED_DEFAULT`, :data:`IMAGE_RESTRICTED_DEFAULT`);
    ``KEY = ""`` restricts nothing."""
    values = [v for v in config.template.get_all(key) if isinstance(v, str)]
    if not values:
        return VM_RESTRICTED_DEFAULT if key == "VM_RESTRICTED_ATTR" else IMAGE_RESTRICTED_DEFAULT
    return tuple(v.strip().upper() for v in values if v.strip())


def find_restricted(template, attributes, allowed=None):
    """The first of ``attributes`` that ``template`` gives, or None.

    As OpenNebula's ``Template::check`` (3.4 ``src/template/Template.cc``): a
    single attribute counts when present; ``VECTOR/NAME`` when a ``VECTOR``
    value has a non-empty ``NAME``.

    :param allowed: optional ``allowed(attribute, value) -> bool``; a value it
        accepts does not count (see :func:`check_restricted`).
    """
    for attribute in attributes:
        name, _, sub = attribute.partition("/")
        for value in template.get_all(name):
            if not sub:
                return attribute
            if isinstance(value, dict) and str(value.get(sub, "")).strip():
                if allowed is not None and allowed(attribute, value[sub]):
                    continue
                return attribute
    return None


def check_restricted(nebula, user, template, key="VM_RESTRICTED_ATTR", what="VM Template"):
    """Refuse ``template`` from ``user`` outside oneadmin's group if it gives
    an attribute of oned.conf's ``key`` (OpenNebula 3.4
    ``VirtualMachineAllocate`` / ``ImageAllocate``; allocate, instantiate and
    update in later versions).

    A ``DISK/SOURCE`` naming a file under oned.conf ``IMAGE_SAFE_DIRS`` is
    not refused: the folders from which the same user may register local image
    files (the shipped file names the 1.4 tutorial's ``/srv/cloud/images``).
    Any other front-end path is, so ``/etc/shadow`` never reaches a VM disk.

    :raises AuthorizationError: "VM Template includes a restricted attribute
        DISK/SOURCE." (OpenNebula's message).
    """
    if nebula.is_admin(user):
        return
    safe_dirs = (nebula.config.get("IMAGE_SAFE_DIRS") or "").split()

    def allowed(attribute, value):
        return attribute == "DISK/SOURCE" and under_safe_dirs(value, safe_dirs)

    found = find_restricted(template, restricted_attributes(nebula.config, key), allowed)
    if found is not None:
        raise AuthorizationError(f"{what} includes a restricted attribute {found}.")


def compile_expressions(vm, template):
    """Compile ``REQUIREMENTS`` and ``RANK`` of ``template`` onto ``vm``.

    :raises APIError: an expression that does not parse.
    """
    try:
        req = template.get_str("REQUIREMENTS")
        vm.requirements = compile_requirements(req) if req else None
        rank = template.get_str("RANK")
        vm.rank = compile_rank(rank) if rank else None
    except ExpressionSyntaxError as e:
        raise APIError(f"Wrong expression in template: {e}") from None


def under_safe_dirs(path, safe_dirs):
    """True when ``path`` is absolute and, symbolic links resolved, lies in
    one of the folders ``safe_dirs`` (oned.conf ``IMAGE_SAFE_DIRS``)."""
    path = str(path).strip()
    if not os.path.isabs(path):
        return False
    real = os.path.realpath(path)
    for folder in safe_dirs:
        base = os.path.realpath(folder)
        if real == base or real.startswith(base.rstrip(os.sep) + os.sep):
            return True
    return False
