"""Exceptions shared across nebtwist.

The API fronts turn these into each API's own error shape: XML-RPC
``[false, "[Method] message", code]`` with the OpenNebula 3.4 codes below
(``include/Request.h``), EC2 ``<Response><Errors>...``, S3 ``<Error>``.
"""

#: OpenNebula 3.4 XML-RPC error codes (``include/Request.h``).
SUCCESS = 0x0000
AUTHENTICATION = 0x0100
AUTHORIZATION = 0x0200
NO_EXISTS = 0x0400
ACTION = 0x0800
XML_RPC_API = 0x1000
INTERNAL = 0x2000


class NebulaError(Exception):
    """An error a user can cause; ``code`` is the XML-RPC error code.

    ``str(error)`` is the message shown to the user, without the
    ``[Method]`` prefix (the RequestManager adds it).
    """

    code = INTERNAL

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class AuthenticationError(NebulaError):
    """The session string names no user, or the password does not match."""

    code = AUTHENTICATION


class AuthorizationError(NebulaError):
    """The authenticated user may not do this to this object."""

    code = AUTHORIZATION


class NoSuchObject(NebulaError):
    """No object with the given id (or name) exists in its pool."""

    code = NO_EXISTS


class ActionError(NebulaError):
    """The action is not allowed in the object's current state."""

    code = ACTION


class APIError(NebulaError):
    """Wrong parameters: arity, types, malformed templates or values."""

    code = XML_RPC_API


class InternalError(NebulaError):
    """Something failed inside nebtwist (database, drivers)."""

    code = INTERNAL


class DriverError(Exception):
    """A driver answered ``<ACTION> FAILURE <id> <message>``.

    ``message`` is the driver's error text (``-`` when it gave none).
    """

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class DriverTimeout(DriverError):
    """A driver did not answer a request within its timeout."""


class DriverCrashed(DriverError):
    """The driver process exited (or is not running) while a request was in flight."""
