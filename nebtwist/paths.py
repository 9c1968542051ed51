"""Where the shipped files (``conf/``, ``drivers/``) are found.

In a source checkout (or an editable install) they sit beside the
``nebtwist`` package; a wheel install puts them under
``<sys.prefix>/share/nebtwist``.
"""

import os
import sys

_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shipped(*parts):
    """Absolute path of a shipped file or folder, e.g. ``shipped("conf", "oned.conf")``.

    Looks beside the package first, then under ``<sys.prefix>/share/nebtwist``;
    returns the first candidate if neither exists.
    """
    candidates = [
        os.path.join(_HERE, *parts),
        os.path.join(sys.prefix, "share", "nebtwist", *parts),
    ]
    for c in candidates:
        if os.path.exists(c):
            return c
    return candidates[0]
