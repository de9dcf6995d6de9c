"""Evaluate a checkpoint on a config's test set.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--show-dir DIR]
                         [--dump results.pkl] [--load-partial] [--cfg-options k=v ...]
                         [--launcher pytorch]
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
from keypose_ext.utils.errors import UserValueError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Evaluate a pose model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save evaluation results')
    parser.add_argument('--out', '--dump', dest='out', help='dump predictions to a pickle file')
    parser.add_argument(
        '--load-partial',
        action='store_true',
        help='load a checkpoint that fits the model only in part (the '
        'weights that fit; the rest keeps its initialisation)')
    parser.add_argument(
        '--show-dir',
        help='write visualised predictions here '
        '(relative paths go under the work dir timestamp folder)')
    parser.add_argument('--show', action='store_true', help='display results')
    parser.add_argument('--interval', type=int, default=1, help='visualisation interval')
    parser.add_argument('--wait-time', type=float, default=1)
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='override config settings')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg, args):
    cfg.launcher = args.launcher
    cfg.load_from = args.checkpoint
    cfg.load_partial = args.load_partial
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cli.check_work_dir(cfg.work_dir)
    cli.enable_visualization(cfg, args)
    if args.out:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise UserValueError(f'--out {args.out!r} must end with .pkl or .pickle')
        cli.check_work_dir(osp.dirname(osp.abspath(args.out)), '--out folder')
        cfg.test_evaluator = [cfg.test_evaluator] if isinstance(cfg.test_evaluator, dict) else list(
            cfg.test_evaluator)
        cfg.test_evaluator.append(dict(type='DumpResults', out_file_path=args.out))
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = merge_args(cli.load_config(args.config, args.cfg_options), args)
    check_checkpoint_file(args.checkpoint)  # before the runner builds model and data
    cli.build_runner(cfg).test()


if __name__ == '__main__':
    cli.run_main(main)
