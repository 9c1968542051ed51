"""The ElasticHosts REST API front (``API_FRONT = [ NAME = "elastichosts" ]``).

A faithful server of the ElasticHosts/ElasticStack API (and of CloudSigma's
API 1.0, the same family), so that ElasticHosts clients (libcloud's
``ElasticHostsNodeDriver`` and ``CloudSigmaNodeDriver(api_version="1.0")``,
the ``elastichosts`` shell tool, jclouds' ``elasticstack``) and nebtwist's own
hybrid ElasticHosts driver can drive nebtwist.

Modules: :mod:`.front` (the plug-in), :mod:`.resource` (routing, auth,
errors), :mod:`.wire` (text and JSON bodies), :mod:`.drives` (drives =
images), :mod:`.servers` (servers = VMs), :mod:`.settings` (UUIDs and
``elastichosts.conf``). Each module's docstring holds its mapping tables.
"""
