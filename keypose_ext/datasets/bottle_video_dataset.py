"""Top-down dataset of video frames with 9 box keypoints and their depths."""
import copy
import hashlib
import json
import logging
import os
import os.path as osp
import time
from typing import Any, Dict, List, Optional, Tuple

import mmcv
import numpy as np
import torch
from mmengine.dist import barrier, get_rank
from mmengine.logging import print_log

from mmpose.datasets.datasets.base import BaseCocoStyleDataset
from mmpose.registry import DATASETS
from .bottle_metainfo import BOTTLE_METAINFO

# Transforms whose output changes from call to call; a pipeline holding one
# cannot be cached after the first pass (cache_device).
_RANDOM_TRANSFORMS = {
    'RandomFlip', 'RandomBBoxTransform', 'RandomHalfBody',
    'PhotometricDistortion', 'Albumentation', 'YOLOXHSVRandomAug',
    'Mosaic', 'YOLOXMixUp', 'BottomupRandomAffine', 'BottomupRandomCrop',
    'BottomupRandomChoiceResize', 'RandomAffine'
}
_CACHE_FORMAT = 'bottle-frames-v1'


class _FrameCache:
    """All frames of the dataset in one ``(N, H_max, W_max, 3)`` uint8
    ``.npy``, memory-mapped read-only so dataloader workers share its pages.

    Frames smaller than the largest one are stored top-left and cropped back
    with their own ``(h, w)``. Pickling or deep-copying (dataloader workers,
    ``get_subset``) carries only the path; the map is reopened on first use.
    """

    def __init__(self, path: str, rows: Dict[str, int],
                 shapes: List[Tuple[int, int]]):
        self.path = path
        self.rows = rows
        self.shapes = shapes
        self._array: Optional[np.ndarray] = None

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode='r')
        return self._array

    def get(self, img_path: str) -> np.ndarray:
        row = self.rows[img_path]
        h, w = self.shapes[row]
        # Copy: the pipeline owns its image, the shared map stays read-only.
        return np.array(self.array[row, :h, :w])

    def __getstate__(self):
        state = self.__dict__.copy()
        state['_array'] = None
        return state

    def __deepcopy__(self, memo):
        new = _FrameCache(self.path, dict(self.rows), list(self.shapes))
        memo[id(self)] = new
        return new


class _PackedCache(dict):
    """Packed pipeline outputs keyed by annotation id. Deep copies start
    empty: the entries are derived data (possibly CUDA tensors)."""

    def __deepcopy__(self, memo):
        return _PackedCache()


