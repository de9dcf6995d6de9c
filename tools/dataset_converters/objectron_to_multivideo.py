"""Convert many Objectron-format clips into one dataset split by video.

Examples::

    # Objectron clips: <root>/<...>/video.MOV + annotation.pbdata per folder, or the
    # download layout <root>/videos/<id>/video.MOV + <root>/annotations/<id>.pbdata
    python tools/dataset_converters/objectron_to_multivideo.py data/objectron_bottle_raw \\
        --out-dir data/objectron_bottle --split 0.8 0.1 0.1

    # a synthetic set of 6 portrait clips (tests, the CPU demo)
    python tools/dataset_converters/objectron_to_multivideo.py --synthetic 6 \\
        --out-dir data/objectron_synthetic

Reruns skip clips already converted; see docs/objectron.md.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))
# albumentations (imported by mmpose) asks PyPI for updates at import: never wait on it.
os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')

from keypose_ext.utils.cli import run_main


def _objects(value: str):
    return int(value) if value.lstrip('-').isdigit() else value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'source',
        nargs='?',
        help='folder of clips, or a text file listing '
        'clip folders (one per line)')
    parser.add_argument('--out-dir', required=True, help='dataset folder (reused by reruns)')
    parser.add_argument(
        '--split',
        type=float,
        nargs=3,
        default=(0.8, 0.1, 0.1),
        metavar=('TRAIN', 'VAL', 'TEST'),
        help='fractions of videos per split')
    parser.add_argument(
        '--split-file',
        help='JSON {"train": [ids], "val": [...], "test": '
        '[...]} instead of fractions')
    parser.add_argument('--seed', type=int, default=0, help='seed of the video shuffle')
    parser.add_argument(
        '--objects',
        type=_objects,
        default='first',
        help='"first" (default), "all", or an Objectron object id')
    parser.add_argument('--stride', type=int, default=1, help='keep every N-th annotated frame')
    parser.add_argument('--max-frames', type=int, help='keep at most N frames per clip')
    parser.add_argument(
        '--orientation',
        choices=['auto', 'portrait', 'landscape'],
        default='auto',
        help='Objectron camera layout (auto: detected)')
    parser.add_argument('--jpeg-quality', type=int, default=95)
    parser.add_argument(
        '--synthetic',
        type=int,
        metavar='N',
        help='first write N synthetic portrait clips to OUT_DIR/sources')
    parser.add_argument('--synthetic-frames', type=int, default=24, help='frames per clip')
    parser.add_argument(
        '--synthetic-size',
        type=int,
        nargs=2,
        default=(72, 96),
        metavar=('W', 'H'),
        help='frame size of the synthetic clips')
    parser.add_argument(
        '--synthetic-box-scale',
        type=float,
        nargs=2,
        default=(0.85, 1.15),
        metavar=('LOW', 'HIGH'),
        help='box size factor range (1 = 8x25x8 cm)')
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bar')
    args = parser.parse_args(argv)
    if (args.source is None) == (args.synthetic is None):
        parser.error('give a SOURCE or --synthetic N (not both)')
    return args


def main(argv=None):
    args = parse_args(argv)
    from keypose_ext.dataset_converters.objectron_clips_converter import convert_objectron_clips
    source = args.source
    if args.synthetic is not None:
        from keypose_ext.testing.synthetic_objectron import make_objectron_multivideo
        source = osp.join(args.out_dir, 'sources')
        if not osp.isdir(source):
            make_objectron_multivideo(
                source,
                num_videos=args.synthetic,
                num_frames=args.synthetic_frames,
                size=tuple(args.synthetic_size),
                seed=args.seed,
                box_scale=tuple(args.synthetic_box_scale))
    summary = convert_objectron_clips(
        source,
        args.out_dir,
        split=args.split_file or tuple(args.split),
        seed=args.seed,
        objects=args.objects,
        stride=args.stride,
        max_frames=args.max_frames,
        orientation=args.orientation,
        jpeg_quality=args.jpeg_quality,
        progress=not args.no_progress)
    print(f'converted {len(summary["converted"])} clip(s), skipped '
          f'{len(summary["skipped"])} already converted')
    for name, path in summary['ann_files'].items():
        print(f'{name:>5}: {len(summary["splits"][name])} video(s), '
              f'{summary["num_images"][name]} frame(s) -> {path}')


if __name__ == '__main__':
    run_main(main)
