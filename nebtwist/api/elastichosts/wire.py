"""The ElasticHosts wire formats: plain text and JSON bodies, and errors.

Source: the ElasticHosts API (``https://www.elastichosts.com/api/``) and its
clients (the ``elastichosts`` shell tool, libcloud's ``elasticstack.py`` and
CloudSigma 1.0 driver, jclouds' ``elasticstack`` API):

* **text/plain** (the default): an object is one ``key value`` line per key
  (the value is the rest of the line; a list is space-separated); a
  collection is objects separated by a blank line; ``/list`` replies are one
  UUID per line.
* **JSON** when the request says ``Accept: application/json`` (unless
  elastichosts.conf ``JSON_REPLIES = false``, for CloudSigma 1.0): an object,
  or an array of objects, with the same keys. A request body is JSON when
  its ``Content-Type`` is ``application/json`` *and* it starts with ``{`` or
  ``[``: libcloud's CloudSigma 1.0 driver sends ``key value`` text under a
  JSON content type, and such a body is read as text.
* **Errors**: the HTTP status, an ``X-Elastic-Error`` header naming the kind
  (``auth``, ``missing``, ``method``, ``busy``, ``failed``, ``usage``...) and a
  text body with the message (jclouds' ``ElasticStackErrorHandler``,
  libcloud's ``ElasticStackResponse.parse_error``).

An object here is a ``dict`` from key (str) to value (str, int or list of
str); keys keep the API's spelling (``nic:0:dhcp``).
"""

import json

#: Keys rendered as JSON numbers (as ElasticHosts' JSON replies: libcloud's
#: ``fixtures/elastichosts/*.json``); in text every value is text.
NUMERIC_KEYS = frozenset({"cpu", "mem", "size", "rx", "tx", "rx:packets", "tx:packets",
                          "started", "smp"})


class EHError(Exception):
    """An error in ElasticHosts' shape.

    :param status: the HTTP status (int): 400 usage, 401 auth, 402 payment,
        404 missing, 405 method, 409 busy (state conflict), 500 failed.
    :param kind: the ``X-Elastic-Error`` value (str).
    :param message: the body's text (str, one line).
    """

    def __init__(self, status, kind, message):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


def usage(message):
    """A 400 ``usage`` error: the request is malformed."""
    return EHError(400, "usage", message)


def missing(message):
    """A 404 ``missing`` error: no such object or command."""
    return EHError(404, "missing", message)


def wants_json(request):
    """True when the request's ``Accept`` asks for ``application/json``."""
    accept = request.getHeader(b"accept") or b""
    return b"application/json" in accept.lower()


def _text_objects(text):
    objects, current = [], {}
    for raw in text.split("\n"):
        line = raw.rstrip("\r").strip()
        if not line:
            if current:
                objects.append(current)
                current = {}
            continue
        key, _, value = line.partition(" ")
        current[key] = value.strip()
    if current:
        objects.append(current)
    return objects


def _json_value(key, value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
        return " ".join(str(v) for v in value)
    raise usage(f"Bad value for {key!r}: a string, a number or a list of strings.")


def parse_body(request, body):
    """The object of a request body (a dict of str -> str; lists become
    space-separated text). An empty body is ``{}``.

    :param body: the body (bytes).
    :raises EHError: 400 for a body that is not UTF-8, malformed JSON, or
        JSON that is not one object.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise usage("The request body is not UTF-8 text.") from None
    ctype = (request.getHeader(b"content-type") or b"").lower()
    stripped = text.lstrip()
    if b"json" in ctype and stripped[:1] in ("{", "["):
        try:
            data = json.loads(text)
        except ValueError as e:
            raise usage(f"Malformed JSON body: {e}") from None
        if isinstance(data, list) and len(data) == 1:
            data = data[0]
        if not isinstance(data, dict):
            raise usage("The JSON body must be one object.")
        return {str(k): _json_value(k, v) for k, v in data.items()}
    objects = _text_objects(text)
    if len(objects) > 1:
        raise usage("The request body must be one object (no blank lines).")
    return objects[0] if objects else {}


def _text_value(value):
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def _json_object(obj):
    out = {}
    for key, value in obj.items():
        if key in NUMERIC_KEYS and isinstance(value, str) and value.isdigit():
            value = int(value)
        out[key] = value
    return out


def render(request, data, json_replies=True):
    """Set the content type and return the body (bytes) for ``data``: a
    dict (one object), a list of dicts (a collection) or a list of str
    (a ``/list`` of UUIDs).

    :param json_replies: False to answer text whatever ``Accept`` says (as
        CloudSigma API 1.0 servers did: libcloud's CloudSigma 1.0 driver
        sends ``Accept: application/json`` and parses text).
    """
    if json_replies and wants_json(request):
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        if isinstance(data, dict):
            payload = _json_object(data)
        else:
            payload = [_json_object(d) if isinstance(d, dict) else d for d in data]
        return json.dumps(payload, indent=1, sort_keys=True).encode("utf-8") + b"\n"
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    if isinstance(data, dict):
        data = [data]
    if data and not isinstance(data[0], dict):
        return "".join(f"{uuid}\n" for uuid in data).encode("utf-8")
    blocks = ["".join(f"{k} {_text_value(v)}\n" for k, v in sorted(obj.items()))
              for obj in data]
    return "\n".join(blocks).encode("utf-8")


def render_error(request, error):
    """Set the status, ``X-Elastic-Error`` and content type of ``error``
    (:class:`EHError`) and return its text body (bytes)."""
    request.setResponseCode(error.status)
    request.setHeader(b"x-elastic-error", error.kind.encode("ascii"))
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return (" ".join(error.message.split()) + "\n").encode("utf-8")
