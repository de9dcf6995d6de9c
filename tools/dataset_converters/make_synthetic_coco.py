"""Write a tiny synthetic COCO person-keypoints set in COCO-2017's layout.

    python tools/dataset_converters/make_synthetic_coco.py data/coco_tiny [--train 32] [--val 8]

See keypose_ext/testing/synthetic_coco.py for the layout.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))

from keypose_ext.testing.synthetic_coco import make_synthetic_coco


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('root', help='output folder, e.g. data/coco_tiny')
    parser.add_argument('--train', type=int, default=32)
    parser.add_argument('--val', type=int, default=8)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    paths = make_synthetic_coco(args.root, dict(train=args.train, val=args.val), seed=args.seed)
    print('\n'.join(f'{k}: {v}' for k, v in paths.items()))


if __name__ == '__main__':
    main()
