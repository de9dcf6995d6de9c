"""Write a small synthetic MP-100 (real JPEGs + COCO-style JSON in MP-100's layout).

    python tools/dataset_converters/make_synthetic_mp100.py [--out data/synthetic_mp100]
        [--keypoint-counts 1 3 5 8 12 17 24 68] [--images-per-category 20]
        [--num-splits 5] [--seed 0]

The demo and debug CAPE configs (configs/cape/*synthetic*) read the default output
folder. See keypose_ext/testing/synthetic_mp100.py for the layout.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))

from keypose_ext.testing.synthetic_mp100 import (DEFAULT_KEYPOINT_COUNTS, make_synthetic_mp100,
                                                 synthetic_summary)
from keypose_ext.utils.cli import run_main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='data/synthetic_mp100', help='output folder')
    p.add_argument(
        '--keypoint-counts',
        type=int,
        nargs='+',
        default=list(DEFAULT_KEYPOINT_COUNTS),
        help='keypoints of each category (1..68), one value per category')
    p.add_argument('--images-per-category', type=int, default=20)
    p.add_argument('--num-splits', type=int, default=5)
    p.add_argument('--invisible-ratio', type=float, default=0.1)
    p.add_argument('--seed', type=int, default=0)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    summary = make_synthetic_mp100(
        args.out,
        keypoint_counts=args.keypoint_counts,
        images_per_category=args.images_per_category,
        num_splits=args.num_splits,
        invisible_ratio=args.invisible_ratio,
        seed=args.seed)
    print(f'wrote {args.out}: ' + synthetic_summary(summary))


if __name__ == '__main__':
    run_main(main)
