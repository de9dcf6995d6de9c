"""Reading and checking MP-100 files: the annotation JSON and the category split.

MP-100 annotation files are COCO-style, except that each category brings its own
``keypoints`` (1 to 68 names) and ``skeleton``. Everything here is plain functions on
the decoded JSON, so the datasets stay about instances and episodes; every check ends
in one :class:`~keypose_ext.utils.errors.UserValueError` line naming the file and item.

Skeleton indices. COCO's skeletons are 1-based, and so are the original MP-100 files:
the references' loaders pass them on unchanged and their drawing code (mmpose 0.x's
``show_result`` in POMNet and CapeFormer) subtracts 1. PoseAnything's re-released
MP-100 annotations are 0-based and used as given (``adj[edges[:, 0], edges[:, 1]]``).
``skeleton_index_base='auto'`` tells the two apart per *file*: 0-based if any skeleton
of the file uses index 0, else 1-based. A single 0-based category need not use 0
(``[[1, 2]]``); a file of many 0-based categories does.
"""
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Union

from keypose_ext.utils.errors import UserValueError
from keypose_ext.utils.io import load_json

_MAKE_DATA = ('set ann_file (relative to data_root) to an mp100_split*_{train,val,test}.json, '
              'or write synthetic data with tools/dataset_converters/make_synthetic_mp100.py')


def resolve_skeleton_base(categories: Iterable[dict], skeleton_index_base: Union[str, int]) -> int:
    """The index base (0 or 1) of a file's skeletons; ``'auto'``: see the module doc."""
    if skeleton_index_base not in ('auto', 0, 1):
        raise UserValueError("skeleton_index_base must be 'auto', 0 or 1, got "
                             f'{skeleton_index_base!r}')
    if skeleton_index_base != 'auto':
        return skeleton_index_base
    uses_zero = any(0 in pair for c in categories for pair in c.get('skeleton') or [])
    return 0 if uses_zero else 1


def _category(path: str, raw, base: int) -> dict:
    """One checked category: ``id``, ``name``, ``keypoints``, 0-based ``skeleton``."""
    if not isinstance(raw, dict) or 'id' not in raw:
        raise UserValueError(f'{path}: every entry of "categories" needs an "id", got {raw!r}')
    cid, name = raw['id'], raw.get('name', f'category {raw["id"]}')
    where = f'{path}: category {cid} ({name!r})'
    kpts = raw.get('keypoints')
    if not isinstance(kpts, list) or not kpts:
        raise UserValueError(f'{where} defines no keypoints; "keypoints" must list its 1..68 '
                             'keypoint names')
    skel = raw.get('skeleton') or []
    if not all(
            isinstance(e, (list, tuple)) and len(e) == 2 and all(isinstance(i, int) for i in e)
            for e in skel):
        raise UserValueError(f'{where}: "skeleton" must be a list of [i, j] keypoint index '
                             'pairs (integers)')
    k = len(kpts)
    for pair in skel:
        bad = [i for i in pair if not base <= i < k + base]
        if bad:
            raise UserValueError(
                f'{where}: skeleton pair {list(pair)} names keypoint {bad[0]}, but the category '
                f'has {k} keypoints ({base}-based indices {base}..{k - 1 + base}); fix the pair '
                'or set skeleton_index_base')
    return dict(
        id=cid, name=name, keypoints=list(kpts), skeleton=[[a - base, b - base] for a, b in skel])


def read_mp100_file(path: str, skeleton_index_base: Union[str, int] = 'auto') -> dict:
    """Load an MP-100 annotation file and check it against its categories.

    Returns:
        dict: ``categories`` (``OrderedDict`` id -> dict(id, name, keypoints, skeleton),
        skeleton 0-based), ``images`` (id -> raw image dict) and ``annotations`` (the raw
        list, each checked: known category and image, 3 x K keypoint values, a 4-number
        ``bbox``).
    """
    data = load_json(path, 'MP-100 annotation file', _MAKE_DATA)
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise UserValueError(f'{path}: a COCO-style MP-100 file needs a list "{key}"')
    base = resolve_skeleton_base((c for c in data['categories'] if isinstance(c, dict)),
                                 skeleton_index_base)
    cats: Dict[int, dict] = OrderedDict()
    for raw in data['categories']:
        cat = _category(path, raw, base)
        if cat['id'] in cats:
            raise UserValueError(f'{path}: category id {cat["id"]} appears twice in "categories"')
        cats[cat['id']] = cat
    images = {}
    for im in data['images']:
        if not isinstance(im, dict) or not all(
                k in im for k in ('id', 'file_name', 'width', 'height')):
            raise UserValueError(f'{path}: image entry {im!r} needs "id", "file_name", '
                                 '"width" and "height"')
        images[im['id']] = im
    for ann in data['annotations']:
        _check_annotation(path, ann, cats, images)
    return dict(categories=cats, images=images, annotations=data['annotations'])


