"""Write a synthetic bottle video with exact box keypoint annotations.

Examples::

    # video + project JSON (+ Objectron annotation.pbdata)
    python tools/dataset_converters/make_synthetic_bottle_video.py \\
        --out data/synthetic_bottle.mp4 --objectron data/annotation.pbdata

    # straight to a bottle_data directory (video -> converter)
    python tools/dataset_converters/make_synthetic_bottle_video.py \\
        --out data/synthetic_bottle.mp4 --bottle-data data/bottle_synthetic \\
        --frames 48
"""
import argparse
import os
import os.path as osp
import sys

from keypose_ext.dataset_converters.bottle_video_converter import convert_video_to_bottle_data
from keypose_ext.testing.synthetic_bottle import (render_synthetic_bottle_video,
                                                  write_json_annotations,
                                                  write_objectron_annotations)
from keypose_ext.utils.errors import KeyposeUserError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Render a textured box ("bottle") turning and moving in '
        'front of a pinhole camera, with its exact 9 box keypoints and '
        'depths per frame.')
    parser.add_argument(
        '--out', default='synthetic_bottle.mp4', help='video file: .mp4 (mp4v) or .avi (MJPG)')
    parser.add_argument(
        '--annotations',
        default=None,
        help='project JSON annotations (default: the video path with .json)')
    parser.add_argument(
        '--objectron', default=None, help='also write an Objectron annotation.pbdata here')
    parser.add_argument(
        '--bottle-data',
        default=None,
        help='also convert to a bottle_data directory (images + '
        'annotations.json)')
    parser.add_argument('--frames', type=int, default=64)
    parser.add_argument('--width', type=int, default=160)
    parser.add_argument('--height', type=int, default=120)
    parser.add_argument('--fps', type=float, default=15.0)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--overwrite', action='store_true', help='replace an existing --bottle-data directory')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # User errors (and the OS refusing a file) print one line, no traceback.
    user_errors = () if os.environ.get('KEYPOSE_TRACEBACK') else (KeyposeUserError, OSError)
    try:
        gt = render_synthetic_bottle_video(args.out, args.frames, (args.width, args.height),
                                           args.seed, args.fps)
        ann = args.annotations or osp.splitext(args.out)[0] + '.json'
        write_json_annotations(ann, gt)
        print(f'Wrote {args.out} ({args.frames} frames, {args.width}x'
              f'{args.height}) and {ann}')
        if args.objectron:
            write_objectron_annotations(args.objectron, gt)
            print(f'Wrote {args.objectron}')
        if args.bottle_data:
            summary = convert_video_to_bottle_data(
                args.out, ann, args.bottle_data, overwrite=args.overwrite)
            print(f'Wrote {summary["num_images"]} frames and '
                  f'{summary["ann_file"]}')
    except user_errors as e:
        print(
            f'error: {type(e).__name__}: {e}\n(set KEYPOSE_TRACEBACK=1 '
            'for the full traceback)',
            file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
