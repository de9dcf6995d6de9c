"""Turn a video and its per-frame box annotations into ``bottle_data``.

Example::

    python tools/dataset_converters/video_to_bottle_data.py bottle_sample.MOV \\
        --annotations bottle_sample.json --out-dir bottle_data

writes ``bottle_data/images/000000.jpg ...`` and a COCO-style
``bottle_data/annotations.json``; see docs/bottle_data.md for both formats.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))

from keypose_ext.dataset_converters.bottle_video_converter import convert_video_to_bottle_data
from keypose_ext.utils.cli import run_main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Decode a video with OpenCV and write JPEG frames plus a '
        'COCO-style annotations.json with 9 box keypoints and depths.')
    parser.add_argument('video', help='input video (.mp4, .mov, .avi, ...)')
    parser.add_argument(
        '--annotations',
        required=True,
        help='Objectron annotation.pbdata or the project JSON, one '
        'annotation per video frame')
    parser.add_argument(
        '--format',
        choices=['auto', 'objectron', 'json'],
        default='auto',
        help='annotation format (auto: from the file suffix)')
    parser.add_argument('--out-dir', default='bottle_data', help='output directory')
    parser.add_argument('--stride', type=int, default=1, help='keep every N-th frame')
    parser.add_argument('--start', type=int, default=0, help='first video frame to keep')
    parser.add_argument('--max-frames', type=int, default=None, help='keep at most N frames')
    parser.add_argument(
        '--object-id',
        type=int,
        default=None,
        help='Objectron object id (default: the first object)')
    parser.add_argument('--jpeg-quality', type=int, default=95, help='JPEG quality 1..100')
    parser.add_argument(
        '--overwrite', action='store_true', help='replace a non-empty output directory')
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bar')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # User errors (and the OS refusing a file) print one line via run_main.
    summary = convert_video_to_bottle_data(
        args.video,
        args.annotations,
        args.out_dir,
        annotation_format=None if args.format == 'auto' else args.format,
        stride=args.stride,
        start=args.start,
        max_frames=args.max_frames,
        object_id=args.object_id,
        jpeg_quality=args.jpeg_quality,
        overwrite=args.overwrite,
        progress=not args.no_progress)
    print(f'Wrote {summary["num_images"]} frames (of '
          f'{summary["video_frame_count"]}) and {summary["ann_file"]}')
    return 0


if __name__ == '__main__':
    run_main(main)
