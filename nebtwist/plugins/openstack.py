"""The OpenStack front's dropin (:mod:`nebtwist.api.openstack`)."""

from nebtwist.api.openstack.front import OpenStackFront

openstack = OpenStackFront()
