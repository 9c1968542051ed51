"""EC2 elastic address actions (AWS EC2 API reference, API_AllocateAddress,
API_ReleaseAddress, API_AssociateAddress, API_DisassociateAddress,
API_DescribeAddresses; econe 3.4 ``:elasticips_vnet_id``) over the core's
addresses (:mod:`nebtwist.core.requests_addresses`), with econe.conf's
ASSOCIATE_SCRIPT and DISASSOCIATE_SCRIPT (:func:`run_script`):
:class:`AddressActions`, a mixin of :class:`nebtwist.api.ec2.resource.EC2Resource`.
"""

import os
import shlex

from twisted.internet import defer, protocol
from twisted.logger import Logger

from nebtwist.api.ec2.actions.instances import _vm_ip
from nebtwist.api.ec2.base import EC2Error, _matches, ec2_state, instance_id
from nebtwist.core.objects import DONE, int_to_ip, ip_to_int
from nebtwist.core.requests_addresses import AddressScripts, NoFreeAddress, NoSuchAddress
from nebtwist.errors import ActionError, AuthorizationError, NoSuchObject

log = Logger()

#: Seconds an ASSOCIATE_SCRIPT / DISASSOCIATE_SCRIPT may run before it is
#: killed (and the call fails).
SCRIPT_TIMEOUT = 60.0


class _ScriptProtocol(protocol.ProcessProtocol):
    """Collects a script's output (the last 4 kB) and its end."""

    def __init__(self, done):
        self.done = done
        self.output = b""

    def outReceived(self, data):
        self.output = (self.output + data)[-4096:]

    errReceived = outReceived

    def processEnded(self, reason):
        value = reason.value
        self.done.callback((getattr(value, "exitCode", None), getattr(value, "signal", None),
                            self.output.decode("utf-8", "replace")))


async def run_script(reactor, command, args, timeout=SCRIPT_TIMEOUT):
    """Run econe.conf's ``command`` (split as a shell would, then ``args``
    appended) without a shell, as 3.4 ran ``:associate_script``.

    :return: ``(exit code, signal, output)``: code None when killed (after
        ``timeout`` seconds) or not startable.
    """
    argv = shlex.split(command) + [str(a) for a in args]
    done = defer.Deferred()
    proto = _ScriptProtocol(done)
    try:
        transport = reactor.spawnProcess(proto, argv[0], argv, env=dict(os.environ))
    except (OSError, ValueError) as e:
        return None, None, str(e)

    def kill():
        try:
            transport.signalProcess("KILL")
        except Exception:  # noqa: BLE001 - it ended meanwhile
            pass

    timer = reactor.callLater(timeout, kill)
    try:
        return await done
    finally:
        if timer.active():
            timer.cancel()