def _check_annotation(path: str, ann, cats: dict, images: dict) -> None:
    if not isinstance(ann, dict) or 'id' not in ann:
        raise UserValueError(f'{path}: every annotation needs an "id", got {ann!r}')
    aid = ann['id']
    if ann.get('category_id') not in cats:
        raise UserValueError(f'{path}: annotation {aid} has category_id '
                             f'{ann.get("category_id")!r}, which is not in "categories" '
                             f'(known: {list(cats)})')
    if ann.get('image_id') not in images:
        raise UserValueError(f'{path}: annotation {aid} has image_id {ann.get("image_id")!r}, '
                             'which is not in "images"')
    cat = cats[ann['category_id']]
    kp = ann.get('keypoints')
    k = len(cat['keypoints'])
    if not isinstance(kp, list) or len(kp) != 3 * k:
        got = f'{len(kp) / 3:g}' if isinstance(kp, list) else 'no'
        raise UserValueError(
            f'{path}: annotation {aid} (image {ann["image_id"]}) has {got} keypoints but its '
            f'category {cat["id"]} ({cat["name"]!r}) defines {k}; "keypoints" must hold x, y, '
            "v for each of the category's keypoints")
    bbox = ann.get('bbox')
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise UserValueError(f'{path}: annotation {aid} (image {ann["image_id"]}) needs a '
                             '"bbox" [x, y, w, h]')


def infer_split_key(ann_file: str, split_key: Optional[str], split_file: str) -> str:
    """``split_key``, or the ``train``/``val``/``test`` suffix of the annotation file."""
    if split_key is not None:
        return split_key
    m = re.search(r'(train|val|test)\.json$', osp.basename(ann_file))
    if m is None:
        raise UserValueError(f'cannot tell which list of {split_file} to use for {ann_file}; '
                             "set split_key='train', 'val' or 'test'")
    return m.group(1)


def read_category_split(split_file: str, key: str, ann_file: str, categories: dict,
                        annotated: Iterable[int]) -> List[int]:
    """The category ids of list ``key`` of a split file, checked against the annotations.

    Args:
        split_file: JSON ``{"train": [ids], "val": [ids], "test": [ids]}``.
        key: Which list.
        ann_file: The annotation file the ids must come from (for messages).
        categories: Its categories (id -> dict with ``name``).
        annotated: The ids that have at least one annotation in it.

    Returns:
        list[int]: The ids, sorted.
    """
    split = load_json(
        split_file, 'category split file',
        'it holds {"train": [...], "val": [...], "test": [...]} category ids '
        '(relative to data_root); set category_split_file=None to use the '
        'categories of ann_file')
    if not isinstance(split, dict) or not isinstance(split.get(key), list):
        found = list(split) if isinstance(split, dict) else type(split).__name__
        raise UserValueError(f'{split_file}: needs a list of category ids under "{key}" '
                             f'(found {found})')
    ids = split[key]
    unknown = [c for c in ids if c not in categories]
    if unknown:
        raise UserValueError(
            f'{split_file}: "{key}" names categories {unknown} that {ann_file} does not define '
            f'(it has {list(categories)}); fix the split file or use the matching annotation '
            'file')
    annotated = set(annotated)
    empty = [c for c in ids if c not in annotated]
    if empty:
        raise UserValueError(
            f'{ann_file}: categories {[(c, categories[c]["name"]) for c in empty]} of "{key}" '
            f'in {split_file} have no annotations (empty category); remove them from the '
            'split file or add their annotations')
    return sorted(ids)
