"""The XML of S3 bodies: writing responses and reading small request bodies.

Responses are built with lxml in the S3 namespace (:data:`S3_NS`;
:func:`_response_document`, :func:`_sub`, :func:`_xml_bytes`), errors as
S3's ``<Error>`` (:func:`error_document`), times as S3 writes them
(:func:`_iso` in XML, :func:`_http_date` in headers). Request bodies
(CreateBucketConfiguration, DeleteObjects, CompleteMultipartUpload,
PutBucketTagging: :func:`parse_tagging`) are read by a hardened parser
(:func:`_parse_xml`: no entities, no network), as the Amazon S3 API
Reference (2006-03-01) describes each operation's body.
"""

import time
from email.utils import formatdate
from urllib.parse import quote

from lxml import etree

from nebtwist.api.s3.errors import BadRequest, InvalidTag, MalformedXML


#: The S3 XML namespace.
S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
#: Most tags of a bucket, longest tag key and value, in Unicode characters
#: (Amazon S3 User Guide, "Using cost allocation S3 bucket tags": 50 tags;
#: keys up to 128 characters, values up to 256, keys unique).
MAX_BUCKET_TAGS = 50
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256


def error_document(error, resource_path, request_id):
    """The XML bytes of an S3 ``<Error>``."""
    root = etree.Element("Error")
    _sub(root, "Code", error.code)
    _sub(root, "Message", error.message)
    for name, value in error.details.items():
        _sub(root, name, value)
    _sub(root, "Resource", resource_path)
    _sub(root, "RequestId", request_id)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _sub(parent, tag, text=None):
    el = etree.SubElement(parent, tag)
    if text is not None:
        el.text = str(text)
    return el


def _iso(seconds):
    """``2012-05-01T10:00:00.000Z`` (S3's XML times, milliseconds)."""
    whole = int(seconds)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + \
        f".{int((seconds - whole) * 1000):03d}Z"


def _http_date(seconds):
    return formatdate(int(seconds), usegmt=True)


def _quote_etag(etag):
    return f'"{etag}"'


def _url(text):
    """``encoding-type=url``: percent-encode all but unreserved characters
    and ``/`` (spaces and ``+`` encoded, so either decoding is right)."""
    return quote(text, safe="/~")


def _parse_xml(body):
    """The root element of a small XML request body (namespace dropped).

    :raises MalformedXML: not XML.
    """
    try:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
        root = etree.fromstring(body, parser)
    except (etree.XMLSyntaxError, ValueError):
        raise MalformedXML() from None
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def _only_children(element, allowed):
    """The child elements of ``element``, each's tag one of ``allowed``.

    :raises MalformedXML: another element, or text between them.
    """
    children = [c for c in element if isinstance(c.tag, str)]
    if any(c.tag not in allowed for c in children) or (element.text or "").strip() \
            or any((c.tail or "").strip() for c in element):
        raise MalformedXML()
    return children


def parse_tagging(body):
    """The tag set of a PutBucketTagging body (API Reference,
    PutBucketTagging: ``<Tagging><TagSet><Tag><Key/><Value/></Tag>...``),
    checked as S3 does: at most :data:`MAX_BUCKET_TAGS` tags, keys of 1 to
    :data:`MAX_TAG_KEY` characters not starting with ``aws:`` (reserved
    for AWS), values of at most :data:`MAX_TAG_VALUE`, no key twice. The
    tags' characters are not restricted further.

    :param body: the request body (bytes).
    :return: ``[(key, value)]`` in the order given (``[]``: no tags).
    :raises MalformedXML: not that document (another element, a Tag
        without Key or Value, two of either).
    :raises BadRequest: more than 50 tags ("Bucket tag count cannot be
        greater than 50").
    :raises InvalidTag: a key or value too long or empty key, an ``aws:``
        key, a key given twice ("Cannot provide multiple Tags with the same
        key").
    """
    root = _parse_xml(body)
    if root.tag != "Tagging":
        raise MalformedXML()
    sets = _only_children(root, {"TagSet"})
    if len(sets) != 1:
        raise MalformedXML()
    tags = []
    for tag in _only_children(sets[0], {"Tag"}):
        fields = _only_children(tag, {"Key", "Value"})
        if sorted(f.tag for f in fields) != ["Key", "Value"] \
                or any(len(f) for f in fields):
            raise MalformedXML()
        tags.append((tag.findtext("Key") or "", tag.findtext("Value") or ""))
    if len(tags) > MAX_BUCKET_TAGS:
        raise BadRequest(f"Bucket tag count cannot be greater than {MAX_BUCKET_TAGS}")
    seen = set()
    for key, value in tags:
        if not key or len(key) > MAX_TAG_KEY:
            raise InvalidTag("The TagKey you have provided is invalid",
                             details={"TagKey": key[:MAX_TAG_KEY]})
        if key.startswith("aws:"):
            raise InvalidTag("The TagKey you have provided is invalid: the aws: prefix is "
                             "reserved for AWS use", details={"TagKey": key})
        if len(value) > MAX_TAG_VALUE:
            raise InvalidTag("The TagValue you have provided is invalid",
                             details={"TagKey": key})
        if key in seen:
            raise InvalidTag("Cannot provide multiple Tags with the same key",
                             details={"TagKey": key})
        seen.add(key)
    return tags


def _response_document(tag):
    return etree.Element(tag, nsmap={None: S3_NS})


def _xml_bytes(root):
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
