"""The driver interfaces: one per driver family.

Every method returns a Deferred. A driver's ``FAILURE`` reply errbacks with
:class:`nebtwist.errors.DriverError` (its message is the driver's text); no
reply in time errbacks with :class:`~nebtwist.errors.DriverTimeout`; a driver
process that dies with the request in flight errbacks with
:class:`~nebtwist.errors.DriverCrashed`.

The main implementations are the MAD adapters in :mod:`nebtwist.mad`, which
speak OpenNebula 3.4's line protocol (``src/mad/Mad.cc``) to a driver
subprocess. Fakes for tests live in :mod:`nebtwist.testing`.
"""

from dataclasses import dataclass

from zope.interface import Attribute, Interface


class IDriver(Interface):
    """What every driver has."""

    name = Attribute("The driver's name in oned.conf, e.g. 'vmm_dummy'.")


class IInformationDriver(IDriver):
    """Monitors hosts (OpenNebula's IM_MAD; ``src/im/InformationManagerDriver.cc``)."""

    def monitor(host_id, hostname, update_remotes=False):
        """Monitor one host.

        Sends ``MONITOR <host_id> <hostname> <0|1>``.

        :param host_id: the host's oid (int).
        :param hostname: the host's NAME (str).
        :param update_remotes: True to ask the driver to copy its remote
            scripts to the host first.
        :return: Deferred firing with the raw info string of
            ``MONITOR SUCCESS <hid> <info>``: ``KEY=VALUE`` pairs separated by
            blanks, commas or newlines (plain text as in 3.4, or base64 as in
            4.0+; the core accepts both).
        """


@dataclass
class VMMAction:
    """The data of one virtualization request (3.4 ``VMM_DRIVER_ACTION_DATA``).

    Empty strings stand for elements OpenNebula sends empty. ``vm_xml`` is the
    full ``<VM>`` document as a str (``src/vmm/VirtualMachineManager.cc``
    ``format_message``), plus ``migr_shared``.
    """

    host: str = ""
    net_drv: str = ""
    migr_host: str = ""
    migr_net_drv: str = ""
    deploy_id: str = ""
    local_deployment_file: str = ""
    remote_deployment_file: str = ""
    checkpoint_file: str = ""
    vm_xml: str = ""
    #: nebtwist's addition, on MIGRATE only: ``"YES"`` when the VM's files are
    #: on storage both hosts share, ``"NO"`` when the driver must copy the
    #: disks (the core has copied the VM directory to the target first).
    migr_shared: str = ""


class IVirtualMachineDriver(IDriver):
    """Controls VMs on hosts (OpenNebula's VM_MAD).

    Each method sends ``<ACTION> <vm_id> <base64 drv_msg>`` (3.4 format) and
    takes a :class:`VMMAction`.
    """

    def deploy(vm_id, action):
        """Boot a VM; fires with the hypervisor's deploy id (str)."""

    def shutdown(vm_id, action):
        """Graceful shutdown; fires with the reply info (str)."""

    def cancel(vm_id, action):
        """Destroy at once; fires with the reply info (str)."""

    def save(vm_id, action):
        """Checkpoint to ``action.checkpoint_file`` and stop the VM."""

    def restore(vm_id, action):
        """Restore from ``action.checkpoint_file``; fires with the deploy id."""

    def migrate(vm_id, action):
        """Live-migrate from ``action.host`` to ``action.migr_host``."""

    def reboot(vm_id, action):
        """Reboot the guest; no state change."""

    def poll(vm_id, action):
        """Poll a VM; fires with the reply's info string
        (``STATE=a USEDCPU=.. USEDMEMORY=.. NETRX=.. NETTX=..``)."""


class ITransferDriver(IDriver):
    """Runs transfer scripts (OpenNebula's TM_MAD; ``src/tm/TransferManagerDriver.cc``)."""

    def transfer(vm_id, script_path):
        """Run the transfer script at ``script_path`` for VM ``vm_id``.

        Sends ``TRANSFER <vm_id> <script_path>``; fires with None on success.
        """


