"""Helpers shared by ``tools/train.py`` and ``tools/test.py``."""
import os
import os.path as osp
import sys
from typing import Callable

# Errors a user causes (bad path, bad JSON, wrong keypoint count, wrong weights file):
# our components raise these with the file/field and the fix in the message.
USER_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, ValueError,
               KeyError, TypeError)


def load_config(path: str, cfg_options=None):
    """Load a config file and apply ``--cfg-options``; a clear error if it is absent."""
    from mmengine.config import Config
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'config file {path!r} not found; pass a path such as '
            'configs/bottle/bottle_res18_cpu_demo.py')
    cfg = Config.fromfile(path)
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    return cfg


def enable_visualization(cfg, args) -> None:
    """``--show``/``--show-dir``: turn on the config's ``PoseVisualizationHook``."""
    if not (args.show or args.show_dir):
        return
    vis = cfg.default_hooks.get('visualization')
    if vis is None:
        raise KeyError('--show/--show-dir need default_hooks.visualization in the config '
                       "(e.g. dict(type='PoseVisualizationHook', enable=False))")
    vis.update(enable=True, show=args.show, wait_time=args.wait_time,
               out_dir=args.show_dir, interval=args.interval)


def run_main(main: Callable[[], None]) -> None:
    """Run a tool's ``main``; user errors print one line instead of a traceback.

    Set ``KEYPOSE_TRACEBACK=1`` to see the full traceback.
    """
    if os.environ.get('KEYPOSE_TRACEBACK'):
        main()
        return
    try:
        main()
    except USER_ERRORS as e:
        # mmengine's builders prefix the message with the class that failed.
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f'error: {type(e).__name__}: {msg}\n'
              '(set KEYPOSE_TRACEBACK=1 for the full traceback)', file=sys.stderr)
        sys.exit(2)
