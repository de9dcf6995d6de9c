"""Train a keypose_ext / MMPose model from a config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                                 [--cfg-options k=v ...] [--launcher pytorch]
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from mmengine.config import DictAction  # noqa: E402

from keypose_ext.utils.cli import enable_visualization, load_config, run_main  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description='Train a pose model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from CKPT; without a value, from the latest checkpoint '
        'in the work dir')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision (falls back to fp32 on a CPU)')
    parser.add_argument('--no-validate', action='store_true',
                        help='skip validation during training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by the real/base batch size ratio')
    parser.add_argument('--show-dir', help='save validation visualisations here')
    parser.add_argument('--show', action='store_true', help='display results')
    parser.add_argument('--interval', type=int, default=1,
                        help='visualisation interval')
    parser.add_argument('--wait-time', type=float, default=1)
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, e.g. train_dataloader.batch_size=8')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    cape = parser.add_argument_group('CAPE debug modes (MP100EpisodicDataset)')
    cape.add_argument('--debug-single-image', type=int, metavar='CAT_ID',
                      help='train and validate on one image of this category, '
                      'used as both support and query')
    cape.add_argument('--debug-single-image-index', type=int, metavar='I',
                      help='which image of the category (default: the first)')
    cape.add_argument('--debug-overfit-category', type=int, metavar='CAT_ID',
                      help='train and validate on all images of one category')
    args = parser.parse_args()
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
    if args.amp:
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper not in ('OptimWrapper', 'AmpOptimWrapper'):
            raise ValueError(f'--amp needs optim_wrapper.type OptimWrapper or '
                             f'AmpOptimWrapper, the config has {wrapper!r}')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume checkpoint {args.resume!r} not found')
        cfg.resume, cfg.load_from = True, args.resume
    if args.auto_scale_lr:
        cfg.setdefault('auto_scale_lr', dict(base_batch_size=16))
        cfg.auto_scale_lr.enable = True
    enable_visualization(cfg, args)
    if (args.debug_single_image is not None or args.debug_overfit_category is not None
            or args.debug_single_image_index is not None):
        from keypose_ext.datasets.mp100_episodic_dataset import apply_cape_debug_options
        apply_cape_debug_options(
            cfg,
            single_image=args.debug_single_image,
            single_image_index=args.debug_single_image_index,
            overfit_category=args.debug_overfit_category)
    return cfg


def main():
    args = parse_args()
    cfg = merge_args(load_config(args.config, args.cfg_options), args)

    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    run_main(main)
