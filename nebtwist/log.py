"""Logging in OpenNebula's ``oned.log`` style, through ``twisted.logger``.

Every nebtwist logger is a :class:`OneLogger` naming its OpenNebula module
tag (``ONE``, ``ReM`` RequestManager, ``DiM`` DispatchManager, ``LCM``
LifeCycleManager, ``VMM``, ``TM``, ``InM`` InformationManager, ``HKM`` hooks,
``SCHED`` scheduler, ``VM`` per-VM lines). :class:`OnedLogObserver` writes
events as OpenNebula 3.4 does (``src/log/Log.cc``)::

    Thu Jan 14 18:03:11 2010 [ONE][I]: Init OpenNebula Log system

Levels follow oned.conf ``DEBUG_LEVEL``: 0 ERROR, 1 WARNING, 2 INFO, 3 DEBUG.
"""

import time

from twisted.logger import Logger, LogLevel, formatEvent

#: DEBUG_LEVEL number -> lowest twisted LogLevel written.
_LEVELS = {0: LogLevel.error, 1: LogLevel.warn, 2: LogLevel.info, 3: LogLevel.debug}
_LETTER = {
    LogLevel.debug: "D",
    LogLevel.info: "I",
    LogLevel.warn: "W",
    LogLevel.error: "E",
    LogLevel.critical: "E",
}
_ORDER = [LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical]


class OneLogger(Logger):
    """A ``twisted.logger.Logger`` whose events carry ``one_module``.

    :param module: the OpenNebula module tag, e.g. ``"VMM"``.
    """

    def __init__(self, module, observer=None):
        super().__init__(namespace="nebtwist." + module, observer=observer)
        self.one_module = module

    def emit(self, level, format=None, **kwargs):
        kwargs.setdefault("one_module", self.one_module)
        if "message" in kwargs:
            # Twisted's legacy-log wrapper overwrites an event's "message" key
            # with () when it is not a tuple; keep the text under another key.
            kwargs["one_message"] = kwargs.pop("message")
            if format is not None:
                format = format.replace("{message}", "{one_message}")
        super().emit(level, format, **kwargs)


def level_for(debug_level):
    """Map oned.conf ``DEBUG_LEVEL`` (0-3; out of range clamps) to a LogLevel."""
    try:
        n = int(debug_level)
    except (TypeError, ValueError):
        n = 3
    return _LEVELS[max(0, min(3, n))]


def format_oned_line(event, when=None):
    """Format one event as an oned.log line (no trailing newline).

    Events without ``one_module`` (Twisted's own) are tagged ``ONE``.
    A failure attached to the event is appended as its one-line summary.
    """
    level = event.get("log_level", LogLevel.info)
    module = event.get("one_module", "ONE")
    text = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        text = f"{text} {failure.getErrorMessage()}".strip()
    stamp = time.strftime(
        "%a %b %d %H:%M:%S %Y", time.localtime(when or event.get("log_time") or time.time())
    )
    text = text.replace("\n", " ")
    return f"{stamp} [{module}][{_LETTER.get(level, 'I')}]: {text}"


class OnedLogObserver:
    """A log observer writing oned.log lines to a text file object.

    :param stream: an open text file (line-buffered is best).
    :param debug_level: oned.conf ``DEBUG_LEVEL`` (0..3).
    """

    def __init__(self, stream, debug_level=3):
        self._stream = stream
        self._min = _ORDER.index(level_for(debug_level))

    def __call__(self, event):
        level = event.get("log_level", LogLevel.info)
        if _ORDER.index(level) < self._min:
            return
        self._stream.write(format_oned_line(event) + "\n")
        self._stream.flush()
