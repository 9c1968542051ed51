"""Requests the OCCI front needs beyond the shared ones (mixed into
:class:`nebtwist.core.requests.Requests`)."""

import hmac

from nebtwist.errors import AuthenticationError


class OCCIRequests:
    """Mixin of :class:`~nebtwist.core.requests.Requests` (which provides
    ``nebula``)."""

    def authenticate_sha1(self, name, digest):
        """The :class:`~nebtwist.core.objects.User` ``name`` whose stored
        password (the SHA1 hex of the password, 3.4 ``core`` driver) is
        ``digest``: OpenNebula 3.x's OCCI and EC2 clients sent that hex instead
        of the password (``src/cloud/occi/lib/OCCIClient.rb``,
        ``CloudAuth/OCCICloudAuth.rb``). Same refusals as
        :meth:`Nebula.authenticate <nebtwist.core.nebula.Nebula.authenticate>`.

        :param digest: 40 hex digits (any case).
        :raises AuthenticationError: unknown or disabled user, ``public``
            driver, or a digest that does not match.
        """
        user = self.nebula.userpool.find(name) if isinstance(name, str) else None
        if (user is None or not user.enabled or user.auth_driver == "public"
                or not isinstance(digest, str)
                or not hmac.compare_digest(user.password, digest.lower())):
            raise AuthenticationError("User couldn't be authenticated, aborting call.")
        return user
