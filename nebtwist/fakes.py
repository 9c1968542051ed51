"""In-memory fake drivers, for unit tests of the managers.

Each fake implements its driver interface and records every call as a
:class:`Call` whose Deferred the test resolves (``call.succeed(value)``,
``call.fail(message)``), so a test decides when and how a driver answers
without spawning processes. The MAD adapters in :mod:`nebtwist.mad` are the
real implementations; :mod:`nebtwist.testing` fakes the process layer beneath
them instead.
"""

from twisted.internet import defer
from zope.interface import implementer

from nebtwist.errors import DriverError
from nebtwist.interfaces import (IHookDriver, IInformationDriver, ITransferDriver,
                                 IVirtualMachineDriver, IVirtualNetworkDriver)


class Call:
    """One recorded driver call.

    :ivar method: the interface method name (``"deploy"``, ``"transfer"`` ...).
    :ivar oid: the VM or host id.
    :ivar args: the other arguments (a VMMAction, a script path, ...).
    :ivar deferred: what the caller holds.
    """

    def __init__(self, method, oid, args):
        self.method = method
        self.oid = oid
        self.args = args
        self.deferred = defer.Deferred()

    def succeed(self, value=None):
        """Answer SUCCESS with ``value``."""
        self.deferred.callback(value)

    def fail(self, message="failed"):
        """Answer FAILURE with ``message`` (a DriverError)."""
        self.deferred.errback(DriverError(message))

    def __repr__(self):
        return f"Call({self.method!r}, {self.oid!r})"


class _Recorder:
    def __init__(self, name, auto=None):
        self.name = name
        self.calls = []
        self.auto = dict(auto or {})

    def _record(self, method, oid, *args):
        call = Call(method, oid, args)
        self.calls.append(call)
        if method in self.auto:
            value = self.auto[method]
            if isinstance(value, DriverError):
                call.fail(value.message)
            else:
                call.succeed(value(oid, *args) if callable(value) else value)
        return call.deferred

    def pending(self, method=None):
        """Calls not answered yet (of ``method`` if given)."""
        return [c for c in self.calls if not c.deferred.called
                and (method is None or c.method == method)]

    def last(self, method):
        """The most recent call of ``method``; raises LookupError if none."""
        for call in reversed(self.calls):
            if call.method == method:
                return call
        raise LookupError(f"no {method} call")


@implementer(IVirtualMachineDriver)
class FakeVirtualMachineDriver(_Recorder):
    """A VMM driver that records calls.

    :param auto: ``method -> value`` to answer at once (a callable gets
        ``(vm_id, action)``; a DriverError fails the call).
    """

    def deploy(self, vm_id, action):
        return self._record("deploy", vm_id, action)

    def shutdown(self, vm_id, action):
        return self._record("shutdown", vm_id, action)

    def cancel(self, vm_id, action):
        return self._record("cancel", vm_id, action)

    def save(self, vm_id, action):
        return self._record("save", vm_id, action)

    def restore(self, vm_id, action):
        return self._record("restore", vm_id, action)

    def migrate(self, vm_id, action):
        return self._record("migrate", vm_id, action)

    def reboot(self, vm_id, action):
        return self._record("reboot", vm_id, action)

    def poll(self, vm_id, action):
        return self._record("poll", vm_id, action)


@implementer(ITransferDriver)
class FakeTransferDriver(_Recorder):
    """A TM driver that records ``transfer(vm_id, script_path)`` calls."""

    def transfer(self, vm_id, script_path):
        return self._record("transfer", vm_id, script_path)


@implementer(IInformationDriver)
class FakeInformationDriver(_Recorder):
    """An IM driver that records ``monitor(host_id, hostname, update)`` calls."""

    def monitor(self, host_id, hostname, update_remotes=False):
        return self._record("monitor", host_id, hostname, update_remotes)


@implementer(IHookDriver)
class FakeHookDriver(_Recorder):
    """An HM driver that records ``execute(oid, hook_name, host, command,
    arguments)`` calls (``host`` as given: None or ``"LOCAL"`` for local hooks)."""

    def execute(self, oid, hook_name, host, command, arguments=""):
        return self._record("execute", oid, hook_name, host, command, arguments)


@implementer(IVirtualNetworkDriver)
class FakeNetworkDriver(_Recorder):
    """A VN_MAD driver that records ``pre``/``post``/``clean(vm_id, host,
    vm_xml)`` calls (``args`` is ``(host, vm_xml)``)."""

    def pre(self, vm_id, host, vm_xml):
        return self._record("pre", vm_id, host, vm_xml)

    def post(self, vm_id, host, vm_xml):
        return self._record("post", vm_id, host, vm_xml)

    def clean(self, vm_id, host, vm_xml):
        return self._record("clean", vm_id, host, vm_xml)