@DATASETS.register_module()
class BottleVideoDataset(BaseCocoStyleDataset):
    """Frames of a video with 9 box keypoints (Objectron order) + depths.

    Reads the COCO-style ``annotations.json`` written by
    ``tools/dataset_converters/video_to_bottle_data.py`` (schema in
    ``docs/bottle_data.md``). Each sample is one frame with one instance:
    ``keypoints`` (1, 9, 2) pixels, ``keypoints_visible`` (1, 9),
    ``keypoints_depth`` (1, 9) metres and, when annotated, ``keypoints_3d``
    (1, 9, 3) in camera coordinates.

    Args:
        ann_file (str): Annotation file, relative to ``data_root``.
        data_root (str): Dataset directory (``bottle_data``).
        data_prefix (dict): ``img`` folder of the frames, relative to
            ``data_root``. Defaults to ``dict(img='images/')``.
        bbox_mode (str): ``'frame'`` (the model sees the whole frame: bbox =
            ``[0, 0, W, H]``) or ``'annotation'`` (the annotation's bbox of
            the projected keypoints).
        cache (bool): Decode every frame once into a memory-mapped ``.npy``
            under ``cache_dir``, shared by dataloader workers and reused by
            later runs; the pipeline's ``LoadImage`` then reads nothing from
            disk. In distributed runs rank 0 decodes while the other ranks
            wait at a barrier.
        cache_dir (str, optional): Where the ``.npy`` goes. Defaults to
            ``<data_root>/.cache``. Its name hashes the annotation file, the
            frame list and the frame files' sizes and times, so edited data
            is decoded again.
        cache_device (str, optional): ``'cuda'`` (or ``'cpu'``) keeps the
            packed output of the first pass through the pipeline, with its
            ``inputs`` tensor on that device, and returns it afterwards. Needs
            a deterministic pipeline (no random transforms) and
            ``num_workers=0`` (and ``pin_memory=False``).
        **kwargs: Passed to :class:`BaseCocoStyleDataset` (``pipeline``,
            ``test_mode``, ``indices``, ...).

    Attributes:
        num_decoded (int): Frames this process decoded into the cache (0
            when an existing cache was reused).
    """

    METAINFO: dict = copy.deepcopy(BOTTLE_METAINFO)

    def __init__(self,
                 ann_file: str = 'annotations.json',
                 data_root: Optional[str] = None,
                 data_prefix: dict = dict(img='images/'),
                 bbox_mode: str = 'frame',
                 cache: bool = False,
                 cache_dir: Optional[str] = None,
                 cache_device: Optional[str] = None,
                 **kwargs):
        if bbox_mode not in ('frame', 'annotation'):
            raise ValueError(f'BottleVideoDataset: bbox_mode must be "frame" '
                             f'or "annotation", got {bbox_mode!r}.')
        if kwargs.get('data_mode', 'topdown') != 'topdown':
            raise ValueError('BottleVideoDataset supports data_mode='
                             '"topdown" only (one box per frame).')
        if cache_device is not None:
            device = torch.device(cache_device)
            if device.type == 'cuda' and not torch.cuda.is_available():
                raise RuntimeError(
                    f'BottleVideoDataset: cache_device={cache_device!r} but '
                    'CUDA is not available; use cache_device=None.')
        self.bbox_mode = bbox_mode
        self.cache = cache
        self.cache_dir = cache_dir
        self.cache_device = cache_device
        self.num_decoded = 0
        self._image_sizes: Dict[str, Tuple[int, int]] = {}
        self._frame_cache: Optional[_FrameCache] = None
        self._packed_cache = _PackedCache()
        super().__init__(
            ann_file=ann_file,
            data_root=data_root,
            data_prefix=data_prefix,
            **kwargs)
        if cache_device is not None:
            self._check_deterministic_pipeline()

    # ------------------------------------------------------------ loading
    def _load_annotations(self) -> Tuple[List[dict], List[dict]]:
        """Load and validate ``annotations.json``; every problem is one
        exception naming the file and the field."""
        ann_file = self.ann_file
        if not ann_file or not osp.isfile(ann_file):
            raise FileNotFoundError(
                f'Bottle annotation file not found: {ann_file!r}. Create it '
                'with tools/dataset_converters/video_to_bottle_data.py or fix '
                'data_root/ann_file.')
        with open(ann_file, encoding='utf-8') as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f'{ann_file}: malformed JSON at line '
                                 f'{e.lineno} column {e.colno}: {e.msg}'
                                 ) from None
        for key in ('images', 'annotations', 'categories'):
            if not isinstance(data, dict) or not isinstance(
                    data.get(key), list):
                raise ValueError(f'{ann_file}: missing the COCO list "{key}" '
                                 '(see docs/bottle_data.md).')
        self._metainfo['CLASSES'] = data['categories']

        images: Dict[Any, dict] = {}
        missing = []
        for i, img in enumerate(data['images']):
            for key in ('id', 'file_name', 'width', 'height'):
                if not isinstance(img, dict) or key not in img:
                    raise ValueError(
                        f'{ann_file}: images[{i}] has no "{key}".')
            if img['id'] in images:
                raise ValueError(
                    f'{ann_file}: image id {img["id"]} appears twice.')
            img = dict(img)
            img['img_id'] = img['id']
            img['img_path'] = osp.join(self.data_prefix['img'],
                                       img['file_name'])
            if not osp.isfile(img['img_path']):
                missing.append(img['img_path'])
            images[img['id']] = img
        if missing:
            raise FileNotFoundError(
                f'{ann_file} lists {len(missing)} image(s) that do not '
                f'exist, e.g. {missing[0]!r}; check data_root/data_prefix or '
                're-run the converter.')

        anns_by_image: Dict[Any, List[dict]] = {}
        for i, ann in enumerate(data['annotations']):
            if not isinstance(ann, dict) or 'id' not in ann:
                raise ValueError(f'{ann_file}: annotations[{i}] has no "id".')
            if ann.get('image_id') not in images:
                raise ValueError(
                    f'{ann_file}: annotation id {ann["id"]} refers to image '
                    f'id {ann.get("image_id")!r}, which is not in "images".')
            anns_by_image.setdefault(ann['image_id'], []).append(ann)

        instance_list, image_list = [], []
        for img_id, img in images.items():
            if isinstance(img_id, int) and img_id % self.sample_interval:
                continue
            image_list.append(img)
            self._image_sizes[img['img_path']] = (int(img['height']),
                                                  int(img['width']))
            for ann in anns_by_image.get(img_id, []):
                info = self.parse_data_info(
                    dict(raw_ann_info=ann, raw_img_info=img))
                if info:
                    instance_list.append(info)
        return instance_list, image_list

    def _field(self,
               ann: dict,
               key: str,
               shape: Tuple[int, ...],
               what: str,
               per_keypoint: bool = True) -> np.ndarray:
        """``ann[key]`` as a finite float32 array of ``shape``."""
        where = f'{self.ann_file}: annotation id {ann["id"]}'
        try:
            arr = np.asarray(ann[key], dtype=np.float32)
        except KeyError:
            raise ValueError(f'{where} has no "{key}" ({what}).') from None
        except (TypeError, ValueError):
            raise ValueError(
                f'{where}: "{key}" must be numbers ({what}).') from None
        expected = int(np.prod(shape))
        if arr.size != expected:
            if per_keypoint:
                per = expected // shape[0]
                raise ValueError(
                    f'{where}: "{key}" has {arr.size / per:g} keypoints '
                    f'({what}), expected {shape[0]} (box centre + 8 corners '
                    f'= {expected} numbers).')
            raise ValueError(f'{where}: "{key}" has {arr.size} numbers, '
                             f'expected {expected} ({what}).')
        if not np.isfinite(arr).all():
            raise ValueError(
                f'{where}: "{key}" contains NaN or infinite values.')
        return arr.reshape(shape)

    def parse_data_info(self, raw_data_info: dict) -> Optional[dict]:
        """Parse one annotation; adds ``keypoints_depth`` (1, K) float32 and
        ``keypoints_3d`` (1, K, 3) when present, and sets the bbox by
        ``bbox_mode``."""
        ann = raw_data_info['raw_ann_info']
        img = raw_data_info['raw_img_info']
        num = self._metainfo['num_keypoints']
        self._field(ann, 'keypoints', (num, 3), '[x, y, v] per keypoint')
        depth = self._field(ann, 'keypoints_depth', (num, ),
                            'depth in metres per keypoint')
        points_3d = None
        if ann.get('keypoints_3d') is not None:
            points_3d = self._field(ann, 'keypoints_3d', (num, 3),
                                    '[X, Y, Z] metres per keypoint')
        width, height = float(img['width']), float(img['height'])
        raw = dict(ann)
        if self.bbox_mode == 'frame':
            raw['bbox'] = [0.0, 0.0, width, height]
        else:
            bbox = self._field(
                ann, 'bbox', (4, ), 'x, y, w, h in pixels', per_keypoint=False)
            if bbox[2] <= 0 or bbox[3] <= 0:
                raise ValueError(
                    f'{self.ann_file}: annotation id {ann["id"]}: bbox '
                    f'{bbox.tolist()} is empty; use bbox_mode="frame" or '
                    'fix the annotation.')
        info = super().parse_data_info(
            dict(raw_ann_info=raw, raw_img_info=img))
        if self.bbox_mode == 'frame':
            # The base class clips to W-1/H-1; the input is the full frame.
            info['bbox'] = np.array([[0, 0, width, height]], np.float32)
        info['keypoints_depth'] = depth.reshape(1, num)
        if points_3d is not None:
            info['keypoints_3d'] = points_3d.reshape(1, num, 3)
        info['frame_index'] = img.get('frame_index')
        info['raw_ann_info'] = ann
        return info

    def _get_topdown_data_infos(self, instance_list: List[Dict]) -> List[Dict]:
        kept = super()._get_topdown_data_infos(instance_list)
        if len(kept) != len(instance_list):
            dropped = sorted({d['id'] for d in instance_list} -
                             {d['id'] for d in kept})
            print_log(
                f'BottleVideoDataset: {len(dropped)} annotation(s) without '
                f'labelled keypoints or box are skipped, ids {dropped[:10]}',
                logger='current',
                level=logging.WARNING)
        return kept

    # ------------------------------------------------------------- caching
    def full_init(self):
        if self._fully_initialized:
            return
        super().full_init()
        if self.cache:
            self._init_frame_cache()

    def _cache_key(self, img_paths: List[str]) -> str:
        digest = hashlib.sha1(_CACHE_FORMAT.encode())
        with open(self.ann_file, 'rb') as f:
            digest.update(f.read())
        for path in img_paths:
            stat = os.stat(path)
            digest.update(f'{path}|{self._image_sizes[path]}|{stat.st_size}|'
                          f'{stat.st_mtime_ns}\n'.encode())
        return digest.hexdigest()[:20]

    def _decode(self, path: str) -> np.ndarray:
        """Decode like mmpose's ``LoadImage`` (mmcv, cv2 backend, BGR)."""
        with open(path, 'rb') as f:
            content = f.read()
        img = mmcv.imfrombytes(content, flag='color', backend='cv2')
        if img is None:
            raise ValueError(f'Cannot decode frame {path!r} (corrupt or not '
                             'an image); re-run the converter.')
        expected = self._image_sizes[path]
        if img.shape[:2] != expected:
            raise ValueError(
                f'Frame {path!r} is {img.shape[1]}x{img.shape[0]} but '
                f'{self.ann_file} says {expected[1]}x{expected[0]}; the '
                'keypoints would not match the pixels.')
        self.num_decoded += 1
        return img

    def _write_cache(self, path: str, img_paths: List[str]) -> None:
        """Decode every frame into ``path`` (tmp file + rename, so readers
        never see a partial cache)."""
        h_max = max(self._image_sizes[p][0] for p in img_paths)
        w_max = max(self._image_sizes[p][1] for p in img_paths)
        tmp = f'{path}.tmp-{os.getpid()}'
        start = time.time()
        array = np.lib.format.open_memmap(
            tmp, mode='w+', dtype=np.uint8,
            shape=(len(img_paths), h_max, w_max, 3))
        try:
            for row, img_path in enumerate(img_paths):
                img = self._decode(img_path)
                array[row, :img.shape[0], :img.shape[1]] = img
            array.flush()
            del array
            os.replace(tmp, path)
        except BaseException:
            if osp.exists(tmp):
                os.remove(tmp)
            raise
        print_log(
            f'BottleVideoDataset: decoded {len(img_paths)} frames into '
            f'{path} in {time.time() - start:.1f}s',
            logger='current')

    def _init_frame_cache(self) -> None:
        img_paths = sorted({
            BaseCocoStyleDataset.get_data_info(self, i)['img_path']
            for i in range(len(self))
        })
        if not img_paths:
            return
        cache_dir = self.cache_dir or osp.join(self.data_root or osp.dirname(
            self.ann_file), '.cache')
        os.makedirs(cache_dir, exist_ok=True)
        path = osp.join(cache_dir, f'frames-{self._cache_key(img_paths)}.npy')
        # Rank 0 decodes, everyone else waits and then maps the same file.
        if get_rank() == 0 and not osp.isfile(path):
            self._write_cache(path, img_paths)
        barrier()
        if not osp.isfile(path):
            # cache_dir is not shared with rank 0 (e.g. node-local disks).
            print_log(
                f'BottleVideoDataset: {path} is not visible on this rank; '
                'decoding a local copy.',
                logger='current',
                level=logging.WARNING)
            self._write_cache(path, img_paths)
        self._frame_cache = _FrameCache(
            path, {p: i for i, p in enumerate(img_paths)},
            [self._image_sizes[p] for p in img_paths])
        if self._frame_cache.array.shape[0] != len(img_paths):
            raise ValueError(f'Frame cache {path} holds '
                             f'{self._frame_cache.array.shape[0]} frames, '
                             f'expected {len(img_paths)}; delete it.')

    def get_data_info(self, idx: int) -> dict:
        """Data info of sample ``idx``; with ``cache=True`` it already holds
        ``img`` (H, W, 3) uint8 BGR, ``img_shape`` and ``ori_shape``, which
        mmpose's ``LoadImage`` keeps instead of reading the file."""
        info = super().get_data_info(idx)
        if self._frame_cache is not None:
            img = self._frame_cache.get(info['img_path'])
            info['img'] = img
            info['img_shape'] = img.shape[:2]
            info['ori_shape'] = img.shape[:2]
        return info

    def _check_deterministic_pipeline(self) -> None:
        for transform in self.pipeline.transforms:
            name = type(transform).__name__
            if name in _RANDOM_TRANSFORMS or name.startswith('Random'):
                raise ValueError(
                    f'BottleVideoDataset: cache_device={self.cache_device!r} '
                    'stores the first pipeline output of each sample, but '
                    f'the pipeline has the random transform {name}; remove '
                    'it or set cache_device=None.')

    def prepare_data(self, idx: int) -> Any:
        if self.cache_device is None:
            return super().prepare_data(idx)
        if torch.utils.data.get_worker_info() is not None:
            raise RuntimeError(
                f'BottleVideoDataset: cache_device={self.cache_device!r} '
                'keeps samples in the main process; use a dataloader with '
                'num_workers=0, persistent_workers=False, pin_memory=False.')
        key = BaseCocoStyleDataset.get_data_info(self, idx)['id']
        packed = self._packed_cache.get(key)
        if packed is None:
            packed = super().prepare_data(idx)
            if packed is None:
                return None
            packed['inputs'] = packed['inputs'].to(self.cache_device)
            self._packed_cache[key] = packed
        # The data sample is cloned because models write predictions into
        # it; ``inputs`` is shared and only ever read.
        return dict(
            inputs=packed['inputs'],
            data_samples=packed['data_samples'].clone())
