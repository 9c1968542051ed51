"""Dropin package of nebtwist's plug-ins (API fronts: :mod:`nebtwist.api.plugin`).

As ``twisted.plugins``: every ``nebtwist/plugins/`` folder on ``sys.path`` is
searched, so an installed distribution adds a front by shipping a module in
its own ``nebtwist/plugins/`` (without an ``__init__.py`` of its own).
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))  # noqa: F821 (package __path__)
__all__ = []
