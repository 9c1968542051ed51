"""The OGF OCCI 1.1 front (GFD.183 Core, GFD.184 Infrastructure, GFD.185 HTTP
rendering) over nebtwist's VMs, virtual networks and images.

* :mod:`~nebtwist.api.occi.rendering` -- the four structures, parsed and
  written (``text/plain``, ``text/occi``, ``text/uri-list``);
* :mod:`~nebtwist.api.occi.model` -- the Kinds, Mixins and Actions offered;
* :mod:`~nebtwist.api.occi.entities` -- nebtwist objects as OCCI entities;
* :mod:`~nebtwist.api.occi.build` -- create requests as nebtwist templates;
* :mod:`~nebtwist.api.occi.resource` -- the ``twisted.web`` resource
  (paths, actions, status codes, authentication);
* :mod:`~nebtwist.api.occi.front` -- the plug-in (NAME ``occi``), light to
  import: the rest is imported when the front starts.

The front only translates: every operation goes through the core's
:class:`~nebtwist.core.requests.Requests`, which decides.
"""
