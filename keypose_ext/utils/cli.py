"""Helpers shared by the tools: config loading and one-line user errors.

A tool's ``main`` runs under :func:`run_main`. A :class:`KeyposeUserError` (raised by our
components and tools with the file/field and the fix) ends in one line on stderr and
exit status 2. So do the few environment and data errors translated here
(:func:`as_user_error`: permissions, a full or read-only disk, an image mmpose cannot
decode). Everything else is a bug in our code or a library and keeps its traceback.
``KEYPOSE_TRACEBACK=1`` shows the traceback of user errors too.
"""
import ast
import errno
import os
import os.path as osp
import re
import sys
from typing import Callable, Optional

from .errors import KeyposeUserError, UserFileNotFoundError, UserRuntimeError, UserValueError

_OS_FIXES = {
    errno.EACCES: 'make it writable/readable for this user or choose another path',
    errno.EPERM: 'make it writable/readable for this user or choose another path',
    errno.EROFS: 'the file system is read-only; choose a path on a writable disk',
    errno.ENOSPC: 'the disk is full; free space or choose another disk',
    errno.EDQUOT: 'the disk quota is exceeded; free space or choose another disk',
}


def load_config(path: str, cfg_options=None):
    """Load a config file and apply ``--cfg-options``.

    A missing file, a syntax error, an error raised by the config's own code, a missing
    ``_base_`` file and a bad ``--cfg-options`` key end in one :class:`KeyposeUserError`.
    """
    from mmengine.config import Config
    if not osp.isfile(path):
        raise UserFileNotFoundError(
            f'config file {path!r} not found; pass a path such as '
            'configs/bottle/td-depthreg_res18_1xb16-40e_bottle-synthetic-96x96.py')
    _check_syntax(path)
    try:
        cfg = Config.fromfile(path)
    except SyntaxError as e:  # in a _base_ file; mmengine's message names it
        raise UserValueError(f'{e}; fix the Python syntax there') from None
    except KeyposeUserError:
        raise
    except Exception as e:
        frame, line = _raise_site(e)
        if frame.f_code.co_name == '<module>' and '_base_' in frame.f_globals:
            # raised by the config's own code (mmengine runs it with _base_ in globals)
            raise UserValueError(f'{frame.f_code.co_filename}, line {line}: '
                                 f'{type(e).__name__}: {e}; fix the config') from None
        if (isinstance(e, (FileNotFoundError, KeyError))
                and frame.f_globals.get('__name__', '').startswith('mmengine.config')):
            # mmengine: a missing _base_ file, a key defined by two bases
            raise UserValueError(f'config {path}: {_text(e)}; fix its _base_ list') from None
        raise  # e.g. a bug in code the config imports: keep the traceback
    if cfg_options:
        try:
            cfg.merge_from_dict(cfg_options)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise UserValueError(f'--cfg-options {_text(e)}; check the key path against '
                                 f'{path}') from None
    return cfg


def _check_syntax(path: str) -> None:
    try:
        with open(path, encoding='utf-8') as f:
            ast.parse(f.read(), filename=path)
    except SyntaxError as e:
        raise UserValueError(f'{path}, line {e.lineno}: syntax error: {e.msg}; fix the '
                             'Python syntax of the config') from None
    except UnicodeDecodeError:
        raise UserValueError(f'{path}: not a UTF-8 text file; pass a Python config') from None


def _raise_site(exc: BaseException):
    """(frame, line) where ``exc`` was raised: the innermost traceback entry."""
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame, tb.tb_lineno


def build_runner(cfg):
    """The config's ``runner_type`` (default: ``KeyposeRunner``), built from ``cfg``."""
    from mmpose.registry import RUNNERS

    import keypose_ext  # noqa: F401  (registers KeyposeRunner)
    cfg.setdefault('runner_type', 'KeyposeRunner')
    _check_fsdp_device(cfg)
    return RUNNERS.build(cfg)


