"""The OCCI 1.1 front's dropin (:mod:`nebtwist.api.occi`)."""

from nebtwist.api.occi.front import OCCIFront

occi = OCCIFront()
