"""EC2 instance types: Mako templates rendering OpenNebula VM templates.

econe.conf declares each type with ``VM_TYPE = [ NAME = "m1.small",
TEMPLATE = "m1.small.mako" ]``; the file is looked up in the
``ec2query_templates`` folder(s) (an admin's folder first, then the shipped
``conf/ec2query_templates``). This replaces OpenNebula 3.4's ERB templates
(``src/cloud/ec2/lib/EC2QueryServer.rb`` ``run_instances``, which renders
``<type>.erb`` with ``erb_vm_info`` and ``erb_user_name``; reference section
7.1). Templates are compiled with ``strict_undefined=True``, so a misspelt
name fails instead of rendering as empty.

Variables a template receives (all keyword arguments of :meth:`VMTypes.render`):

============== ==============================================================
image_id       int: the image's id (``ami-00000042`` -> 42); 3.4 ``:img_id``
image_path     str or None: the image's SOURCE path; 1.4 ``:img_path``
instance_type  str: the type's NAME (``m1.small``); 3.4 ``:instance_type``
user_data      str or None: EC2 UserData, base64 as the client sent it
key_name       str or None: the key pair's name
public_key     str or None: the key pair's public key (OpenSSH text)
user           str: the requesting user's name; 3.4 ``erb_user_name``
user_id        int or None: the requesting user's id
network        str or None: econe.conf ``NETWORK`` (the NIC's network name)
vm_name        str: the VM's NAME (default ``eco-vm``, as 3.4's template)
device_prefix  str: oned.conf ``DEFAULT_DEVICE_PREFIX`` (``hd``); CONTEXT
               TARGET is ``device_prefix + "b"``
q              function: ``q(value)`` -> ``"value"`` double-quoted and escaped
               for the template syntax
============== ==============================================================
"""

import re

from mako import exceptions as mako_exceptions
from mako.lookup import TemplateLookup

from nebtwist.template import Template, TemplateSyntaxError, _quote

#: Documented render variables and their defaults (None = absent).
VARIABLES = ("image_id", "image_path", "instance_type", "user_data", "key_name",
             "public_key", "user", "user_id", "network", "vm_name")

#: Sample values for the start-up trial renders: every optional value given,
#: then every optional value absent.
_SAMPLE_FULL = dict(image_id=0, image_path="/var/lib/one/images/sample", user_data="c2FtcGxl",
                    key_name="sample", public_key="ssh-rsa AAAA sample", user="oneadmin",
                    user_id=0, network="sample", vm_name="eco-vm")
_SAMPLE_BARE = dict(image_id=0, user="oneadmin")


class VMTypeError(Exception):
    """A VM type's template cannot be found, compiled, rendered or parsed.

    Attributes: ``type_name``, ``path`` (the template file, or None),
    ``line`` (1-based line in that file, or None) and ``reason``.
    ``str(error)`` is ``"VM type m1.small: /path/m1.small.mako, line 3: <reason>"``.
    """

    def __init__(self, type_name, path, line, reason):
        self.type_name = type_name
        self.path = path
        self.line = line
        self.reason = reason
        where = path or "?"
        if line is not None:
            where += f", line {line}"
        super().__init__(f"VM type {type_name}: {where}: {reason}")


class UnknownVMType(KeyError):
    """No VM_TYPE has this NAME (the EC2 front answers InvalidParameterValue).

    Attributes: ``type_name`` and ``known`` (sorted names).
    """

    def __init__(self, type_name, known):
        self.type_name = type_name
        self.known = sorted(known)
        super().__init__(type_name)

    def __str__(self):
        return (f"unknown instance type {self.type_name!r} "
                f"(known: {', '.join(self.known) or 'none'})")


def _render_error_location(paths):
    """(path, line) of the innermost traceback frame in a template file,
    from the exception being handled (Mako maps module lines back to
    template lines)."""
    tb = mako_exceptions.RichTraceback()
    found = (None, None)
    for filename, lineno, _function, _line in tb.traceback:
        if filename in paths:
            found = (filename, lineno)
    return found


def _undefined_name(error):
    """The identifier a NameError is about (Mako's message is
    ``"'x' is not defined"``), or None."""
    name = getattr(error, "name", None)
    if name:
        return name
    match = re.match(r"'(\w+)' is not defined", str(error))
    return match.group(1) if match else None


def _first_use(source, name):
    """1-based line of the first non-comment use of identifier ``name`` in
    the template ``source`` (None if not found)."""
    if not name:
        return None
    pattern = re.compile(r"(?<![\w.])" + re.escape(name) + r"\b")
    for number, text in enumerate(source.splitlines(), 1):
        if not text.lstrip().startswith("##") and pattern.search(text):
            return number
    return None


