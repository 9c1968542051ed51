"""The session cache behind ``SESSION_EXPIRATION_TIME`` (OpenNebula 3.4).

3.4 remembers a user's last successful session token for
``SESSION_EXPIRATION_TIME`` seconds (``User::valid_session``,
``UserPool::authenticate``) so that a client sending the same
``user:password`` again is not checked again (nor sent to an external
authentication driver) until the time runs out. 0 (the built-in default)
turns the cache off; the shipped oned.conf sets 900.

A cached session is trusted only while its user is still the same object in
the user pool, still enabled, and still has the password hash it had when the
session was checked: a deleted or disabled user, or a changed password,
invalidates the entry at once, without waiting for it to expire. Failed
checks are never cached.
"""


class SessionCache:
    """Successful ``user:password`` sessions, each trusted until it expires.

    :param clock: an ``IReactorTime`` (``seconds()``).
    :param ttl: seconds a checked session is trusted (``<= 0``: no caching).
    :param limit: most sessions kept; the expired ones are dropped first,
        then the oldest.
    """

    def __init__(self, clock, ttl, limit=10000):
        self.clock = clock
        self.ttl = float(ttl)
        self.limit = limit
        self._entries = {}
        self.checks = 0  # full password checks done (for tests and monitoring)

    def __len__(self):
        return len(self._entries)

    def __contains__(self, session):
        return session in self._entries

    def lookup(self, session, current):
        """The cached user of ``session`` if still valid, else None.

        :param current: ``uid -> User`` (the user pool's ``objects``), to
            check the user still exists as the same object.
        """
        entry = self._entries.get(session)
        if entry is None:
            return None
        user, password, expires = entry
        if (self.clock.seconds() < expires and current.get(user.oid) is user
                and user.enabled and user.password == password):
            return user
        del self._entries[session]
        return None

    def remember(self, session, user):
        """Trust ``session`` as ``user`` for :attr:`ttl` seconds (no-op if ttl <= 0)."""
        if self.ttl <= 0:
            return
        now = self.clock.seconds()
        if len(self._entries) >= self.limit:
            self._entries = {s: e for s, e in self._entries.items() if e[2] > now}
            while len(self._entries) >= self.limit:
                self._entries.pop(next(iter(self._entries)))
        self._entries[session] = (user, user.password, now + self.ttl)

    def forget_user(self, uid):
        """Drop every session of user ``uid`` (deleted, disabled, new password)."""
        self._entries = {s: e for s, e in self._entries.items() if e[0].oid != uid}

    def clear(self):
        """Drop every session."""
        self._entries.clear()
