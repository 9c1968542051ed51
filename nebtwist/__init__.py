"""nebtwist: an event-driven cloud controller in the OpenNebula mould."""

__version__ = "0.1.0"

#: The OpenNebula release whose XML-RPC API and behaviour nebtwist follows.
ONE_VERSION = "3.4.1"

