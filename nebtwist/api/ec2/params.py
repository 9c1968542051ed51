"""The EC2 front's request plumbing: the parameters (:class:`_Params`:
indexed ``Name.N``, ``Filter.N``, ``Tag.N``), the control-character check,
``multipart/form-data`` bodies (econe-upload's staged file) and small
response helpers. Nothing here knows the core.
"""

import hashlib
import os
import re
import tempfile
import time

from lxml import etree

from nebtwist.api.ec2.base import _CONTROL, EC2Error, _shown


_INDEXED = re.compile(r"([A-Za-z]+)\.([0-9]+)\Z")
_TAG_PARAM = re.compile(r"Tag\.([0-9]+)\.(Key|Value)\Z")

#: Largest UploadImage file, in bytes, when the front sets no ``max_upload``
#: (5 GiB, AWS's single PUT limit).
DEFAULT_MAX_UPLOAD = 5 * 1024 ** 3
#: Largest form body (urlencoded) or multipart text field, in bytes.
MAX_FORM_FIELD = 1024 * 1024
#: Bytes read at a time from a multipart body.
_CHUNK = 1024 * 1024


def check_characters(pairs):
    """Refuse a parameter name or value holding a control character
    (:data:`_CONTROL`) with EC2's ``InvalidParameterValue``.

    :raises EC2Error: naming the parameter, the character escaped.
    """
    for name, value in pairs:
        if _CONTROL.search(name):
            raise EC2Error("InvalidParameterValue",
                           f"The parameter name ({_shown(name)}) is invalid: control "
                           f"characters are not allowed.")
        if _CONTROL.search(value):
            raise EC2Error("InvalidParameterValue",
                           f"Value ({_shown(value)}) for parameter {name} is invalid: "
                           f"control characters are not allowed.")


def _iso(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(seconds))


def _sub(parent, tag, text=None):
    el = etree.SubElement(parent, tag)
    if text is not None:
        el.text = str(text)
    return el


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass

# -- multipart bodies (econe-upload) ---------------------------------------------------


class _Upload:
    """The ``file`` field of a multipart body, staged on disk.

    :ivar path: the staging file (absolute).
    :ivar size: bytes.
    :ivar filename: the name the client gave, or None.
    :ivar kept: set by the action that took the file over (else the front
        deletes it when the request ends).
    """

    def __init__(self, path, filename):
        self.path = path
        self.filename = filename
        self.size = 0
        self.kept = False


class _FormError(Exception):
    def __init__(self, message, code="InvalidParameterValue", status=400):
        super().__init__(message)
        self.code = code
        self.status = status


def _read_multipart(content, boundary, folder, max_file, max_field=MAX_FORM_FIELD,
                    sha256=True):
    """Parse a ``multipart/form-data`` body from the file ``content``
    (streaming, with the ``multipart`` package's push parser; runs in a
    thread).

    The ``file`` field goes to a new file in ``folder``; other fields are
    text (UTF-8, undecodable bytes kept as surrogates, as
    :mod:`nebtwist.api.awsauth` reads parameters).

    :param sha256: hash the whole body (for a SigV4 signature; econe's SigV2
        does not cover the body).
    :return: ``(pairs, upload or None, sha256 hex of the whole body or None)``.
    :raises _FormError: a malformed body, a second file, a field over
        ``max_field`` bytes, or a file over ``max_file`` bytes
        (``RequestEntityTooLarge``, 413). Nothing is left on disk.
    """
    import multipart

    content.seek(0)
    parser = multipart.PushMultipartParser(boundary, max_segment_count=256)
    digest = hashlib.sha256() if sha256 else None
    pairs = []
    upload = out = None
    name = buf = None
    try:
        try:
            while True:
                chunk = content.read(_CHUNK)
                if digest is not None:
                    digest.update(chunk)
                for event in parser.parse(chunk):
                    if isinstance(event, multipart.MultipartSegment):
                        name = event.name
                        if name == "file":
                            if upload is not None:
                                raise _FormError("The body has more than one file field.")
                            os.makedirs(folder, exist_ok=True)
                            fd, path = tempfile.mkstemp(prefix="upload-", dir=folder)
                            upload = _Upload(path, event.filename)
                            out = os.fdopen(fd, "wb")
                        else:
                            buf = bytearray()
                    elif event is None:
                        if name == "file":
                            out.close()
                            out = None
                        else:
                            pairs.append((name, bytes(buf).decode("utf-8", "surrogateescape")))
                        name = buf = None
                    elif name == "file":
                        upload.size += len(event)
                        if upload.size > max_file:
                            raise _FormError(f"The file is larger than the {max_file} bytes "
                                             f"allowed.", "RequestEntityTooLarge", 413)
                        out.write(event)
                    else:
                        buf += event
                        if len(buf) > max_field:
                            raise _FormError(f"The form field {name} is too long.")
                if not chunk:
                    break
            parser.close()
        except multipart.MultipartError as e:
            raise _FormError(f"Malformed multipart/form-data body: {e}") from None
    except BaseException:
        if out is not None:
            out.close()
        if upload is not None:
            _unlink(upload.path)
        raise
    return pairs, upload, digest.hexdigest() if digest is not None else None


