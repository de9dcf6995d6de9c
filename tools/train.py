"""Train a keypose_ext / MMPose model from a config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                                 [--auto-scale-lr] [--skip-nonfinite-steps]
                                 [--cfg-options k=v ...] [--launcher pytorch]

Runs on ``KeyposeRunner`` unless the config names another ``runner_type``: kill-safe
checkpoints (with the config's ``KeyposeCheckpointHook``), one run per work dir,
one-line errors for bad input (``KEYPOSE_TRACEBACK=1`` shows the traceback).
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))
# albumentations (imported by mmpose) asks PyPI for updates at import: never wait on it.
os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')

from mmengine.config import DictAction

from keypose_ext.engine.runners.keypose_runner import check_checkpoint_file
from keypose_ext.utils import cli
from keypose_ext.utils.errors import UserFileNotFoundError, UserValueError

AMP_WRAPPERS = ('OptimWrapper', 'AmpOptimWrapper', 'CpuFallbackAmpOptimWrapper')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a pose model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from CKPT; without a value, from the latest checkpoint '
        'in the work dir (an error if there is none)')
    parser.add_argument(
        '--amp', action='store_true', help='mixed precision (falls back to fp32 on a CPU)')
    parser.add_argument(
        '--no-validate', action='store_true', help='skip validation during training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr by (world size x batch size x accumulative '
        'counts) / auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--skip-nonfinite-steps',
        action='store_true',
        help='skip (and count) optimizer steps whose loss is NaN/inf '
        'instead of stopping')
    parser.add_argument('--show-dir', help='save validation visualisations here')
    parser.add_argument('--show', action='store_true', help='display results')
    parser.add_argument('--interval', type=int, default=1, help='visualisation interval')
    parser.add_argument('--wait-time', type=float, default=1)
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, e.g. train_dataloader.batch_size=8')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    cape = parser.add_argument_group('CAPE debug modes (MP100EpisodicDataset)')
    cape.add_argument(
        '--debug-single-image',
        type=int,
        metavar='CAT_ID',
        help='train and validate on one image of this category, '
        'used as both support and query')
    cape.add_argument(
        '--debug-single-image-index',
        type=int,
        metavar='I',
        help='which image of the category (default: the first)')
    cape.add_argument(
        '--debug-overfit-category',
        type=int,
        metavar='CAT_ID',
        help='train and validate on all images of one category')
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg, args):
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cli.check_work_dir(cfg.work_dir)
    if args.amp:
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper not in AMP_WRAPPERS:
            raise UserValueError(f'--amp needs optim_wrapper.type in {AMP_WRAPPERS}, the '
                                 f'config has {wrapper!r}; drop --amp or change the type')
        cfg.optim_wrapper.type = 'CpuFallbackAmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
        _check_something_to_resume(cfg.work_dir)
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise UserFileNotFoundError(f'--resume checkpoint {args.resume!r} not found; '
                                        'pass an existing .pth or --resume alone for the '
                                        "work dir's latest")
        check_checkpoint_file(args.resume)
        cfg.resume, cfg.load_from = True, args.resume
    if args.auto_scale_lr:
        if not cfg.get('auto_scale_lr', {}).get('base_batch_size'):
            raise UserValueError('--auto-scale-lr needs auto_scale_lr.base_batch_size in the '
                                 'config (the total batch its lr was tuned for); add it or '
                                 'pass --cfg-options auto_scale_lr.base_batch_size=N')
        cfg.auto_scale_lr.enable = True
    if args.skip_nonfinite_steps:
        hook = cfg.get('default_hooks', {}).get('non_finite_loss')
        if hook is None:
            raise UserValueError('--skip-nonfinite-steps needs default_hooks.non_finite_loss '
                                 "(dict(type='NonFiniteLossHook')) in the config")
        hook.action = 'skip'
    cli.enable_visualization(cfg, args)
    if (args.debug_single_image is not None or args.debug_overfit_category is not None
            or args.debug_single_image_index is not None):
        from keypose_ext.utils.cape_debug import apply_cape_debug_options
        apply_cape_debug_options(
            cfg,
            single_image=args.debug_single_image,
            single_image_index=args.debug_single_image_index,
            overfit_category=args.debug_overfit_category)
    return cfg


def _check_something_to_resume(work_dir):
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        raise UserFileNotFoundError(
            f'--resume: nothing to resume in {work_dir} (no last_checkpoint); train '
            'without --resume, pass --resume CHECKPOINT, or point --work-dir at the run')
    with open(pointer, encoding='utf-8', errors='replace') as f:
        latest = f.read().strip()
    moved = osp.join(work_dir, osp.basename(latest))  # KeyposeRunner's fallback
    if osp.isfile(latest) or osp.isfile(moved):
        check_checkpoint_file(latest if osp.isfile(latest) else moved)


def main(argv=None):
    args = parse_args(argv)
    cfg = merge_args(cli.load_config(args.config, args.cfg_options), args)
    cli.build_runner(cfg).train()


if __name__ == '__main__':
    cli.run_main(main)
