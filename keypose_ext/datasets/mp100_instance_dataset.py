"""The annotated objects of one MP-100 file, parsed by MMPose's COCO parsing."""
import copy
import logging
import os.path as osp
from collections import Counter, OrderedDict
from typing import Callable, List, Optional, Tuple, Union

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log
from mmpose.datasets.datasets.base import BaseCocoStyleDataset
from mmpose.registry import DATASETS

from keypose_ext.utils.errors import UserFileNotFoundError, UserValueError
from .mp100_parsing import read_mp100_file


@DATASETS.register_module()
class MP100InstanceDataset(BaseCocoStyleDataset):
    """MP-100 instances, top-down: item ``i`` is one annotated object.

    Each annotation goes through MMPose's ``BaseCocoStyleDataset.parse_data_info``
    (``bbox`` (1, 4) xyxy clipped to the image, ``keypoints`` (1, K, 2),
    ``keypoints_visible`` (1, K) = min(1, v), ``raw_ann_info``: the annotation as
    written); K differs between categories. What
    MP-100 adds to MMPose's COCO handling:

    - per-category keypoint names and skeleton (metainfo ``categories``: id ->
      ``name``, ``keypoints``, 0-based ``skeleton``), since MP-100 has no one keypoint
      set; ``get_data_info`` adds the identity ``flip_indices`` of the instance's own
      K (support and query share one keypoint order, a flip swaps nothing);
    - the file is checked first (:func:`read_mp100_file`): one error line naming the
      file and the item;
    - instances with no labelled keypoint are *kept* (MMPose drops them): as queries
      they count, and score 0, in the MP-100 protocol. Crowd instances and boxes under
      one pixel are left out, with one log line per category.

    Args:
        ann_file (str): ``mp100_split{S}_{train,val,test}.json`` (relative to
            ``data_root``).
        data_root (str): Dataset root.
        data_prefix (dict): ``img``: image folder (relative to ``data_root``) that
            the JSON's ``file_name`` is relative to.
        skeleton_index_base (str | int): ``'auto'``, ``0`` or ``1``; see
            :mod:`keypose_ext.datasets.mp100_parsing`.
        check_image_files (bool): Check at start-up that every image exists.
        **kwargs: As ``BaseCocoStyleDataset`` (``pipeline``, ``test_mode``,
            ``serialize_data``, ``lazy_init``, ...); ``data_mode`` is ``'topdown'``.
    """

    METAINFO: dict = dict(dataset_name='mp100')

    def __init__(self,
                 ann_file: str = '',
                 data_root: Optional[str] = None,
                 data_prefix: dict = dict(img='images/'),
                 skeleton_index_base: Union[str, int] = 'auto',
                 check_image_files: bool = True,
                 pipeline: List[Union[dict, Callable]] = [],
                 **kwargs):
        self.skeleton_index_base = skeleton_index_base
        self.check_image_files = check_image_files
        super().__init__(
            ann_file=ann_file,
            data_root=data_root,
            data_prefix=data_prefix,
            pipeline=pipeline,
            data_mode='topdown',
            **kwargs)

    @classmethod
    def _load_metainfo(cls, metainfo: Optional[dict] = None) -> dict:
        # MMPose parses one fixed keypoint set here; MP-100's come per category, from
        # the annotation file, when it is loaded.
        metainfo = copy.deepcopy(cls.METAINFO if metainfo is None else metainfo)
        if not isinstance(metainfo, dict):
            raise UserValueError(f'metainfo must be a dict, got {type(metainfo).__name__}')
        return metainfo

    def _load_annotations(self) -> Tuple[List[dict], List[dict]]:
        data = read_mp100_file(self.ann_file, self.skeleton_index_base)
        self._metainfo['categories'] = data['categories']
        img_root = self.data_prefix.get('img', '')
        images = OrderedDict((i, dict(im, img_id=i, img_path=osp.join(img_root, im['file_name'])))
                             for i, im in data['images'].items())
        instances = [
            self.parse_data_info(dict(raw_ann_info=ann, raw_img_info=images[ann['image_id']]))
            for ann in data['annotations']
        ]
        return instances, list(images.values())

    def parse_data_info(self, raw_data_info: dict) -> dict:
        info = super().parse_data_info(raw_data_info)
        info['category_id'] = int(info['category_id'])  # MMPose's is a 0-d array
        return info

    def _get_topdown_data_infos(self, instance_list: List[dict]) -> List[dict]:
        # MMPose's filter would also drop instances without a labelled keypoint.
        kept, dropped = [], Counter()
        for info in instance_list:
            w, h = info['bbox'][0, 2:] - info['bbox'][0, :2]
            if info['iscrowd'] or w < 1 or h < 1:
                dropped[info['category_id']] += 1
            else:
                kept.append(info)
        if dropped:
            cats = self._metainfo['categories']
            print_log(
                f'{osp.basename(self.ann_file)}: crowd instances and boxes under 1 '
                'pixel are left out: ' + ', '.join(f'{cats[c]["name"]} (id {c}): {n}'
                                                   for c, n in sorted(dropped.items())),
                logger='current',
                level=logging.WARNING)
        return kept

    def load_data_list(self) -> List[dict]:
        data_list = super().load_data_list()
        if self.check_image_files:
            self._check_images(data_list)
        return data_list

    def _check_images(self, data_list: List[dict]) -> None:
        missing = OrderedDict()
        for info in data_list:
            path = info['img_path']
            if path not in missing and not osp.isfile(path):
                missing[path] = info['img_id']
        if missing:
            shown = '; '.join(f'image {i}: {p}' for p, i in list(missing.items())[:5])
            raise UserFileNotFoundError(
                f'{self.ann_file}: {len(missing)} image file(s) are missing, e.g. {shown}. '
                f'Check data_root={self.data_root!r} and data_prefix={self.data_prefix!r}')

    def get_data_info(self, idx: int) -> dict:
        # BaseDataset's, not BaseCocoStyleDataset's: the latter adds the metainfo of
        # one fixed keypoint set (flip_indices, skeleton_links, ...).
        info = BaseDataset.get_data_info(self, idx)
        info.update(
            dataset_name=self._metainfo['dataset_name'],
            flip_indices=list(range(info['keypoints'].shape[1])))
        return info

    def instance_table(self) -> dict:
        """Per-instance ``category_id``, ``img_id`` and ``num_labelled`` (arrays, (M,)).

        What episode drawing needs, read once (instances are stored serialised).
        """
        infos = [BaseDataset.get_data_info(self, i) for i in range(len(self))]
        return dict(
            category_id=np.array([d['category_id'] for d in infos], np.int64),
            img_id=np.array([d['img_id'] for d in infos]),
            num_labelled=np.array([int(d['keypoints_visible'].sum()) for d in infos], np.int64))
