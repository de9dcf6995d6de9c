"""mmpose's ``CocoDataset`` that checks the files exist before a long run starts."""
import logging
import os
import os.path as osp
from typing import List

import mmpose
from mmengine.logging import print_log
from mmpose.datasets.datasets.body import CocoDataset
from mmpose.registry import DATASETS

from keypose_ext.utils.errors import UserFileNotFoundError, UserValueError

_FIX = ('download it with `python tools/download_coco.py --data-root {root}` (resumable, '
        'verifies sizes and image counts) or point data_root/ann_file/data_prefix at your '
        'copy')


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """COCO keypoints (mmpose ``CocoDataset``, top-down or bottom-up) with file checks.

    Layout (the seed's)::

        data/coco/annotations/person_keypoints_{train,val}2017.json
        data/coco/images/{train2017,val2017}/000000000139.jpg ...

    When the annotation list is loaded, a missing annotation file or image folder
    raises ``FileNotFoundError`` naming the path and the fix, and every image the
    annotations (or ``bbox_file``) refer to is looked up once (one directory listing,
    so 118k images cost about a second). Missing images raise as well, with their
    count and examples, unless ``missing_images='skip'``, which drops those samples
    and logs how many.

    Args:
        missing_images (str): ``'error'`` (default) or ``'skip'``.
        **kwargs: as mmpose's ``CocoDataset``.
    """

    # mmpose's packaged COCO metainfo, by absolute path: the relative default is looked
    # up in the working directory first and warns on every run when it is absent there.
    METAINFO: dict = dict(
        from_file=osp.join(
            osp.dirname(mmpose.__file__), '.mim', 'configs', '_base_', 'datasets', 'coco.py'))

    def __init__(self, *args, missing_images: str = 'error', **kwargs):
        if missing_images not in ('error', 'skip'):
            raise UserValueError(
                f"dataset missing_images={missing_images!r}; use 'error' or 'skip'")
        self.missing_images = missing_images
        super().__init__(*args, **kwargs)

    def _root_hint(self) -> str:
        root = self.data_root or osp.dirname(osp.dirname(self.ann_file)) or '.'
        return _FIX.format(root=root)

    def load_data_list(self) -> List[dict]:
        if not osp.isfile(self.ann_file):
            raise UserFileNotFoundError(
                f'COCO annotation file {self.ann_file!r} not found; {self._root_hint()}')
        img_dir = self.data_prefix.get('img') or ''
        if img_dir and not osp.isdir(img_dir):
            raise UserFileNotFoundError(
                f'COCO image folder {img_dir!r} not found (ann_file {self.ann_file!r}); '
                f'{self._root_hint()}')
        if self.bbox_file and not osp.isfile(self.bbox_file):
            raise UserFileNotFoundError(
                f'person detection file bbox_file={self.bbox_file!r} not found; set '
                'bbox_file=None to evaluate on ground-truth boxes')
        data_list = super().load_data_list()
        return self._check_images(data_list)

    def _check_images(self, data_list: List[dict]) -> List[dict]:
        listings = {}

        def exists(path: str) -> bool:
            folder, name = osp.split(path)
            if folder not in listings:
                listings[folder] = set(os.listdir(folder)) if osp.isdir(folder) else set()
            return name in listings[folder]

        missing = sorted({d['img_path'] for d in data_list if not exists(d['img_path'])})
        if not missing:
            return data_list
        n_img = len({d['img_path'] for d in data_list})
        msg = (f'{len(missing)} of {n_img} images referenced by {self.ann_file!r} are '
               f'missing, e.g. {missing[:3]}')
        if self.missing_images == 'error':
            raise UserFileNotFoundError(
                f"{msg}; {self._root_hint()}, or set missing_images='skip' to train "
                'without them')
        missing = set(missing)
        kept = [d for d in data_list if d['img_path'] not in missing]
        print_log(
            f'CheckedCocoDataset: {msg}; skipped {len(data_list) - len(kept)} '
            "samples (missing_images='skip')",
            logger='current',
            level=logging.WARNING)
        return kept
