"""Local file backend whose writes are atomic, so checkpoints are never half-written.

MMEngine's ``CheckpointHook`` serialises a checkpoint to bytes and hands them to the
file backend's ``put``; the stock ``LocalBackend`` writes in place, so a crash or a full
disk mid-write leaves a truncated ``epoch_N.pth`` (and ``last_checkpoint`` pointing at
it). Writing to a temporary file in the same folder and renaming it over the target
makes the file either complete or absent.
"""
import os
import os.path as osp
import tempfile
from pathlib import Path
from typing import Union

from mmengine.fileio import LocalBackend, register_backend


class AtomicLocalBackend(LocalBackend):
    """``LocalBackend`` with atomic ``put``/``put_text``."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        self._atomic_write(filepath, obj, 'wb')

    def put_text(self, obj: str, filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        self._atomic_write(filepath, obj.encode(encoding), 'wb')

    @staticmethod
    def _atomic_write(filepath, data: bytes, mode: str) -> None:
        filepath = str(filepath)
        folder = osp.dirname(osp.abspath(filepath))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp_', suffix=osp.basename(filepath))
        try:
            with os.fdopen(fd, mode) as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, filepath)
        except BaseException:
            if osp.exists(tmp):
                os.remove(tmp)
            raise


register_backend('local', AtomicLocalBackend, force=True, prefixes='')
