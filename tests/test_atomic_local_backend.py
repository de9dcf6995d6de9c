import os

import pytest
from mmengine.fileio import get_file_backend

from keypose_ext.utils.atomic_local_backend import AtomicLocalBackend


def test_local_paths_use_atomic_backend(tmp_path):
    backend = get_file_backend(str(tmp_path / 'a.pth'))
    assert isinstance(backend, AtomicLocalBackend)
    backend.put(b'complete', tmp_path / 'sub' / 'a.pth')
    assert (tmp_path / 'sub' / 'a.pth').read_bytes() == b'complete'
    backend.put_text('text', tmp_path / 'b.txt')
    assert (tmp_path / 'b.txt').read_text() == 'text'


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / 'epoch_1.pth'
    target.write_bytes(b'old checkpoint')
    real_fsync = os.fsync

    def disk_full(fd):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(os, 'fsync', disk_full)
    with pytest.raises(OSError):
        AtomicLocalBackend().put(b'new but never finished', target)
    monkeypatch.setattr(os, 'fsync', real_fsync)
    assert target.read_bytes() == b'old checkpoint'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['epoch_1.pth']
