"""The XML-RPC core API: OpenNebula's ``one.*`` methods on ``/RPC2``.

The RequestManager parses and type-checks each call, authenticates the
session string (its first parameter), calls :class:`nebtwist.core.requests.Requests`
and answers in OpenNebula 3.4's shape (``src/rm/Request.cc``)::

    [True, value, 0]                           # success
    [False, "[MethodName] message", code]      # failure

with the 3.4 codes of :mod:`nebtwist.errors`. Wrong arity or types answer
``0x1000`` naming the expected signature; a body that is not XML-RPC at all
gets an XML-RPC fault (Twisted's), and the server keeps serving.

Several generations of clients are accepted where they differ:

* ``one.host.allocate``: 1.4 (name, im, vmm, tm), 3.4 (name, im, vmm, vnm,
  cluster) and current (name, im, vmm, cluster) forms, told apart by arity
  and types; the CLI's (name, im, vmm, -1) is the current form.
* ``one.vm.action``: the 3.4 order (action, id); today's action names
  (``terminate`` ...) map to 3.4's.
* pool infos: 1.4's single filter argument, 3.4's (filter, start, end[, state])
  and current clients' extra arguments.
* ``one.vm.recover``: 5.x's operation code (0 failure, 1 success, 2 retry,
  3 delete) and 4.2's boolean (true success, false failure).
* ``one.vm.info``/``one.host.info``: a trailing boolean (current ``decrypt``)
  is accepted and ignored.
"""

from nebtwist.api.xmlrpc.front import XMLRPCFront, XMLRPCRequest
from nebtwist.api.xmlrpc.methods import Signature, method_table
from nebtwist.api.xmlrpc.resource import RequestManager

__all__ = ["RequestManager", "Signature", "method_table", "XMLRPCFront", "XMLRPCRequest"]
