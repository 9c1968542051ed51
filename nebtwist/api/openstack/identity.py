"""Keystone v3, the part clients need to log in: versions, password tokens.

Follows the Identity API v3 reference (``openstack/keystone:api-ref/source/
v3/authenticate-v3.inc``; samples ``auth-password-project-scoped-
response.json``, ``identity-versions-response.json``):

* ``GET /identity`` -> 300, the versions document; ``GET /identity/v3`` ->
  200, the v3 version document.
* ``POST /identity/v3/auth/tokens`` (``password`` method) -> 201, the token
  in the ``X-Subject-Token`` header and the token body (user, project,
  roles, catalog, ``expires_at``).
* ``GET``/``HEAD /identity/v3/auth/tokens`` (the caller's ``X-Auth-Token``
  and the ``X-Subject-Token`` to check) -> 200 with the body, or 404;
  ``DELETE`` revokes the subject token (204).

Users and passwords are nebtwist's (``Requests.authenticate``, the SHA1
check of ``one.*``); the only domain is ``Default`` (id ``default``). A
user's only **project is its group**: project ``id`` is the group id
(decimal string), ``name`` the group name. A token scoped to another
project, a domain or the system is refused (401); an unscoped request gets
a token scoped to the user's group, as Keystone scopes to the user's
default project. User ids are nebtwist user ids (decimal strings); a user
is named by ``name`` (a ``user.id`` alone is refused, 401). Roles:
``admin``, ``member`` and ``reader`` for the ``oneadmin`` group, ``member``
and ``reader`` for others.

Tokens are issued by the front: 32 random bytes (URL-safe base64), kept in
memory (a restart forgets them: clients log in again), valid for
openstack.conf ``TOKEN_LIFETIME`` seconds (default 3600, Keystone's
``[token] expiration``).
"""

import secrets

from nebtwist.api.openstack.common import KeystoneError, iso8601
from nebtwist.errors import AuthenticationError

DOMAIN = {"id": "default", "name": "Default"}
#: The identity version served (Keystone's v3.14, ``identity-versions-response.json``).
VERSION_ID = "v3.14"
_UPDATED = "2020-04-07T00:00:00Z"
_MEDIA = [{"base": "application/json",
           "type": "application/vnd.openstack.identity-v3+json"}]

_UNAUTHORIZED = "The request you have made requires authentication."


def unauthorized(message=_UNAUTHORIZED, base=None):
    """A Keystone 401 (with ``WWW-Authenticate: Keystone uri=...``)."""
    headers = {"WWW-Authenticate": f'Keystone uri="{base}/identity"'} if base else {}
    return KeystoneError(401, message, headers)


class Token:
    """An issued token: ``user`` (the core User), ``project`` (group id,
    int), ``project_name``, ``issued``/``expires`` (UNIX seconds),
    ``audit_id`` (str)."""

    __slots__ = ("user", "project", "project_name", "issued", "expires", "audit_id")

    def __init__(self, user, issued, expires):
        self.user = user
        self.project = user.gid
        self.project_name = user.gname
        self.issued = issued
        self.expires = expires
        self.audit_id = secrets.token_urlsafe(16)[:22]


class TokenStore:
    """Tokens issued by this front, in memory.

    :param clock: ``IReactorTime`` (``seconds()``).
    :param lifetime: seconds a token is valid.
    """

    def __init__(self, clock, lifetime=3600):
        self.clock = clock
        self.lifetime = lifetime
        self._tokens = {}
        self._next_sweep = 0.0

    def __len__(self):
        return len(self._tokens)

    def issue(self, user):
        """A new token for ``user``: ``(token string, Token)``."""
        now = self.clock.seconds()
        self._sweep(now)
        text = secrets.token_urlsafe(32)
        token = Token(user, now, now + self.lifetime)
        self._tokens[text] = token
        return text, token

    def lookup(self, text):
        """The live :class:`Token` of ``text``, or None (unknown, expired,
        revoked, its user disabled, or its user's group changed since it
        was issued)."""
        token = self._tokens.get(text) if isinstance(text, str) else None
        if token is None:
            return None
        if (token.expires <= self.clock.seconds() or token.user.gid != token.project
                or not getattr(token.user, "enabled", True)):
            self._tokens.pop(text, None)
            return None
        return token

    def revoke(self, text):
        """Forget ``text``; whether it was live."""
        live = self.lookup(text) is not None
        self._tokens.pop(text, None)
        return live

    def _sweep(self, now):
        if now < self._next_sweep:
            return
        self._next_sweep = now + 60
        for text in [t for t, tok in self._tokens.items() if tok.expires <= now]:
            del self._tokens[text]


