"""The ElasticHosts front's dropin (:mod:`nebtwist.api.elastichosts`)."""

from nebtwist.api.elastichosts.front import ElasticHostsFront

elastichosts = ElasticHostsFront()
