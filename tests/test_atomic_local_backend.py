import os
import stat

import pytest
from mmengine.fileio import LocalBackend, get_file_backend

from keypose_ext.utils.atomic_local_backend import BACKEND_NAME, AtomicLocalBackend


def test_only_used_when_asked_for(tmp_path):
    assert type(get_file_backend(str(tmp_path / 'a.pth'))) is LocalBackend  # 'local' untouched
    backend = get_file_backend(str(tmp_path / 'a.pth'), backend_args=dict(backend=BACKEND_NAME))
    assert isinstance(backend, AtomicLocalBackend)


def test_writes_complete_files_with_usual_permissions(tmp_path):
    backend = AtomicLocalBackend()
    backend.put(b'complete', tmp_path / 'sub' / 'a.pth')
    assert (tmp_path / 'sub' / 'a.pth').read_bytes() == b'complete'
    backend.put_text('text', tmp_path / 'b.txt')
    assert (tmp_path / 'b.txt').read_text() == 'text'
    umask = os.umask(0)
    os.umask(umask)
    mode = stat.S_IMODE(os.stat(tmp_path / 'sub' / 'a.pth').st_mode)
    assert mode == 0o644 & ~umask  # not mkstemp's 0600


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / 'epoch_1.pth'
    target.write_bytes(b'old checkpoint')

    def disk_full(fd):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(os, 'fsync', disk_full)
    with pytest.raises(OSError):
        AtomicLocalBackend().put(b'new but never finished', target)
    monkeypatch.undo()
    assert target.read_bytes() == b'old checkpoint'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['epoch_1.pth']