def versions(base):
    """``GET /identity``: (300, the versions document)."""
    return 300, {"versions": {"values": [_version(base)]}}


def version(base):
    """``GET /identity/v3``: (200, the v3 version document)."""
    return 200, {"version": _version(base)}


def _version(base):
    return {"id": VERSION_ID, "status": "stable", "updated": _UPDATED,
            "links": [{"rel": "self", "href": f"{base}/identity/v3/"}],
            "media-types": _MEDIA}


def _field(obj, key, kind=str):
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, kind) else None


def _check_domain(holder, base):
    """The ``domain`` of a user or project must be Default (by id or name)."""
    domain = holder.get("domain")
    if domain is None:
        return
    if not isinstance(domain, dict) or not (domain.get("id") == DOMAIN["id"]
                                            or domain.get("name") == DOMAIN["name"]):
        raise unauthorized("Could not find domain: only the Default domain exists.", base)


def read_password_auth(body, base):
    """(user name, password, project dict or None) of a token request body.

    :raises KeystoneError: 400 a malformed body; 401 a method other than
        ``password``, a user given by id only, another domain, a domain or
        system scope.
    """
    auth = _field(body, "auth", dict)
    identity = _field(auth, "identity", dict)
    if identity is None:
        raise KeystoneError(400, "Expecting to find auth.identity in the request body.")
    methods = identity.get("methods")
    if not isinstance(methods, list) or not methods:
        raise KeystoneError(400, "Expecting to find identity.methods in the request body.")
    if methods != ["password"]:
        raise unauthorized("Only the password authentication method is supported.", base)
    user = _field(_field(identity, "password", dict), "user", dict)
    if user is None:
        raise KeystoneError(400, "Expecting to find password.user in the request body.")
    name, password = _field(user, "name"), _field(user, "password")
    if name is None:
        raise unauthorized("Name the user (user.name); user.id is not supported.", base)
    if password is None:
        raise KeystoneError(400, "Expecting to find password.user.password in the request body.")
    _check_domain(user, base)
    scope = auth.get("scope")
    if scope is None or scope == "unscoped":
        return name, password, None
    if not isinstance(scope, dict):
        raise KeystoneError(400, "The scope must be an object.")
    project = scope.get("project")
    if set(scope) != {"project"} or not isinstance(project, dict):
        raise unauthorized("Only project-scoped tokens are supported (the project is "
                           "the user's group).", base)
    _check_domain(project, base)
    return name, password, project


def authenticate(requests, body, base):
    """The core User a password token request names, checked.

    :raises KeystoneError: see :func:`read_password_auth`; 401 a wrong
        user or password, or a project that is not the user's group.
    """
    name, password, project = read_password_auth(body, base)
    try:
        user = requests.authenticate(name, password)
    except AuthenticationError:
        raise unauthorized(_UNAUTHORIZED, base) from None
    if project is not None:
        pid, pname = project.get("id"), project.get("name")
        if (pid is None and pname is None) or (
                pid is not None and str(pid) != str(user.gid)) or (
                pname is not None and pname != user.gname):
            raise unauthorized(f"User {user.oid} has no access to project "
                               f"{pid if pid is not None else pname}.", base)
    return user


def roles(user):
    """The roles of ``user`` in its project (list of ``{"id", "name"}``)."""
    names = (["admin"] if user.gid == 0 or user.oid == 0 else []) + ["member", "reader"]
    return [{"id": name, "name": name} for name in names]


def catalog(base, region):
    """The service catalog: compute, image and identity endpoints under
    ``base`` (``scheme://host:port``), one public endpoint each in
    ``region``."""
    services = (("compute", "nova", "/compute/v2.1"), ("image", "glance", "/image"),
                ("identity", "keystone", "/identity"))
    out = []
    for kind, name, path in services:
        endpoints = [{"id": f"{name}-{interface}", "interface": interface, "region": region,
                      "region_id": region, "url": base + path}
                     for interface in ("public", "internal")]
        out.append({"id": name, "type": kind, "name": name, "endpoints": endpoints})
    return out


def token_body(token, base, region):
    """The ``{"token": ...}`` body of ``token``."""
    user = token.user
    return {"token": {
        "methods": ["password"],
        "audit_ids": [token.audit_id],
        "issued_at": iso8601(token.issued, micro=True),
        "expires_at": iso8601(token.expires, micro=True),
        "user": {"id": str(user.oid), "name": user.name, "domain": dict(DOMAIN),
                 "password_expires_at": None},
        "project": {"id": str(token.project), "name": token.project_name,
                    "domain": dict(DOMAIN)},
        "is_domain": False,
        "roles": roles(user),
        "catalog": catalog(base, region),
    }}
