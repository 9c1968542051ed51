"""The file operations of the S3 repository's store.

Atomic JSON sidecars (:func:`_write_json`: a temporary name, then a
rename), reading them back, quiet removal, the joins and copies of
multipart uploads and copies (run in a thread), new staging files and
``os.writev`` of a list of pieces. No HTTP here; see
:mod:`nebtwist.api.s3.store` for the layout these files make.
"""

import hashlib
import json
import os
import secrets
import shutil


def _write_json(path, document):
    """Write ``document`` as JSON to ``path`` atomically (temporary name,
    then rename)."""
    tmp = f"{path}.tmp-{secrets.token_hex(4)}"
    data = json.dumps(document, separators=(",", ":")).encode("utf-8")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, [data])
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _concatenate(sources, target):
    """Copy the files ``sources`` one after the other into ``target`` (in
    the kernel where it can: ``copy_file_range``). Runs in a thread."""
    with open(target, "wb") as out:
        for source in sources:
            with open(source, "rb") as f:
                remaining = os.fstat(f.fileno()).st_size
                try:
                    while remaining > 0:
                        n = os.copy_file_range(f.fileno(), out.fileno(), remaining)
                        if n <= 0:
                            break
                        remaining -= n
                except OSError:
                    pass
                if remaining > 0:  # no copy_file_range here: copy the rest by hand
                    f.seek(os.fstat(f.fileno()).st_size - remaining)
                    out.seek(0, os.SEEK_END)
                    shutil.copyfileobj(f, out, 1024 * 1024)


def _copy_range(source, first, length, target):
    """Copy ``length`` bytes of the file ``source`` from offset ``first``
    to the new file ``target``; the MD5 hex of those bytes. Runs in a thread.

    :raises OSError: ``source`` is gone (FileNotFoundError) or shorter.
    """
    md5 = hashlib.md5(usedforsecurity=False)
    with open(source, "rb") as f, open(target, "wb") as out:
        f.seek(first)
        remaining = length
        while remaining > 0:
            data = f.read(min(remaining, 1024 * 1024))
            if not data:
                raise OSError(f"{source} is shorter than its sidecar says")
            md5.update(data)
            out.write(data)
            remaining -= len(data)
    return md5.hexdigest()


def _mkstemp(folder, prefix):
    while True:
        path = os.path.join(folder, prefix + secrets.token_hex(8))
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), path
        except FileExistsError:
            continue


def _write_all(fd, pieces):
    """``os.writev`` every piece (all of it, in order)."""
    pieces = [memoryview(p) for p in pieces if len(p)]
    while pieces:
        written = os.writev(fd, pieces[:512])
        while written and pieces:
            n = len(pieces[0])
            if written >= n:
                written -= n
                pieces.pop(0)
            else:
                pieces[0] = pieces[0][written:]
                written = 0
