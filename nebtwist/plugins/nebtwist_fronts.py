"""nebtwist's own API fronts, as plug-ins (:mod:`nebtwist.api.plugin`)."""

from nebtwist.api.front import EC2Front
from nebtwist.api.xmlrpc import XMLRPCFront

xmlrpc = XMLRPCFront()
ec2 = EC2Front()