class IHookDriver(IDriver):
    """Runs hook commands (OpenNebula's HM_MAD; ``src/hm/HookManagerDriver.cc``)."""

    def execute(oid, hook_name, host, command, arguments=""):
        """Run one hook for object ``oid`` (a VM or host id, int).

        Sends ``EXECUTE <oid> <hook_name> LOCAL <command> <arguments|->``
        (``host`` None or ``"LOCAL"``: on the front-end) or ``EXECUTE <oid>
        <hook_name> <host> <command> <arguments|->`` (over ssh on ``host``).
        ``hook_name``, ``host`` and ``command`` are single words; the driver
        runs ``<command> <arguments>`` through a shell.

        :return: Deferred firing with the hook's output (str, one line) from
            ``EXECUTE SUCCESS <oid> <hook_name>: <output>``; errbacks with
            :class:`~nebtwist.errors.DriverError` (its message the driver's
            error text without the ``<hook_name>:`` prefix) on ``FAILURE``,
            and as every driver on timeouts and crashes.
        """


class IVirtualNetworkDriver(IDriver):
    """Prepares and removes a VM's host networking (OpenNebula 3.4's VNM drivers,
    ``src/vnm_mad/remotes/<driver>/{pre,post,clean}``, run by
    ``src/vmm_mad/exec/one_vmm_exec.rb`` around the hypervisor's action).

    ``pre`` runs on the VM's host before its domain exists (bridges, VLAN
    devices, OVS bridges), ``post`` once the domain runs (rules on the VM's
    taps or ports), ``clean`` after the domain is gone (every rule, port or
    device the driver made for the VM, and only those). Each sends
    ``<PRE|POST|CLEAN> <vm_id> <host> <base64 of the VM XML>``; the reply is
    ``<ACTION> SUCCESS <vm_id>`` or ``<ACTION> FAILURE <vm_id> <message>``.

    :param vm_id: the VM's oid (int).
    :param host: the host's NAME (str, one word).
    :param vm_xml: the ``<VM>`` document as in ``one.vm.info`` (str).
    :return: Deferred firing with None; errbacks with
        :class:`~nebtwist.errors.DriverError` carrying the driver's message
        (e.g. ``pre: cannot create bridge onebr3: ...``), and as every driver
        on timeouts and crashes.
    """

    def pre(vm_id, host, vm_xml):
        """Prepare the host's network for the VM before its domain is created."""

    def post(vm_id, host, vm_xml):
        """Apply the VM's network rules once its domain runs."""

    def clean(vm_id, host, vm_xml):
        """Remove what ``pre``/``post`` made for the VM once its domain is gone."""


class IAPIFront(Interface):
    """An API front plug-in (XML-RPC, EC2/S3, OpenStack, OCCI, ElasticHosts...).

    Found with ``twisted.plugin.getPlugins(IAPIFront, nebtwist.plugins)``
    (providers also provide ``twisted.plugin.IPlugin``), enabled by an
    oned.conf ``API_FRONT = [ NAME = ..., ENDPOINT = ..., CONF = ... ]``
    vector; see :mod:`nebtwist.api.plugin`. A front translates its protocol
    into calls of the core's requests layer and renders the core's objects
    and errors in its own shape; it decides nothing itself.
    """

    name = Attribute("The front's NAME in oned.conf API_FRONT (str), e.g. 'ec2'.")
    description = Attribute("One line saying what the front serves (str).")

    def build(ctx):
        """The front's service for a :class:`nebtwist.api.plugin.FrontContext`.

        :return: an ``IService`` that the daemon adds as a child once the core
            is ready. Once started it has ``ports`` (the listening ports) and
            ``listening`` (a Deferred firing once every endpoint listens, or
            failing with :class:`nebtwist.api.plugin.FrontStartupError`).
        """
