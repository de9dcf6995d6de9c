"""run_main and load_config: user errors are one line, bugs keep their traceback."""
import errno

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from keypose_ext.utils.cli import as_user_error, load_config, one_line, run_main
from keypose_ext.utils.errors import (KeyposeUserError, UserFileNotFoundError, UserRuntimeError,
                                      UserValueError)


def _raise(exc):

    def main():
        raise exc

    return main


@pytest.mark.parametrize('exc', [
    UserValueError('images[3]: bad; fix it'),
    UserFileNotFoundError('x.json not found; make it'),
    UserRuntimeError('work dir in use')
])
def test_user_errors_print_one_line_and_exit_2(capsys, exc, monkeypatch):
    monkeypatch.delenv('KEYPOSE_TRACEBACK', raising=False)
    with pytest.raises(SystemExit) as e:
        run_main(_raise(exc))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith(f'error: {exc} (KEYPOSE_TRACEBACK=1')


@pytest.mark.parametrize('exc', [
    ValueError('a bug'),
    KeyError('a bug'),
    TypeError('a bug'),
    FileNotFoundError('a bug'),
    AssertionError('a bug')
])
def test_other_errors_keep_their_traceback(exc, monkeypatch):
    monkeypatch.delenv('KEYPOSE_TRACEBACK', raising=False)
    with pytest.raises(type(exc)):
        run_main(_raise(exc))


def test_keypose_traceback_shows_user_errors_too(monkeypatch):
    monkeypatch.setenv('KEYPOSE_TRACEBACK', '1')
    with pytest.raises(UserValueError):
        run_main(_raise(UserValueError('x')))


def test_exit_status_of_main_is_kept():
    with pytest.raises(SystemExit) as e:
        run_main(lambda: 1)
    assert e.value.code == 1


def test_mmengine_build_rewrap_keeps_our_class():
    from mmpose.registry import MODELS

    @MODELS.register_module(force=True)
    class _RaisesUserError(torch.nn.Module):

        def __init__(self):
            raise UserValueError('head.num_joints=3 but the codec has 9; set both to 9')

    try:
        with pytest.raises(UserValueError) as e:
            MODELS.build(dict(type='_RaisesUserError'))
    finally:
        MODELS._module_dict.pop('_RaisesUserError')
    assert as_user_error(e.value) is e.value
    # the re-raise of mmengine's builders (some versions): type(e)(f'class X in ...: {e}')
    wrapped = type(e.value)(f'class `_RaisesUserError` in x.py: {e.value}')
    assert isinstance(wrapped, KeyposeUserError) and isinstance(wrapped, ValueError)


class _Bad(Dataset):

    def __len__(self):
        return 2

    def __getitem__(self, i):
        raise UserValueError('frame 000001.jpg: empty file; re-run the converter')


def test_dataloader_worker_user_error_is_one_line():
    loader = DataLoader(_Bad(), num_workers=1)
    with pytest.raises(UserValueError) as e:
        next(iter(loader))
    assert 'Original Traceback' in str(e.value)  # torch's re-raise: the worker's stack
    assert one_line(e.value) == 'frame 000001.jpg: empty file; re-run the converter'


def test_os_errors_a_user_can_fix():
    user = as_user_error(PermissionError(errno.EACCES, 'Permission denied', '/data/x'))
    assert isinstance(user, KeyposeUserError) and '/data/x' in str(user)
    full = as_user_error(OSError(errno.ENOSPC, 'No space left on device', '/w/e.pth'))
    assert 'disk is full' in str(full) and '/w/e.pth' in str(full)
    assert as_user_error(OSError(errno.EBADF, 'Bad file descriptor')) is None  # a bug


def test_mmpose_load_image_failure(tmp_path):
    empty = tmp_path / 'f.jpg'
    empty.write_bytes(b'')
    exc = AssertionError(f'`failed to load image: {empty}` occurs when loading `{empty}`.'
                         'Please check whether the file exists.')
    assert str(as_user_error(exc)).startswith(f'image {empty} is empty (0 bytes)')


@pytest.mark.parametrize('text,needle', [
    ("model = dict(\n", 'line 1: syntax error'),
    ("x = 1\ny = undefined_name\n", 'line 2: NameError'),
    ("_base_ = ['./missing_base.py']\n", 'missing_base.py'),
])
def test_load_config_errors(tmp_path, text, needle):
    path = tmp_path / 'cfg.py'
    path.write_text(text)
    with pytest.raises(UserValueError, match=needle) as e:
        load_config(str(path))
    assert str(path) in str(e.value) or 'missing_base' in str(e.value)


def test_load_config_keeps_the_traceback_of_code_it_calls(tmp_path):
    path = tmp_path / 'cfg.py'
    path.write_text("x = __import__('json').loads(5)\n")  # raised in json: not ours to judge
    with pytest.raises(TypeError):
        load_config(str(path))


def test_load_config_bad_cfg_options(tmp_path):
    path = tmp_path / 'cfg.py'
    path.write_text('pipeline = [dict(type="A")]\n')
    with pytest.raises(UserValueError, match='--cfg-options'):
        load_config(str(path), {'pipeline.5.type': 'B'})
    with pytest.raises(UserFileNotFoundError, match='not found'):
        load_config(str(tmp_path / 'none.py'))
