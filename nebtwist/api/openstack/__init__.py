"""The OpenStack-compatible front: Keystone v3, Nova v2.1 and Glance v2.

Enough of the three APIs for python-openstackclient and openstacksdk to log
in, list flavors and images, and create, list, show, stop, start, reboot
and delete servers (``/work/shared/reference`` section 3.5). Servers are
nebtwist VMs, flavors the VM types, images nebtwist's images, projects the
users' groups. Modules:

* :mod:`~nebtwist.api.openstack.config`: openstack.conf and the settings;
* :mod:`~nebtwist.api.openstack.resource`: the ``twisted.web`` resource
  (routing, tokens, error shapes);
* :mod:`~nebtwist.api.openstack.identity`: Keystone (tokens, catalog);
* :mod:`~nebtwist.api.openstack.compute`: Nova servers and flavors;
* :mod:`~nebtwist.api.openstack.flavors`: flavors and the status table;
* :mod:`~nebtwist.api.openstack.image`: Glance images;
* :mod:`~nebtwist.api.openstack.common`: errors and the UUID mapping.

The front reaches the core only through :class:`nebtwist.core.requests.Requests`.
"""