class _Params:
    """The decoded request parameters (and the staged ``file`` of a
    multipart body, ``upload``)."""

    def __init__(self, pairs, upload=None):
        self.pairs = pairs
        self.values = {}
        self.upload = upload
        for k, v in pairs:
            self.values.setdefault(k, v)

    def get(self, name, default=None):
        return self.values.get(name, default)

    def has(self, name):
        return name in self.values

    def require(self, name):
        value = self.values.get(name)
        if value is None or value == "":
            raise EC2Error("MissingParameter",
                           f"The request must contain the parameter {name}")
        return value

    def bool(self, name):
        value = self.values.get(name)
        if value is None or value == "":
            return False
        if value.lower() not in ("true", "false"):
            raise EC2Error("InvalidParameterValue",
                           f"Value ({value}) for parameter {name} is invalid. "
                           f"Expected true or false.")
        return value.lower() == "true"

    def int(self, name, default, minimum=1):
        value = self.values.get(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or number < minimum:
            raise EC2Error("InvalidParameterValue",
                           f"Value ({value}) for parameter {name} is invalid. "
                           f"Expected an integer of at least {minimum}.")
        return number

    def filters(self):
        """``Filter.N.Name`` / ``Filter.N.Value.M`` as ``[(name, set of
        values)]`` in N order. A name may come more than once: every filter
        must match (AND), one of a filter's values is enough (OR), as AWS
        ("List and filter your resources": ``tag-value=api`` and
        ``tag-value=green`` as two filters are resources with both).

        :raises EC2Error: InvalidParameterValue for a filter without a name
            or without values.
        """
        names, values = {}, {}
        for k, v in self.pairs:
            parts = k.split(".")
            if len(parts) == 3 and parts[0] == "Filter" and parts[2] == "Name":
                names[parts[1]] = v
            elif len(parts) == 4 and parts[0] == "Filter" and parts[2] == "Value":
                values.setdefault(parts[1], set()).add(v)
        filters = []
        for n in sorted(set(names) | set(values), key=lambda n: (not n.isdigit(), int(n)
                                                                  if n.isdigit() else 0, n)):
            if not names.get(n) or not values.get(n):
                raise EC2Error("InvalidParameterValue",
                               f"Filter.{n} needs a Name and at least one Value.")
            filters.append((names[n], values[n]))
        return filters

    def indexed(self, prefix):
        """The values of ``prefix.N`` (``InstanceId.1``, ``InstanceId.01``),
        in N order."""
        found = []
        for k, v in self.pairs:
            m = _INDEXED.match(k)
            if m and m.group(1) == prefix:
                found.append((int(m.group(2)), v))
        return [v for _, v in sorted(found, key=lambda item: item[0])]

    def tags(self):
        """``Tag.N.Key`` / ``Tag.N.Value`` as ``[(key, value or None)]`` in N
        order (None: no ``Tag.N.Value`` was sent).

        :raises EC2Error: InvalidParameterValue for a value without a key.
        """
        keys, values = {}, {}
        for k, v in self.pairs:
            m = _TAG_PARAM.match(k)
            if m:
                (keys if m.group(2) == "Key" else values)[int(m.group(1))] = v
        for n in values:
            if n not in keys:
                raise EC2Error("InvalidParameterValue", f"Tag.{n}.Value is given without "
                                                        f"Tag.{n}.Key.")
        return [(keys[n], values.get(n)) for n in sorted(keys)]