def _check_fsdp_device(cfg) -> None:
    """An FSDP config on a machine without CUDA fails deep inside MMEngine/PyTorch (its
    launcher selects a CUDA device, CPU offload pins host memory): say so in one line.
    A wrapper placed on the CPU explicitly (``model_wrapper.device_id=cpu``, as the
    tests do in a gloo group they set up) is let through."""
    import torch
    strategy = cfg.get('strategy') or {}
    if cfg.get('runner_type') != 'FlexibleRunner' or strategy.get('type') != 'FSDPStrategy':
        return
    device_id = (strategy.get('model_wrapper') or {}).get('device_id')
    if torch.cuda.is_available() or str(device_id) == 'cpu':
        return
    name = cfg.filename or 'the config'
    raise UserRuntimeError(
        f'{name}: strategy FSDPStrategy (PyTorch FSDP with CPU offload) needs a CUDA GPU and '
        'none is visible; on this machine train phase 2 with configs/sapiens/'
        'stage1_gtx1650.py (LoRA route; float32 on a CPU)')


def enable_visualization(cfg, args) -> None:
    """``--show``/``--show-dir``: turn on the config's ``PoseVisualizationHook``."""
    if not (args.show or args.show_dir):
        return
    vis = cfg.get('default_hooks', {}).get('visualization')
    if vis is None:
        raise UserValueError('--show/--show-dir need default_hooks.visualization in the config '
                             "(e.g. dict(type='PoseVisualizationHook', enable=False))")
    vis.update(
        enable=True,
        show=args.show,
        wait_time=args.wait_time,
        out_dir=args.show_dir,
        interval=args.interval)


def check_work_dir(work_dir: str, flag: str = '--work-dir') -> None:
    """A work dir must be a folder we can write (or one we can create)."""
    if osp.exists(work_dir) and not osp.isdir(work_dir):
        raise UserValueError(f'{flag} {work_dir} is a file, not a folder; pass a folder '
                             'path (it is created if absent)')
    probe = work_dir
    while not osp.exists(probe):  # the nearest existing parent decides
        parent = osp.dirname(osp.abspath(probe))
        if parent == probe:
            break
        probe = parent
    if osp.isdir(probe) and not os.access(probe, os.W_OK | os.X_OK):
        raise UserRuntimeError(f'{flag} {work_dir}: {probe} is not writable; make it '
                               'writable or pass another folder')


def as_user_error(e: BaseException) -> Optional[KeyposeUserError]:
    """``e`` as a user error, or None if it is a bug that needs its traceback."""
    if isinstance(e, KeyposeUserError):
        return e
    if isinstance(e, OSError) and e.errno in _OS_FIXES:
        where = f': {e.filename}' if e.filename else ''
        return UserRuntimeError(f'{e.strerror}{where}; {_OS_FIXES[e.errno]}')
    # mmpose's LoadImage re-raises decoding failures as
    # "`<mmcv/cv2 message>` occurs when loading `<path>`."
    m = re.search(r'occurs when loading `([^`]*)`', str(e))
    if m and (isinstance(e, (AssertionError, ValueError)) or type(e).__module__.startswith('cv2')):
        path = m.group(1)
        what = 'is empty (0 bytes)' if osp.isfile(path) and osp.getsize(path) == 0 else (
            'cannot be decoded as an image (truncated, corrupt or another format)'
            if osp.isfile(path) else 'does not exist')
        return UserValueError(f'image {path} {what}; replace it or remove it from the '
                              'annotations')
    return None


def one_line(e: BaseException) -> str:
    """The message of ``e`` on one line.

    A DataLoader worker re-raises an exception as ``type(e)(msg)`` where ``msg`` holds
    the worker's traceback; the original message is its last line.
    """
    text = _text(e)
    if 'Original Traceback' in text:
        last = [ln for ln in text.splitlines() if ln.strip()][-1]
        text = last.split(': ', 1)[1] if ': ' in last else last
    return ' '.join(text.split())


def _text(e: BaseException) -> str:
    # str(KeyError('x')) is "'x'"
    if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(e.args[0], str):
        return e.args[0]
    return str(e)


def run_main(main: Callable[[], Optional[int]]) -> None:
    """Run a tool's ``main`` and exit with its status.

    User errors print ``error: <message>`` (one line) and exit with status 2.
    """
    if os.environ.get('KEYPOSE_TRACEBACK'):
        sys.exit(main() or 0)
    try:
        status = main()
    except Exception as e:
        user = as_user_error(e)
        if user is None:
            raise
        sys.stderr.flush()
        print(
            f'error: {one_line(user)} (KEYPOSE_TRACEBACK=1 shows the traceback)',
            file=sys.stderr,
            flush=True)
        sys.exit(2)
    sys.exit(status or 0)
