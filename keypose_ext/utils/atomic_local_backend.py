"""A local file backend whose writes are atomic, registered under its own name.

MMEngine's ``save_checkpoint`` serialises a checkpoint to bytes and hands them to the
file backend's ``put``; the stock ``LocalBackend`` writes in place, so a kill or a full
disk mid-write leaves a truncated ``epoch_N.pth``. This backend writes a temporary file
beside the target, fsyncs it and renames it over the target, so the file is complete or
absent (``keypose_ext.utils.io.atomic_write``), with the usual 0644 permissions.

It is registered as ``'keypose_atomic_local'`` and used only where asked for
(``KeyposeCheckpointHook`` picks it for local folders, or
``backend_args=dict(backend='keypose_atomic_local')``); mmengine's ``'local'`` backend
stays what it is.
"""
from pathlib import Path
from typing import Union

from mmengine.fileio import LocalBackend, register_backend

from .io import atomic_write

BACKEND_NAME = 'keypose_atomic_local'


class AtomicLocalBackend(LocalBackend):
    """``LocalBackend`` with atomic ``put``/``put_text``."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        with atomic_write(str(filepath), 'wb') as f:
            f.write(obj)

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)


register_backend(BACKEND_NAME, AtomicLocalBackend)
