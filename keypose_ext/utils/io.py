"""The project's one JSON loader and one atomic writer.

Every annotation/manifest/split file goes through :func:`load_json`, so a missing or
malformed file always ends in the same one-line user error naming the file and the fix;
every file the project writes goes through :func:`atomic_write`, so a crash or a full
disk leaves the old file or the new one, never half of one.
"""
import contextlib
import json
import os
import os.path as osp
import tempfile
from typing import Any, Iterator, Optional

from .errors import UserFileNotFoundError, UserValueError


def load_json(path: str, what: str = 'JSON file', fix: Optional[str] = None) -> Any:
    """Read a JSON file; a missing or malformed file raises one user error.

    Args:
        path: The file to read.
        what: What the file is, for the message (``'MP-100 annotation file'``).
        fix: How to make or repair it, appended to the message.

    Returns:
        The decoded JSON value.
    """
    hint = f'; {fix}' if fix else ''
    if not path or not osp.isfile(path):
        raise UserFileNotFoundError(f'{what} not found: {path!r}{hint}')
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise UserValueError(f'{path}: malformed JSON at line {e.lineno} column {e.colno}: '
                             f'{e.msg}{hint}') from None
    except UnicodeDecodeError as e:
        raise UserValueError(f'{path}: not a UTF-8 text file ({e.reason}){hint}') from None


@contextlib.contextmanager
def atomic_write(path: str, mode: str = 'wb', mode_bits: int = 0o644) -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    On any exception (or a kill) the target is untouched and the temporary file is
    removed (a kill leaves a ``.tmp_*`` file that :func:`remove_stale_temporaries` cleans).
    The file gets ``mode_bits`` (0644 by default) instead of ``mkstemp``'s 0600, as a
    plain ``open`` would under the usual umask.

    Example::

        with atomic_write('out/annotations.json', 'w') as f:
            json.dump(data, f)
    """
    path = str(path)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp_', suffix='_' + osp.basename(path))
    try:
        os.chmod(tmp, mode_bits & ~_umask())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def remove_stale_temporaries(folder: str) -> list:
    """Delete ``.tmp_*`` files left in ``folder`` by a killed :func:`atomic_write`."""
    removed = []
    if osp.isdir(folder):
        for name in os.listdir(folder):
            if name.startswith('.tmp_'):
                with contextlib.suppress(OSError):
                    os.remove(osp.join(folder, name))
                    removed.append(name)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
