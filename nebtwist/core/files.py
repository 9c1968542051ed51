"""Writing the VM directories' files off the reactor thread.

Every VM placement writes a handful of small files on the front-end
(``vm.log`` lines, ``vm.xml``, ``transfer.<seq>.<action>``,
``deployment.<seq>``). On a slow disk each open costs about a millisecond, which
on the reactor thread stalled the API while thousands of VMs were placed. A
:class:`FileWriter` runs those writes, in order, on one worker thread:

* :meth:`FileWriter.write` writes whole files and fires once they are on disk,
  so a driver is called only after the files it reads exist;
* :meth:`FileWriter.append` adds a line to a log file, fire-and-forget.

Both run in the order they were asked for (one thread, one queue), so log
lines stay in order and a file is never read before it is written. Without a
reactor that runs threads (unit tests on a ``Clock``) the writes happen at
once, on the caller's thread.
"""

import os

from twisted.internet import defer
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from nebtwist.log import OneLogger

log = OneLogger("ONE")


def _write_files(files):
    for path, text in files:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)


def _append(path, text):
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        log.warn("cannot append to {path}: {e}", path=path, e=e.strerror)


class FileWriter:
    """Ordered file writes on one worker thread.

    :param reactor: a reactor providing ``IReactorThreads``; None (or a
        reactor without threads) writes synchronously.
    """

    def __init__(self, reactor=None):
        self.reactor = reactor if IReactorThreads.providedBy(reactor) else None
        self.pool = None  # started on first use, stopped by stop()

    def _pool(self):
        if self.pool is None:
            self.pool = ThreadPool(1, 1, name="nebtwist-files")
            self.pool.start()
        return self.pool

    def write(self, files):
        """Write ``files`` (``[(path, text), ...]``, folders made as needed; each
        file replaced whole, never seen half-written).

        :return: Deferred firing with None once written; errbacks with the
            OSError.
        """
        files = list(files)
        if self.reactor is None:
            return defer.maybeDeferred(_write_files, files)
        return deferToThreadPool(self.reactor, self._pool(), _write_files, files)

    def append(self, path, text):
        """Append ``text`` to ``path`` after every earlier request; errors are logged."""
        if self.reactor is None:
            _append(path, text)
        else:
            self._pool().callInThread(_append, path, text)

    def stop(self):
        """Finish the queued writes and stop the thread (blocks until done)."""
        if self.pool is not None:
            self.pool.stop()
            self.pool = None
