"""Frames of many Objectron-format videos, split by video, with intrinsics."""
import copy
import logging
import os
import os.path as osp
from typing import Dict, List, Optional, Tuple

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.dist import barrier, get_rank
from mmengine.logging import print_log
from mmpose.registry import DATASETS

from keypose_ext.utils.errors import UserValueError
from keypose_ext.utils.io import atomic_write
from .bottle_metainfo import BOTTLE_METAINFO, BOX_CORNER_SIGNS
from .bottle_video_dataset import BottleVideoDataset
from .frame_cache import cache_key


def _x_mirror_partner(index: int) -> int:
    """The keypoint whose local x sign is opposite (the centre is its own)."""
    x, y, z = BOX_CORNER_SIGNS[index]
    return BOX_CORNER_SIGNS.index((-x, y, z))


def _objectron_metainfo() -> dict:
    """The bottle metainfo with ``swap`` partners across the box's x axis.

    A horizontally flipped frame shows a mirrored box; naming its corners
    with the local x sign reversed makes it a proper (right-handed) box again
    whose top (+y) and front (+z) faces stay where Objectron puts them, so
    ``RandomFlip``'s ``flip_indices`` become this swap.
    """
    meta = copy.deepcopy(BOTTLE_METAINFO)
    meta['dataset_name'] = 'objectron'
    info = meta['keypoint_info']
    for k, kpt in info.items():
        partner = _x_mirror_partner(k)
        kpt['swap'] = '' if partner == k else info[partner]['name']
    return meta


OBJECTRON_METAINFO = _objectron_metainfo()
_STORE_FORMAT = 'objectron-frames-v1'


class _FrameStore:
    """Frames packed back to back in one flat uint8 ``.npy``, memory-mapped
    read-only so dataloader workers and ranks share its pages. Pickling
    (workers, ``get_subset``) carries only the path and the index."""

    def __init__(self, path: str, index: Dict[str, Tuple[int, int, int]]):
        self.path = path
        self.index = index  # img_path -> (byte offset, height, width)
        self._array: Optional[np.ndarray] = None

    def __contains__(self, img_path: str) -> bool:
        return img_path in self.index

    @property
    def nbytes(self) -> int:
        return sum(h * w * 3 for _, h, w in self.index.values())

    def get(self, img_path: str) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode='r')
        offset, h, w = self.index[img_path]
        # Copy: the pipeline owns its image, the shared map stays read-only.
        return np.array(self._array[offset:offset + h * w * 3]).reshape(h, w, 3)

    def __getstate__(self):
        return dict(self.__dict__, _array=None)