class AddressActions:
    """Elastic IPs: Allocate/Release/Associate/Disassociate/DescribeAddresses."""

    def _eip_network(self):
        """The econe.conf ``ELASTIC_IP_NETWORK`` value (a network id or name;
        :meth:`nebtwist.core.requests_addresses.AddressRequests.address_network`),
        checked to name a network.

        :raises EC2Error: ``Unsupported`` when it is not set (3.4 answered
            the address calls so without ``:elasticips_vnet_id``) or names
            no network.
        """
        value = self.econe.get("ELASTIC_IP_NETWORK") if self.econe is not None else None
        if not value:
            raise EC2Error("Unsupported", "Elastic IP addresses are not available here: "
                                          "econe.conf sets no ELASTIC_IP_NETWORK.")
        try:
            self.requests.address_network(value)
        except NoSuchObject:
            raise EC2Error("Unsupported", f"Elastic IP addresses are not available here: "
                                          f"the network {value!r} (econe.conf "
                                          f"ELASTIC_IP_NETWORK) does not exist.") from None
        return value

    def _associations(self, user):
        """``{vm id: elastic IP}`` of the user's associated addresses ({}
        without a network)."""
        if self.econe is None or not self.econe.get("ELASTIC_IP_NETWORK"):
            return {}
        try:
            network = self._eip_network()
        except EC2Error:
            return {}
        return {a.vid: a.ip for a in self.requests.address_list(user, network)
                if a.vid is not None}

    @staticmethod
    def _public_ip(params):
        value = params.require("PublicIp")
        try:
            return int_to_ip(ip_to_int(value))
        except ValueError:
            raise EC2Error("InvalidAddress.Malformed",
                           f"Invalid value '{value}' for PublicIp.") from None

    @staticmethod
    def _address_errors(ip, call):
        """Run ``call()`` (a core address operation), its errors as EC2's:
        InvalidAddress.NotFound (nobody holds the address), AuthFailure
        (another user's; as AWS for an address of another account)."""
        try:
            return call()
        except NoSuchAddress:
            raise EC2Error("InvalidAddress.NotFound", f"Address '{ip}' not found.") from None
        except AuthorizationError:
            raise EC2Error("AuthFailure",
                           f"You do not have permission to access the address '{ip}'.") \
                from None

    async def _address_call(self, ip, coroutine):
        try:
            return await coroutine
        except NoSuchAddress:
            raise EC2Error("InvalidAddress.NotFound", f"Address '{ip}' not found.") from None
        except AuthorizationError:
            raise EC2Error("AuthFailure",
                           f"You do not have permission to access the address '{ip}'.") \
                from None

    async def _address_script(self, key, elastic_ip, vm):
        """Run econe.conf ``key`` (ASSOCIATE_SCRIPT or DISASSOCIATE_SCRIPT)
        with the elastic IP and the VM's private IP, if it is set.

        :raises EC2Error: InternalError when the script fails (exit status
            other than 0, killed after :data:`SCRIPT_TIMEOUT`, not startable).
        """
        command = self.econe.get(key) if self.econe is not None else None
        if not command:
            return
        private = _vm_ip(vm) if vm is not None else ""
        args = [elastic_ip, private] if private else [elastic_ip]
        code, signal, output = await run_script(self._reactor(), command, args)
        if code != 0:
            how = f"exit status {code}" if code is not None else (
                f"signal {signal}" if signal else "it could not run")
            log.error("EC2 {key} {args} failed ({how}): {output}", key=key, args=args,
                      how=how, output=output.strip())
            raise EC2Error("InternalError",
                           f"The address could not be {'dis' if 'DIS' in key else ''}"
                           f"associated: {key} failed ({how}).", 500)

    def _scripts(self):
        """The address scripts the core runs (:class:`nebtwist.core.
        requests_addresses.AddressScripts`): econe.conf's."""
        front = self

        class Scripts(AddressScripts):
            async def associate(self, ip, vm):
                await front._address_script("ASSOCIATE_SCRIPT", ip, vm)

            async def disassociate(self, ip, vm):
                await front._address_script("DISASSOCIATE_SCRIPT", ip, vm)

        return Scripts()

    async def allocate_address(self, user, params, out):
        """AllocateAddress: hold a free lease of the ELASTIC_IP_NETWORK
        network for the user (USED with VID -1, the 3.4 hold, so no VM NIC
        gets it) and record it (``EC2_ADDRESSES``), in one write
        (:meth:`nebtwist.core.requests_addresses.AddressRequests.address_allocate`).

        :raises EC2Error: Unsupported (no network), AddressLimitExceeded
            (no free lease).
        """
        network = self._eip_network()
        try:
            address = await self.requests.address_allocate(user, network)
        except NoFreeAddress as e:
            raise EC2Error("AddressLimitExceeded", str(e)) from None
        log.info("EC2: address {ip} allocated to {user}", ip=address.ip, user=user.name)
        out.sub(out.root, "publicIp", address.ip)
        out.sub(out.root, "domain", "standard")

    async def release_address(self, user, params, out):
        """ReleaseAddress: give the lease back to the network; an associated
        address is disassociated first (DISASSOCIATE_SCRIPT)."""
        network = self._eip_network()
        ip = self._public_ip(params)
        await self._address_call(ip, self.requests.address_release(
            user, network, ip, self._scripts()))
        log.info("EC2: address {ip} released by {user}", ip=ip, user=user.name)
        out.sub(out.root, "return", "true")

    async def associate_address(self, user, params, out):
        """AssociateAddress (``PublicIp``, ``InstanceId``): run econe.conf
        ASSOCIATE_SCRIPT with the elastic IP and the instance's private IP
        (3.4 ``associate_address``), then record the association
        (DescribeInstances shows ``ipAddress``). An address associated with
        another instance, or another address of this instance, is
        disassociated first (DISASSOCIATE_SCRIPT), as EC2-Classic moved
        addresses. A failing script is an error and nothing is recorded
        (:meth:`nebtwist.core.requests_addresses.AddressRequests.address_associate`).

        :raises EC2Error: IncorrectInstanceState for a terminated instance,
            or one with no private IP when a script is set.
        """
        network = self._eip_network()
        ip = self._public_ip(params)
        iid = params.require("InstanceId")
        self._address_errors(ip, lambda: self.requests.address_get(user, network, ip))
        vm = self._instances(user, [iid])[0]
        if vm.state == DONE or ec2_state(vm)[1] in ("terminated", "shutting-down"):
            raise EC2Error("IncorrectInstanceState",
                           f"The instance '{iid}' is {ec2_state(vm)[1]}.")
        if not _vm_ip(vm) and self.econe.get("ASSOCIATE_SCRIPT"):
            raise EC2Error("IncorrectInstanceState",
                           f"The instance '{iid}' has no private IP address.")
        try:
            await self._address_call(ip, self.requests.address_associate(
                user, network, ip, vm.oid, self._scripts()))
        except ActionError as e:  # the VM ended meanwhile
            raise EC2Error("IncorrectInstanceState", str(e)) from None
        log.info("EC2: address {ip} associated with {iid}", ip=ip, iid=iid)
        out.sub(out.root, "return", "true")

    async def _drop_addresses(self, user, vms):
        """Disassociate the elastic IPs of instances being terminated, as EC2
        does: DISASSOCIATE_SCRIPT runs for each (a failure is logged, the
        instance goes anyway) and the associations are forgotten."""
        if self.econe is None or not self.econe.get("ELASTIC_IP_NETWORK"):
            return
        try:
            network = self._eip_network()
        except EC2Error:
            return
        await self.requests.address_drop_vms(user, network, [vm.oid for vm in vms],
                                             self._scripts())

    async def disassociate_address(self, user, params, out):
        """DisassociateAddress (``PublicIp``): run DISASSOCIATE_SCRIPT with the
        elastic IP and the instance's private IP, then forget the
        association; an address associated with nothing is fine."""
        network = self._eip_network()
        ip = self._public_ip(params)
        await self._address_call(ip, self.requests.address_disassociate(
            user, network, ip, self._scripts()))
        out.sub(out.root, "return", "true")

    async def describe_addresses(self, user, params, out):
        """DescribeAddresses: the user's addresses (``PublicIp.N``; filters
        public-ip, instance-id, domain), each with ``publicIp``, ``domain``
        standard and ``instanceId`` (empty when not associated).

        :raises EC2Error: InvalidAddress.NotFound for an address the user
            does not hold.
        """
        network = self._eip_network()
        mine = self.requests.address_list(user, network)
        wanted = params.indexed("PublicIp")
        for ip in wanted:
            if not any(a.ip == ip for a in mine):
                raise EC2Error("InvalidAddress.NotFound", f"Address '{ip}' not found.")
        if wanted:
            mine = [a for a in mine if a.ip in wanted]
        rows = [{"public-ip": a.ip, "domain": "standard",
                 "instance-id": instance_id(a.vid) if a.vid is not None else ""}
                for a in mine]
        for name, values in params.filters():
            if name not in ("public-ip", "instance-id", "domain"):
                raise EC2Error("InvalidParameterValue",
                               f"The filter '{name}' is invalid "
                               f"(known: domain, instance-id, public-ip).")
            rows = [r for r in rows if _matches([r[name]], values)]
        addresses = out.sub(out.root, "addressesSet")
        for r in rows:
            item = out.sub(addresses, "item")
            out.sub(item, "publicIp", r["public-ip"])
            out.sub(item, "domain", r["domain"])
            out.sub(item, "instanceId", r["instance-id"])

