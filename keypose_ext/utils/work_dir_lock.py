"""One training run per work dir.

Two runs writing the same work dir overwrite each other's checkpoints and
``last_checkpoint``. The first run holds a POSIX lock on ``<work_dir>/.keypose_run.lock``;
a second one fails at once with a message naming the process that holds it. POSIX
(``lockf``) locks belong to the process: the kernel drops them when it dies (even by
SIGKILL), and forked dataloader workers do not inherit them, so a stale lock cannot
outlive its run.
"""
import fcntl
import os
import os.path as osp
import socket
from typing import Dict

from .errors import UserRuntimeError

LOCK_NAME = '.keypose_run.lock'
# realpath of the lock file -> open fd. Closing any fd of the file would drop a POSIX
# lock, so each file is opened once per process.
_HELD: Dict[str, int] = {}


def acquire_work_dir_lock(work_dir: str) -> bool:
    """Lock ``work_dir`` for this process.

    Returns:
        True if this call took the lock, False if this process already held it.

    Raises:
        UserRuntimeError: Another live process holds it.
    """
    os.makedirs(work_dir, exist_ok=True)
    path = osp.realpath(osp.join(work_dir, LOCK_NAME))
    if path in _HELD:
        return False
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 200).decode(errors='replace').strip() or 'unknown'
        os.close(fd)
        raise UserRuntimeError(
            f'work dir {work_dir} is in use by another training run (process {holder}); '
            'wait for it to finish or stop it, or pass another --work-dir') from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'{os.getpid()} on {socket.gethostname()}\n'.encode(), 0)
    _HELD[path] = fd
    return True


def release_work_dir_lock(work_dir: str) -> None:
    """Drop this process's lock on ``work_dir`` (a no-op if it holds none)."""
    fd = _HELD.pop(osp.realpath(osp.join(work_dir, LOCK_NAME)), None)
    if fd is not None:
        os.close(fd)
