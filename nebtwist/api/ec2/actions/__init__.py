"""The EC2 front's actions by resource kind, each a mixin of
:class:`nebtwist.api.ec2.resource.EC2Resource`: :mod:`.instances`,
:mod:`.images`, :mod:`.keypairs`, :mod:`.addresses`, :mod:`.tags` (regions,
zones, types, instance status and CreateImage are in
:mod:`nebtwist.api.ec2.queries`).
"""