@DATASETS.register_module()
class ObjectronMultiVideoDataset(BottleVideoDataset):
    """Top-down samples from many videos (one per annotated object and frame).

    Reads one split file written by ``tools/dataset_converters/
    objectron_to_multivideo.py`` (``annotations_{train,val,test}.json``; the
    split is by video). On top of :class:`BottleVideoDataset`'s fields
    (``keypoints`` (1, 9, 2) pixels, ``keypoints_visible``, ``keypoints_depth``
    (1, 9) metres, ``keypoints_3d`` (1, 9, 3) OpenCV camera frame) every
    sample carries

    - ``video_id`` (str) and ``frame_index`` (int);
    - ``camera_intrinsics`` (3, 3) float32, pixels of the frame;
    - ``objectron_visibility`` (float), Objectron's per-annotation visibility
      (1.0 for project JSON clips).

    Add these names to ``PackDepthPoseInputs(meta_keys=...)`` so metrics and
    visualizers see them (``configs/objectron/`` do).

    The metainfo is :data:`OBJECTRON_METAINFO`: the bottle's 9 keypoints with
    corners swapped across the box's x axis, for ``RandomBoxFlip``.

    Args:
        ann_file (str): Split file, relative to ``data_root``.
        data_root (str): The converter's output folder.
        data_prefix (dict): ``img`` folder the image ``file_name`` s are
            relative to; default ``''`` (they start with ``images/``).
        bbox_mode (str): ``'frame'`` or ``'annotation'``, as
            :class:`BottleVideoDataset`.
        cache_budget_mb (float | None): Memory for decoded frames, shared by
            all videos, workers and ranks of a machine: frames in dataset
            order are decoded once into one memory-mapped file until the
            budget is used; the others are read from their JPEG files.
            0 (default) turns the cache off, None caches every frame.
        cache_dir (str, optional): Where the cache file goes (default
            ``<data_root>/.cache``); its name hashes the split file, the
            frame list and the budget, so changed data is decoded again.
        **kwargs: Passed to :class:`BottleVideoDataset` (``pipeline``,
            ``test_mode``, ``cache_outputs``, ``cache_device``, ...), but not
            ``cache``: the budget replaces it.

    Attributes:
        video_ids (list[str]): The videos of the split, in sample order.
        num_cached (int): Frames held by the frame cache.
    """

    METAINFO: dict = copy.deepcopy(OBJECTRON_METAINFO)

    ANNOTATION_FILE_KIND = 'Objectron split file'
    CONVERTER = 'tools/dataset_converters/objectron_to_multivideo.py'

    def __init__(self,
                 ann_file: str = 'annotations_train.json',
                 data_root: Optional[str] = None,
                 data_prefix: dict = dict(img=''),
                 bbox_mode: str = 'frame',
                 cache_budget_mb: Optional[float] = 0,
                 cache_dir: Optional[str] = None,
                 **kwargs):
        if 'cache' in kwargs:
            raise UserValueError(
                'ObjectronMultiVideoDataset: use cache_budget_mb (MB of decoded frames, '
                '0 = off, None = all) instead of cache.')
        if cache_budget_mb is not None and not cache_budget_mb >= 0:
            raise UserValueError('ObjectronMultiVideoDataset: cache_budget_mb must be >= 0 '
                                 f'or None, got {cache_budget_mb!r}.')
        self.cache_budget_mb = cache_budget_mb
        self.num_cached = 0
        self._store: Optional[_FrameStore] = None
        super().__init__(
            ann_file=ann_file,
            data_root=data_root,
            data_prefix=data_prefix,
            bbox_mode=bbox_mode,
            cache=False,
            cache_dir=cache_dir,
            **kwargs)

    def parse_data_info(self, raw_data_info: dict) -> Optional[dict]:
        """Bottle fields plus ``video_id``, ``camera_intrinsics`` (3, 3) and
        ``objectron_visibility``."""
        info = super().parse_data_info(raw_data_info)
        img = raw_data_info['raw_img_info']
        ann = raw_data_info['raw_ann_info']
        where = f'{self.ann_file}: image id {img["id"]}'
        fix = 'convert the clips with tools/dataset_converters/objectron_to_multivideo.py'
        if not img.get('video_id'):
            raise UserValueError(f'{where} has no "video_id"; {fix}.')
        try:
            k = np.asarray(img['camera_intrinsics'], np.float32).reshape(3, 3)
        except (KeyError, TypeError, ValueError):
            raise UserValueError(f'{where} (video {img["video_id"]}) has no 3x3 '
                                 f'"camera_intrinsics"; {fix}.') from None
        if not np.isfinite(k).all() or k[0, 0] <= 0 or k[1, 1] <= 0:
            raise UserValueError(f'{where}: "camera_intrinsics" {k.tolist()} need finite '
                                 'values with fx, fy > 0.')
        info['video_id'] = str(img['video_id'])
        info['camera_intrinsics'] = k
        info['objectron_visibility'] = float(ann.get('objectron_visibility', 1.0))
        info['object_id'] = int(ann.get('object_id', 0))
        return info

    @property
    def video_ids(self) -> List[str]:
        seen = {}
        for i in range(len(self)):
            seen.setdefault(BaseDataset.get_data_info(self, i)['video_id'], None)
        return list(seen)

    # ------------------------------------------------------------- caching
    def full_init(self):
        if self._fully_initialized:
            return
        super().full_init()
        if self.cache_budget_mb is None or self.cache_budget_mb > 0:
            self._init_store()

    def _select_frames(self) -> List[str]:
        """Frames in sample order, as many as fit the budget."""
        budget = float('inf') if self.cache_budget_mb is None else \
            self.cache_budget_mb * 2**20
        chosen, used = {}, 0
        for i in range(len(self)):
            path = BaseDataset.get_data_info(self, i)['img_path']
            h, w = self._image_sizes[path]
            if path in chosen or used + h * w * 3 > budget:
                continue
            chosen[path] = None
            used += h * w * 3
        return list(chosen)

    def _store_name(self, paths: List[str]) -> str:
        key = cache_key(f'{_STORE_FORMAT}|{self.cache_budget_mb}', self.ann_file, paths,
                        self._image_sizes)
        return f'objectron-frames-{key}.npy'

    def _write_store(self, path: str, paths: List[str]) -> None:
        """Decode ``paths`` one at a time into a flat ``.npy`` (atomic)."""
        total = sum(self._image_sizes[p][0] * self._image_sizes[p][1] * 3 for p in paths)
        header = dict(
            descr=np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
            fortran_order=False,
            shape=(total, ))
        os.makedirs(osp.dirname(path), exist_ok=True)
        with atomic_write(path, 'wb') as f:
            np.lib.format.write_array_header_1_0(f, header)
            for p in paths:
                f.write(np.ascontiguousarray(self._decode(p)).data)

    def _init_store(self) -> None:
        paths = self._select_frames()
        if not paths:
            return
        folder = self.cache_dir or osp.join(self.data_root or osp.dirname(self.ann_file), '.cache')
        path = osp.join(folder, self._store_name(paths))
        # Rank 0 decodes, the others wait and then map the same file.
        if get_rank() == 0 and not osp.isfile(path):
            self._write_store(path, paths)
        barrier()
        if not osp.isfile(path):  # cache_dir not shared with rank 0
            print_log(
                f'ObjectronMultiVideoDataset: {path} is not visible on this rank; '
                'decoding a local copy.',
                logger='current',
                level=logging.WARNING)
            self._write_store(path, paths)
        index, offset = {}, 0
        for p in paths:
            h, w = self._image_sizes[p]
            index[p] = (offset, h, w)
            offset += h * w * 3
        self._store = _FrameStore(path, index)
        self.num_cached = len(paths)
        total = len({BaseDataset.get_data_info(self, i)['img_path'] for i in range(len(self))})
        budget = 'no' if self.cache_budget_mb is None else f'{self.cache_budget_mb:.1f} MB'
        print_log(
            f'ObjectronMultiVideoDataset: {len(paths)} of {total} frames '
            f'({offset / 2**20:.1f} MB, {budget} budget) are cached in {path}; the others '
            'are read from their JPEG files.',
            logger='current')

    def get_data_info(self, idx: int) -> dict:
        """Data info of sample ``idx``, with ``img`` (H, W, 3) uint8 BGR when
        its frame is in the cache (mmpose's ``LoadImage`` keeps it)."""
        info = super().get_data_info(idx)
        if self._store is not None and info['img_path'] in self._store:
            img = self._store.get(info['img_path'])
            info['img'] = img
            info['img_shape'] = img.shape[:2]
            info['ori_shape'] = img.shape[:2]
        return info
