"""XML-RPC methods of the image repository and VM templates.

:func:`image_methods` is one of :data:`nebtwist.api.xmlrpc.EXTRA_TABLES`:
it maps OpenNebula 3.4's method names (reference section 1.5) to the
operations of :class:`nebtwist.core.requests_images.ImageRequests` and
:class:`nebtwist.core.requests_templates.TemplateRequests`, with the 3.4
signatures plus the forms other clients send:

* ``one.image.allocate``: 3.4 (template, datastore id) and 2.x/3.0
  (template) -- the default image datastore;
* pool infos: (filter, start, end) of 3.4, or 2.x's single filter;
* ``info``: a trailing boolean (today's ``decrypt``) is ignored;
* ``update``: a trailing int (today's replace/merge flag) is ignored
  (the 3.4 behaviour, replace, is kept);
* ``one.template.instantiate``: (id, name) of 3.4, plus today's ``hold``
  and extra template.

The message names in errors are 3.4's request class names
(``src/rm/RequestManager*.cc``).
"""


def image_methods(r, Signature):
    """The ``one.image*`` and ``one.template*`` table for requests ``r``."""
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
