"""The OCCI model nebtwist offers: the Kinds, Mixins and Actions of OCCI Core
(OGF GFD.183) and OCCI Infrastructure (GFD.184), plus nebtwist's templates.

* Core Kinds ``entity``, ``resource``, ``link`` (GFD.183 Entity, Resource, Link).
* Infrastructure Kinds ``compute``, ``network``, ``storage`` (GFD.184)
  and the Link Kinds ``networkinterface``, ``storagelink``;
  the Mixins ``ipnetwork`` and ``ipnetworkinterface`` (IPNetworking);
  the Actions of compute (start, stop, restart, suspend), network
  (up, down) and storage (online, offline; backup,
  snapshot and resize are not offered: nebtwist 3.4's images have no such
  operation).
* ``os_tpl`` and ``resource_tpl`` (GFD.184 Infrastructure Templates) as the parent Mixins of
  nebtwist's templates: each image of type OS the user may use is an
  os_tpl Mixin ``image_<ID>`` (scheme :data:`OS_TPL_SCHEME`, title the
  image's name); each EC2 VM type of econe.conf (:mod:`nebtwist.core.vmtypes`)
  is a resource_tpl Mixin whose term is the type's name with ``.`` as ``_``
  (``m1.small`` -> ``m1_small``, scheme :data:`RESOURCE_TPL_SCHEME`).
* OpenNebula's extension Mixins (scheme :data:`ONE_SCHEME`, as rOCCI-server's
  OpenNebula backend names them): ``compute``, ``network``, ``storage``
  carrying the ``org.opennebula.*`` attributes.
"""

from nebtwist.api.occi.rendering import Category

CORE = "http://schemas.ogf.org/occi/core#"
INFRA = "http://schemas.ogf.org/occi/infrastructure#"
COMPUTE_ACTION = "http://schemas.ogf.org/occi/infrastructure/compute/action#"
NETWORK_ACTION = "http://schemas.ogf.org/occi/infrastructure/network/action#"
STORAGE_ACTION = "http://schemas.ogf.org/occi/infrastructure/storage/action#"
IPNETWORK_SCHEME = "http://schemas.ogf.org/occi/infrastructure/network#"
IPNETWORKINTERFACE_SCHEME = "http://schemas.ogf.org/occi/infrastructure/networkinterface#"
#: nebtwist's os_tpl Mixins (images).
OS_TPL_SCHEME = "http://nebtwist.org/occi/infrastructure/os_tpl#"
#: nebtwist's resource_tpl Mixins (econe.conf VM types).
RESOURCE_TPL_SCHEME = "http://nebtwist.org/occi/infrastructure/resource_tpl#"
#: OpenNebula's extension Mixins (rOCCI-server's OpenNebula backend).
ONE_SCHEME = "http://opennebula.org/occi/infrastructure#"

_ID = ("occi.core.id{immutable}", "occi.core.title")
_RES = _ID + ("occi.core.summary",)
_LINK = _ID + ("occi.core.target", "occi.core.source")

ENTITY = Category("entity", CORE, "kind", "Entity", "", "/entity/", _ID)
RESOURCE = Category("resource", CORE, "kind", "Resource", CORE + "entity", "/resource/", _RES)
LINK = Category("link", CORE, "kind", "Link", CORE + "entity", "/link/", _LINK)

START = Category("start", COMPUTE_ACTION, "action", "Start the compute resource")
STOP = Category("stop", COMPUTE_ACTION, "action", "Stop the compute resource",
                attributes=("method",))
RESTART = Category("restart", COMPUTE_ACTION, "action", "Restart the compute resource",
                   attributes=("method",))
SUSPEND = Category("suspend", COMPUTE_ACTION, "action", "Suspend the compute resource",
                   attributes=("method",))
UP = Category("up", NETWORK_ACTION, "action", "Activate the network")
DOWN = Category("down", NETWORK_ACTION, "action", "Deactivate the network")
ONLINE = Category("online", STORAGE_ACTION, "action", "Bring the storage online")
OFFLINE = Category("offline", STORAGE_ACTION, "action", "Take the storage offline")

COMPUTE = Category(
    "compute", INFRA, "kind", "Compute Resource", CORE + "resource", "/compute/",
    _RES + ("occi.compute.architecture", "occi.compute.cores", "occi.compute.hostname",
            "occi.compute.speed", "occi.compute.memory", "occi.compute.state{immutable}"),
    tuple(a.identifier for a in (START, STOP, RESTART, SUSPEND)))
NETWORK = Category(
    "network", INFRA, "kind", "Network Resource", CORE + "resource", "/network/",
    _RES + ("occi.network.vlan", "occi.network.label", "occi.network.state{immutable}"),
    (UP.identifier, DOWN.identifier))
