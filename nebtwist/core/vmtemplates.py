"""VM templates: the pool object (OpenNebula 3.4 ``src/vm_template/``).

:class:`VMTemplate` is a pool object whose body follows the 3.4 schema
``vmtemplate.xsd`` (reference section 1.7); it is stored in the
``template_pool`` table. The ``one.template.*`` operations are in
:mod:`nebtwist.core.requests_templates`.
"""

from lxml import etree

from nebtwist.core.objects import Owned, _int, _sub, _text
from nebtwist.template import Template


class VMTemplate(Owned):
    """A 3.4 VM template (``src/vm_template/VMTemplate.cc``): a VM template
    stored to be instantiated later. Its TEMPLATE keeps NAME, as 3.x does."""

    TABLE = "template_pool"
    ROOT = "VMTEMPLATE"

    def __init__(self, oid, name, uid, gid, uname, gname, permissions=None, template=None,
                 regtime=0):
        super().__init__(oid, name, uid, gid, uname, gname, permissions, template)
        self.regtime = regtime

    def to_xml(self):
        root = etree.Element("VMTEMPLATE")
        _sub(root, "ID", self.oid)
        self._xml_owner(root)
        _sub(root, "REGTIME", self.regtime)
        root.append(self.template.to_xml())
        return root

    @classmethod
    def from_xml(cls, el):
        return cls(_int(el, "ID"), _text(el, "NAME"),
                   template=Template.from_xml(el.find("TEMPLATE")), regtime=_int(el, "REGTIME"),
                   **cls._read_owner(el))


__all__ = ["VMTemplate"]
