"""Download COCO-2017 person keypoints (train2017, val2017, annotations) into the
layout of configs/sapiens/*.py::

    data/coco/annotations/person_keypoints_{train,val}2017.json
    data/coco/images/{train2017,val2017}/*.jpg

    python tools/download_coco.py [--data-root data/coco] [--parts annotations val train]
                                  [--base-url http://images.cocodataset.org]
                                  [--keep-zips] [--force] [--no-checksum]

Downloads resume where they stopped (run the same command again), show a progress
bar, are checked against COCO's published sizes and MD5s, and are extracted with
zip-slip protection. Finally the image folders must hold 118,287 / 5,000 images.
Parts already complete are skipped. About 19 GB to download, 20 GB on disk.
``--manifest file.json`` overrides the URL/size/md5/count of parts (mirrors, tests).
"""
import argparse
import glob
import os
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from keypose_ext.utils import errors
from keypose_ext.utils.io import load_json
from keypose_ext.utils.sapiens_download import download, safe_extract_zip

OFFICIAL_BASE_URL = 'http://images.cocodataset.org'
# Sizes and MD5s as published with COCO-2017.
PARTS = {
    'annotations':
    dict(
        path='annotations/annotations_trainval2017.zip',
        size=252907541,
        md5='f4bbac642086de4f52a3fdda2de5fa2c',
        extract_to='.',
        files=[
            'annotations/person_keypoints_train2017.json',
            'annotations/person_keypoints_val2017.json'
        ]),
    'val':
    dict(
        path='zips/val2017.zip',
        size=815585330,
        md5='442b8da7639aecaf257c1dceb8ba8c80',
        extract_to='images',
        folder='images/val2017',
        count=5000),
    'train':
    dict(
        path='zips/train2017.zip',
        size=19336861798,
        md5='cced6f7f71b7629ddf16f17bbcfab6b2',
        extract_to='images',
        folder='images/train2017',
        count=118287),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__)
    p.add_argument('--data-root', default='data/coco')
    p.add_argument(
        '--parts', nargs='+', default=['annotations', 'val', 'train'], choices=list(PARTS))
    p.add_argument(
        '--base-url',
        default=os.environ.get('COCO_BASE_URL', OFFICIAL_BASE_URL),
        help='mirror with the same paths (env COCO_BASE_URL)')
    p.add_argument('--download-dir', help='where the zips go (default DATA_ROOT/downloads)')
    p.add_argument(
        '--manifest',
        help='JSON {part: {path, size, md5, count, files}} '
        'overriding the built-in table')
    p.add_argument('--keep-zips', action='store_true', help='keep zips after extraction')
    p.add_argument('--force', action='store_true', help='extract again even if complete')
    p.add_argument('--no-checksum', action='store_true', help='skip the MD5 check (faster)')
    return p.parse_args(argv)


def count_images(folder: str) -> int:
    return len(glob.glob(osp.join(folder, '*.jpg'))) if osp.isdir(folder) else 0


def part_complete(root: str, spec: dict) -> bool:
    if 'files' in spec:
        return all(osp.isfile(osp.join(root, f)) for f in spec['files'])
    return count_images(osp.join(root, spec['folder'])) == spec['count']


def check_part(root: str, name: str, spec: dict) -> str:
    """One line of status; raises ``UserRuntimeError`` with the fix if incomplete."""
    if 'files' in spec:
        missing = [f for f in spec['files'] if not osp.isfile(osp.join(root, f))]
        if missing:
            raise errors.UserRuntimeError(f'{name}: missing {missing} after extraction; the '
                                          'archive is not the COCO-2017 annotations; rerun with '
                                          '--force')
        return f'{name}: ' + ', '.join(spec['files'])
    folder = osp.join(root, spec['folder'])
    n = count_images(folder)
    if n != spec['count']:
        raise errors.UserRuntimeError(f'{name}: {folder} holds {n} images, expected '
                                      f'{spec["count"]}; rerun with --force to extract again (the '
                                      'zip is re-downloaded if it was deleted)')
    return f'{name}: {n} images in {folder}'


def main(argv=None) -> int:
    args = parse_args(argv)
    parts = {k: dict(v) for k, v in PARTS.items()}
    if args.manifest:
        for k, v in load_json(args.manifest, '--manifest file').items():
            if k not in parts:
                raise errors.UserValueError(f'--manifest part {k!r} unknown; use {list(parts)}')
            parts[k].update(v)
    root = args.data_root
    zips = args.download_dir or osp.join(root, 'downloads')
    os.makedirs(root, exist_ok=True)
    lines = []
    try:
        for name in args.parts:
            spec = parts[name]
            if part_complete(root, spec) and not args.force:
                lines.append(check_part(root, name, spec) + ' (already complete)')
                continue
            url = args.base_url.rstrip('/') + '/' + spec['path'].lstrip('/')
            zip_path = osp.join(zips, osp.basename(spec['path']))
            print(f'[{name}] {url} -> {zip_path}')
            download(
                url,
                zip_path,
                size=spec.get('size'),
                md5=None if args.no_checksum else spec.get('md5'),
                offline_hint='Retry later or pass --base-url of a mirror; a partial '
                'download resumes.')
            n = safe_extract_zip(zip_path, osp.join(root, spec['extract_to']))
            print(f'[{name}] extracted {n} files')
            lines.append(check_part(root, name, spec))
            if not args.keep_zips:
                os.remove(zip_path)
    except errors.KeyposeUserError as e:  # DownloadError and the errors above
        print(f'error: {e}', file=sys.stderr)
        return 1
    print('\n'.join(['COCO ready:'] + ['  ' + s for s in lines]))
    return 0


if __name__ == '__main__':
    sys.exit(main())