STORAGE = Category(
    "storage", INFRA, "kind", "Storage Resource", CORE + "resource", "/storage/",
    _RES + ("occi.storage.size{required}", "occi.storage.state{immutable}"),
    (ONLINE.identifier, OFFLINE.identifier))
NETWORKINTERFACE = Category(
    "networkinterface", INFRA, "kind", "Network Interface", CORE + "link",
    "/link/networkinterface/",
    _LINK + ("occi.networkinterface.interface{immutable}", "occi.networkinterface.mac",
             "occi.networkinterface.state{immutable}"))
STORAGELINK = Category(
    "storagelink", INFRA, "kind", "Storage Link", CORE + "link", "/link/storagelink/",
    _LINK + ("occi.storagelink.deviceid", "occi.storagelink.mountpoint",
             "occi.storagelink.state{immutable}"))

IPNETWORK = Category("ipnetwork", IPNETWORK_SCHEME, "mixin", "IP Network Mixin", "",
                     "/mixin/ipnetwork/",
                     ("occi.network.address", "occi.network.gateway",
                      "occi.network.allocation"))
IPNETWORKINTERFACE = Category(
    "ipnetworkinterface", IPNETWORKINTERFACE_SCHEME, "mixin", "IP Network Interface Mixin",
    "", "/mixin/ipnetworkinterface/",
    ("occi.networkinterface.address", "occi.networkinterface.gateway",
     "occi.networkinterface.allocation"))
OS_TPL = Category("os_tpl", INFRA, "mixin", "Operating System Template", "", "/mixin/os_tpl/")
RESOURCE_TPL = Category("resource_tpl", INFRA, "mixin", "Resource Template", "",
                        "/mixin/resource_tpl/")

ONE_COMPUTE = Category(
    "compute", ONE_SCHEME, "mixin", "OpenNebula specific Compute attributes", "",
    "/mixin/one/compute/",
    ("org.opennebula.compute.id{immutable}", "org.opennebula.compute.cpu",
     "org.opennebula.compute.state{immutable}", "org.opennebula.compute.lcm_state{immutable}"))
ONE_NETWORK = Category(
    "network", ONE_SCHEME, "mixin", "OpenNebula specific Network attributes", "",
    "/mixin/one/network/",
    ("org.opennebula.network.id{immutable}", "org.opennebula.network.bridge",
     "org.opennebula.network.ip_start", "org.opennebula.network.ip_end"))
ONE_STORAGE = Category(
    "storage", ONE_SCHEME, "mixin", "OpenNebula specific Storage attributes", "",
    "/mixin/one/storage/",
    ("org.opennebula.storage.id{immutable}", "org.opennebula.storage.type",
     "org.opennebula.storage.persistent", "org.opennebula.storage.fstype",
     "org.opennebula.storage.state{immutable}"))

#: Every fixed Category, in the order the query interface lists them.
STATIC = (ENTITY, RESOURCE, LINK, COMPUTE, NETWORK, STORAGE, NETWORKINTERFACE, STORAGELINK,
          IPNETWORK, IPNETWORKINTERFACE, OS_TPL, RESOURCE_TPL, ONE_COMPUTE, ONE_NETWORK,
          ONE_STORAGE, START, STOP, RESTART, SUSPEND, UP, DOWN, ONLINE, OFFLINE)


def os_tpl_term(image_id):
    """The os_tpl Mixin term of image ``image_id`` (int): ``image_<id>``."""
    return f"image_{int(image_id)}"


def os_tpl(image):
    """The os_tpl Mixin of an image (:class:`nebtwist.core.image.Image`)."""
    term = os_tpl_term(image.oid)
    return Category(term, OS_TPL_SCHEME, "mixin", image.name, OS_TPL.identifier,
                    f"/mixin/os_tpl/{term}/")


def resource_tpl_term(type_name):
    """The resource_tpl term of a VM type name (``m1.small`` -> ``m1_small``;
    any character outside GFD.185's term grammar becomes ``_``)."""
    term = "".join(c if c.isalnum() or c in "-_" else "_" for c in type_name.lower())
    return term if term[:1].isalpha() else "t_" + term


def resource_tpl(type_name, cpu=None, memory_mb=None):
    """The resource_tpl Mixin of a VM type; its title says the type's name
    and, when known, the CPU and MEMORY (MB) its template renders."""
    term = resource_tpl_term(type_name)
    title = type_name
    if cpu is not None and memory_mb is not None:
        title = f"{type_name}: CPU {cpu:g}, {memory_mb:g} MB memory"
    return Category(term, RESOURCE_TPL_SCHEME, "mixin", title, RESOURCE_TPL.identifier,
                    f"/mixin/resource_tpl/{term}/",
                    ("occi.compute.cores{immutable}", "occi.compute.memory{immutable}"))
