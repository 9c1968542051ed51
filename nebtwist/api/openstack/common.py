"""What the OpenStack front's APIs share: errors, ids, times.

Errors (:class:`OpenStackError`) render in the shape of the API that raised
them (Nova's ``{"itemNotFound": {"code": 404, "message": ...}}``,
``badRequest``, ``conflictingRequest``, ``forbidden``, ``unauthorized``,
``computeFault``; Glance and this front's HTTP-level errors take the same
shape; Keystone's ``{"error": {"code": 401, "title": "Unauthorized",
"message": ...}}``, see the Keystone v3 API reference "Errors").

Ids (OpenStack clients expect UUIDs for servers and images): a nebtwist id
``n`` is the UUID ``00000000-0000-4000-K000-nnnnnnnnnnnn``, the id written in
decimal, zero-padded, in the last group, and ``K`` the kind: ``8`` a server
(VM), ``9`` an image, ``a`` a network. The mapping is stable (no table
to keep) and readable (``...-8000-000000000042`` is VM 42). On input both
the UUID (any case) and the plain decimal id are accepted.
"""

import json
import re
import time

#: The UUID kind digit of each object kind (see the module docstring).
KINDS = {"server": "8", "image": "9", "network": "a"}

_UUID = re.compile(r"^00000000-0000-4000-([89ab])000-(\d{12})$")


def to_uuid(kind, oid):
    """The UUID of nebtwist object ``oid`` (int >= 0) of ``kind``
    (``"server"``, ``"image"``, ``"network"``)."""
    return f"00000000-0000-4000-{KINDS[kind]}000-{int(oid):012d}"


def from_uuid(kind, value):
    """The nebtwist id (int) a client's id names, or None when it names
    none of ``kind``: the UUID of :func:`to_uuid` (any case) or a decimal
    id (``"42"``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    if not isinstance(value, str):
        return None
    value = value.strip().lower()
    if value.isdigit() and value.isascii() and len(value) <= 12:
        return int(value)
    m = _UUID.match(value)
    if m and m.group(1) == KINDS[kind]:
        return int(m.group(2))
    return None


def iso8601(seconds, micro=False):
    """UNIX ``seconds`` as ``2026-12-05T12:00:00Z`` (Nova's ``created``),
    or with microseconds ``2026-12-05T12:00:00.000000Z`` (Keystone's
    ``expires_at``)."""
    seconds = float(seconds or 0)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if micro:
        text += f".{int(round((seconds % 1) * 1e6)) % 1000000:06d}"
    return text + "Z"


class OpenStackError(Exception):
    """An error answered in an OpenStack API's shape.

    :param status: HTTP status (int).
    :param key: the body's key (Nova's fault name, e.g. ``"itemNotFound"``).
    :param message: the message shown to the user.
    :param headers: extra response headers (dict str -> str), e.g.
        ``WWW-Authenticate``.
    """

    def __init__(self, status, key, message, headers=None):
        super().__init__(message)
        self.status = status
        self.key = key
        self.message = message
        self.headers = dict(headers or {})

    def body(self):
        """The JSON body (dict) in Nova's shape."""
        return {self.key: {"code": self.status, "message": self.message}}


class KeystoneError(OpenStackError):
    """An Identity API error: ``{"error": {"code", "title", "message"}}``."""

    TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
              405: "Method Not Allowed", 413: "Request Entity Too Large",
              500: "Internal Server Error"}

    def __init__(self, status, message, headers=None):
        super().__init__(status, "error", message, headers)

    def body(self):
        return {"error": {"code": self.status, "title": self.TITLES.get(self.status, "Error"),
                          "message": self.message}}


def bad_request(message):
    """A 400 ``badRequest``."""
    return OpenStackError(400, "badRequest", message)


def not_found(message):
    """A 404 ``itemNotFound``."""
    return OpenStackError(404, "itemNotFound", message)


def conflict(message):
    """A 409 ``conflictingRequest`` (Nova: an action the server's state refuses)."""
    return OpenStackError(409, "conflictingRequest", message)


def forbidden(message):
    """A 403 ``forbidden``."""
    return OpenStackError(403, "forbidden", message)


def json_body(request, max_body):
    """The request's JSON body (any JSON value).

    :param max_body: the largest body accepted, bytes.
    :raises OpenStackError: 413 over ``max_body``; 400 not UTF-8 JSON.
    """
    content = request.content
    content.seek(0)
    data = content.read(max_body + 1)
    if len(data) > max_body:
        raise OpenStackError(413, "overLimit",
                             f"Request body is too large (over {max_body} bytes).")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise bad_request("Malformed request body: not a JSON document.") from None
