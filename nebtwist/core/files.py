"""Writing the VM directories' files off the reactor thread.

Every VM placement writes a handful of small files on the front-end
(``vm.log`` lines, ``vm.xml``, ``transfer.<seq>.<action>``,
``deployment.<seq>``). On a slow disk each open costs about a millisecond, which
on the reactor thread stalled the API while thousands of VMs were placed. A
:class:`FileWriter` runs those writes on worker threads, each VM folder's in
order on the same thread:

* :meth:`FileWriter.write` writes whole files and fires once they are on disk,
  so a driver is called only after the files it reads exist;
* :meth:`FileWriter.append` adds a line to a log file, fire-and-forget.

A folder's requests run in the order they were asked for (one thread, one
queue per folder), so log lines stay in order and a file is never read
before it is written. Without a reactor that runs threads (unit tests on a
``Clock``) the writes happen at once, on the caller's thread.
"""

import collections
import os
import threading

from twisted.internet import defer
from twisted.internet.interfaces import IReactorThreads
from twisted.python.failure import Failure

from nebtwist.log import OneLogger

log = OneLogger("ONE")

#: Requests the writer thread takes at most per batch: writes are reported
#: done at the end of their batch, so this bounds how long one waits.
BATCH = 256


class _Folders:
    """Folders known to exist (the writer thread's own): each is made once,
    not stat'ed again on every file; one that vanished is made again."""

    def __init__(self):
        self.known = set()

    def open(self, path, mode):
        folder = os.path.dirname(path)
        if folder not in self.known:
            os.makedirs(folder, exist_ok=True)
            self.known.add(folder)
        try:
            return open(path, mode, encoding="utf-8")
        except FileNotFoundError:
            self.known.discard(folder)
            os.makedirs(folder, exist_ok=True)
            self.known.add(folder)
            return open(path, mode, encoding="utf-8")


def _write_files(files, folders=None):
    folders = folders or _Folders()
    for path, text in files:
        tmp = f"{path}.tmp"
        with folders.open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)


def _append(path, text, folders=None):
    try:
        with (folders or _Folders()).open(path, "a") as f:
            f.write(text)
    except OSError as e:
        log.warn("cannot append to {path}: {e}", path=path, e=e.strerror)


#: Writer threads: each VM folder belongs to one of them (by its path), so a
#: folder's files are still written in the order asked, while the slow part,
#: creating files on disk (0.2 ms to several ms each on a busy virtual disk),
#: goes on for several folders at once (the threads wait in the kernel, not
#: on the interpreter lock).
THREADS = 4


class _Worker:
    """One writer thread and its queue."""

    def __init__(self, reactor, name):
        self.reactor = reactor
        self.name = name
        self.queue = collections.deque()
        self.wake = threading.Condition(threading.Lock())
        self.thread = None  # started on first use, stopped by stop()
        self.stopping = False
        self.folders = _Folders()

    def put(self, item):
        with self.wake:
            self.queue.append(item)
            if self.thread is None:
                self.stopping = False
                self.thread = threading.Thread(target=self.run, name=self.name, daemon=True)
                self.thread.start()
            self.wake.notify()

    def run(self):
        while True:
            with self.wake:
                while not self.queue and not self.stopping:
                    self.wake.wait()
                if not self.queue:
                    return  # stopping, nothing left
                queue = self.queue
                batch = [queue.popleft() for _ in range(min(len(queue), BATCH))]
            self.do(batch)

    def do(self, batch):
        appends = {}  # path -> [text]; dicts keep the order files were first seen
        done = []
        for item in batch:
            if item[0] == "a":
                appends.setdefault(item[1], []).append(item[2])
            else:
                _, files, d = item
                try:
                    _write_files(files, self.folders)
                    done.append((d, None))
                except OSError as e:
                    done.append((d, Failure(e)))
        for path, texts in appends.items():
            _append(path, "".join(texts), self.folders)
        if done:
            self.reactor.callFromThread(_fire, done)

    def stop(self):
        with self.wake:
            thread, self.thread = self.thread, None
            self.stopping = True
            self.wake.notify()
        if thread is not None:
            thread.join()


class FileWriter:
    """Ordered file writes on worker threads.

    Each folder's requests go to one of :data:`THREADS` writer threads (by
    the folder's path), in the order asked. A thread takes every request
    queued since it last looked (up to :data:`BATCH`) as one batch:
    whole-file writes in the order asked, appends gathered per file (one
    open per file per batch, its lines in order) and written before the
    batch's writes are reported done, in one hand-back to the reactor. A
    placement of thousands of VMs, each logging several ``vm.log`` lines,
    thus costs a few opens per batch instead of one per line.

    :param reactor: a reactor providing ``IReactorThreads``; None (or a
        reactor without threads) writes synchronously.
    :param threads: writer threads (default :data:`THREADS`).
    """

    def __init__(self, reactor=None, threads=None):
        self.reactor = reactor if IReactorThreads.providedBy(reactor) else None
        n = max(1, threads or THREADS)
        self._workers = [_Worker(self.reactor, f"nebtwist-files-{i}") for i in range(n)]

    def _worker(self, path):
        folder = os.path.dirname(path)
        return self._workers[hash(folder) % len(self._workers)]

    def write(self, files):
        """Write ``files`` (``[(path, text), ...]``, folders made as needed; each
        file replaced whole, never seen half-written).

        :return: Deferred firing with None once written, after every append
            asked before it to a file in the same folder as the first of
            ``files`` (a VM's folder); errbacks with the OSError.
        """
        files = list(files)
        if self.reactor is None:
            return defer.maybeDeferred(_write_files, files)
        d = defer.Deferred()
        if not files:
            d.callback(None)
            return d
        self._worker(files[0][0]).put(("w", files, d))
        return d

    def append(self, path, text):
        """Append ``text`` to ``path`` after every earlier request; errors are logged."""
        if self.reactor is None:
            _append(path, text)
        else:
            self._worker(path).put(("a", path, text))

    def stop(self):
        """Finish the queued writes and stop the threads (blocks until done)."""
        for worker in self._workers:
            worker.stop()


def _fire(done):
    for d, failure in done:
        if failure is None:
            d.callback(None)
        else:
            d.errback(failure)