class VMTypes:
    """The instance types of econe.conf, compiled.

    Build with :meth:`load`. ``names()`` lists the types; :meth:`render`
    renders one.
    """

    def __init__(self, templates, device_prefix="hd", network=None):
        #: type name -> (mako Template, file path)
        self._templates = templates
        self.device_prefix = device_prefix
        self.network = network

    @classmethod
    def load(cls, econe_config, templates_dir, device_prefix="hd"):
        """Compile and trial-render every ``VM_TYPE`` of ``econe_config``.

        :param econe_config: a :class:`nebtwist.core.config.Config` (e.g. from
            :func:`nebtwist.core.config.load_econe`); its ``VM_TYPE`` vectors
            (``NAME``, ``TEMPLATE``) and ``NETWORK`` are used.
        :param templates_dir: folder, or list of folders searched in order,
            holding the ``.mako`` files.
        :param device_prefix: oned.conf ``DEFAULT_DEVICE_PREFIX``.
        :raises VMTypeError: a VM_TYPE without NAME or TEMPLATE, a duplicate
            NAME, a missing file, a Mako syntax error (file and line), a
            failure rendering sample values (file and line), or a rendered
            text that is not a valid template.
        """
        dirs = [templates_dir] if isinstance(templates_dir, str) else list(templates_dir)
        lookup = TemplateLookup(directories=dirs, strict_undefined=True,
                                input_encoding="utf-8")
        templates = {}
        for vector in econe_config.vectors("VM_TYPE"):
            name = vector.get("NAME")
            filename = vector.get("TEMPLATE")
            if not name or not filename:
                raise VMTypeError(name or "?", getattr(econe_config, "path", None), None,
                                  "VM_TYPE needs NAME and TEMPLATE")
            if name in templates:
                raise VMTypeError(name, getattr(econe_config, "path", None), None,
                                  "VM_TYPE NAME given twice")
            try:
                template = lookup.get_template("/" + filename.lstrip("/"))
            except mako_exceptions.TopLevelLookupException:
                raise VMTypeError(name, filename, None,
                                  f"template file not found in {', '.join(dirs)}") from None
            except (mako_exceptions.SyntaxException, mako_exceptions.CompileException) as e:
                raise VMTypeError(name, e.filename, e.lineno,
                                  f"syntax error: {str(e).split(' in file ')[0]}") from None
            templates[name] = (template, template.filename)
        network = econe_config.get("NETWORK") or None
        types = cls(templates, device_prefix=device_prefix, network=network)
        for name in templates:
            types.render(name, **_SAMPLE_FULL)
            types.render(name, **_SAMPLE_BARE)
        return types

    def names(self):
        """The type names (list of str, sorted)."""
        return sorted(self._templates)

    def __contains__(self, name):
        return name in self._templates

    def render(self, type_name, **variables):
        """Render type ``type_name`` into VM template text.

        :param variables: the documented variables (module docstring);
            ``image_id`` and ``user`` are required, the others default to
            None (``instance_type`` to ``type_name``, ``vm_name`` to
            ``eco-vm``, ``network`` to econe.conf ``NETWORK``).
        :return: str, text that :meth:`nebtwist.template.Template.parse` accepts.
        :raises UnknownVMType: no such type.
        :raises TypeError: an undocumented or missing required variable.
        :raises VMTypeError: the template failed while rendering (file and
            line), or its output is not valid template syntax.
        """
        if type_name not in self._templates:
            raise UnknownVMType(type_name, self._templates)
        unknown = set(variables) - set(VARIABLES)
        if unknown:
            raise TypeError(f"unknown VM type variables: {', '.join(sorted(unknown))}")
        missing = {"image_id", "user"} - set(variables)
        if missing:
            raise TypeError(f"missing VM type variables: {', '.join(sorted(missing))}")
        values = dict.fromkeys(VARIABLES)
        values.update(instance_type=type_name, vm_name="eco-vm", network=self.network)
        values.update(variables)
        values["image_id"] = int(values["image_id"])
        template, path = self._templates[type_name]
        try:
            text = template.render_unicode(device_prefix=self.device_prefix,
                                           q=lambda v: _quote(str(v)), **values)
        except Exception as e:
            fpath, line = _render_error_location({path})
            if isinstance(e, NameError) and not line:
                # strict_undefined raises before the body runs (line 0):
                # point at the first line using the name.
                fpath, line = path, _first_use(template.source, _undefined_name(e))
            raise VMTypeError(type_name, fpath or path, line,
                              f"render failed: {type(e).__name__}: {e}") from None
        try:
            Template.parse(text)
        except TemplateSyntaxError as e:
            raise VMTypeError(type_name, path, None,
                              f"rendered text is not a valid template: {e}") from None
        return text
