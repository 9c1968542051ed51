"""twistd dropin: ``twistd nebula`` runs the nebtwist front-end (see nebtwist.tap)."""

from twisted.application.service import ServiceMaker

nebula = ServiceMaker(
    "nebtwist",
    "nebtwist.tap",
    "An OpenNebula-style cloud controller: XML-RPC core, scheduler, drivers.",
    "nebula",
)
