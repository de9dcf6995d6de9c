"""Top-down dataset of video frames with box keypoints and their depths.

Over ~300 lines because one registered dataset keeps all of its annotation
checks (one-line error per field) and its cache options together; the
frame-cache file itself is :mod:`keypose_ext.datasets.frame_cache`.
"""
import copy
import logging
import os.path as osp
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log
from mmpose.datasets.datasets.base import BaseCocoStyleDataset
from mmpose.registry import DATASETS

from keypose_ext.utils.errors import (KeyposeUserError, UserFileNotFoundError, UserRuntimeError,
                                      UserValueError)
from keypose_ext.utils.io import load_json
from keypose_ext.utils.pipeline import is_random_transform, transform_name
from .bottle_metainfo import BOTTLE_METAINFO
from .frame_cache import (FrameCache, cache_dirs, decode_frame, recommended_num_workers,
                          user_cache_dir)

# recommended_num_workers and user_cache_dir are re-exported: configs import
# them from here.
__all__ = ['BottleVideoDataset', 'recommended_num_workers', 'user_cache_dir']


class _PackedCache(dict):
    """Packed pipeline outputs keyed by sample index. Deep copies start
    empty: the entries are derived data (possibly CUDA tensors), and
    ``get_subset`` re-indexes the samples."""

    def __deepcopy__(self, memo):
        return _PackedCache()


@DATASETS.register_module()
class BottleVideoDataset(BaseCocoStyleDataset):
    """Frames of a video with box keypoints (Objectron order) + depths.

    Reads the COCO-style ``annotations.json`` written by
    ``tools/dataset_converters/video_to_bottle_data.py`` (schema in
    ``docs/bottle_data.md``). Each sample is one frame with one instance;
    with ``K = NUM_KEYPOINTS`` (9) of ``bottle_metainfo.py``:
    ``keypoints`` (1, K, 2) pixels, ``keypoints_visible`` (1, K),
    ``keypoints_depth`` (1, K) metres (>= 0) and, when annotated,
    ``keypoints_3d`` (1, K, 3) in camera coordinates.

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
            ``<data_root>/.cache``, or, when that folder cannot be written
            (read-only data), :func:`user_cache_dir` with a warning. Its name
            hashes the annotation file, the frame list and the frame files'
            sizes and times, so edited data is decoded again.
        cache_outputs (bool | str): Keep each sample's packed pipeline output
            (``inputs`` + data sample) in this process after its first pass
            and serve it from memory afterwards. ``'auto'`` (default): when
            ``cache=True`` and the pipeline is deterministic (no random
            transform of ``keypose_ext/utils/pipeline.py``). Each dataloader
            worker keeps its own copy; :func:`recommended_num_workers` gives
            0 workers for this mode.
        cache_device (str, optional): ``'cuda'`` (or ``'cpu'``): as
            ``cache_outputs``, with the ``inputs`` tensor moved to that
            device. Needs ``num_workers=0`` (and ``pin_memory=False``).
        **kwargs: Passed to :class:`BaseCocoStyleDataset` (``pipeline``,
            ``test_mode``, ``indices``, ...).

    Attributes:
        num_decoded (int): Frames this process decoded into the cache (0
            when an existing cache was reused).
        outputs_cached (bool): Whether pipeline outputs are cached.
    """

    METAINFO: dict = copy.deepcopy(BOTTLE_METAINFO)

    # Named in the missing-file error; subclasses reading another converter's output override.
    ANNOTATION_FILE_KIND = 'Bottle annotation file'
    CONVERTER = 'tools/dataset_converters/video_to_bottle_data.py'

    def __init__(self,
                 ann_file: str = 'annotations.json',
                 data_root: Optional[str] = None,
                 data_prefix: dict = dict(img='images/'),
                 bbox_mode: str = 'frame',
                 cache: bool = False,
                 cache_dir: Optional[str] = None,
                 cache_outputs: Union[bool, str] = 'auto',
                 cache_device: Optional[str] = None,
                 **kwargs):
        if bbox_mode not in ('frame', 'annotation'):
            raise UserValueError('BottleVideoDataset: bbox_mode must be "frame" or '
                                 f'"annotation", got {bbox_mode!r}.')
        if kwargs.get('data_mode', 'topdown') != 'topdown':
            raise UserValueError('BottleVideoDataset supports data_mode='
                                 '"topdown" only (one box per frame).')
        if cache_outputs not in (True, False, 'auto'):
            raise UserValueError('BottleVideoDataset: cache_outputs must be True, False or '
                                 f'"auto", got {cache_outputs!r}.')
        if cache_device is not None:
            device = torch.device(cache_device)
            if device.type == 'cuda' and not torch.cuda.is_available():
                raise UserRuntimeError(f'BottleVideoDataset: cache_device={cache_device!r} but '
                                       'CUDA is not available; use cache_device=None.')
        self.bbox_mode = bbox_mode
        self.cache = cache
        self.cache_dir = cache_dir
        self.cache_device = cache_device
        self.num_decoded = 0
        self._image_sizes: Dict[str, Tuple[int, int]] = {}
        self._frame_cache: Optional[FrameCache] = None
        self._packed_cache = _PackedCache()
        self._cache_outputs = cache_outputs
        self.outputs_cached: Optional[bool] = None
        super().__init__(ann_file=ann_file, data_root=data_root, data_prefix=data_prefix, **kwargs)
        self._check_pipeline()

    # ------------------------------------------------------------ loading
    def _load_annotations(self) -> Tuple[List[dict], List[dict]]:
        """Load and validate ``annotations.json``; every problem is one
        exception naming the file and the field."""
        ann_file = self.ann_file
        data = load_json(ann_file, self.ANNOTATION_FILE_KIND,
                         f'create it with {self.CONVERTER} or fix data_root/ann_file')
        for key in ('images', 'annotations', 'categories'):
            if not isinstance(data, dict) or not isinstance(data.get(key), list):
                raise UserValueError(f'{ann_file}: missing the COCO list "{key}" (see '
                                     'docs/bottle_data.md).')
        self._metainfo['CLASSES'] = data['categories']

        images: Dict[Any, dict] = {}
        missing = []
        for i, img in enumerate(data['images']):
            for key in ('id', 'file_name', 'width', 'height'):
                if not isinstance(img, dict) or key not in img:
                    raise UserValueError(f'{ann_file}: images[{i}] has no "{key}".')
            if img['id'] in images:
                raise UserValueError(f'{ann_file}: image id {img["id"]} appears twice.')
            img = dict(img)
            img['img_id'] = img['id']
            img['img_path'] = osp.join(self.data_prefix['img'], img['file_name'])
            if not osp.isfile(img['img_path']):
                missing.append(img['img_path'])
            images[img['id']] = img
        if missing:
            raise UserFileNotFoundError(
                f'{ann_file} lists {len(missing)} image(s) that do not '
                f'exist, e.g. {missing[0]!r}; check data_root/data_prefix or '
                're-run the converter.')

        anns_by_image: Dict[Any, List[dict]] = {}
        for i, ann in enumerate(data['annotations']):
            if not isinstance(ann, dict) or 'id' not in ann:
                raise UserValueError(f'{ann_file}: annotations[{i}] has no "id".')
            if ann.get('image_id') not in images:
                raise UserValueError(f'{ann_file}: annotation id {ann["id"]} refers to image '
                                     f'id {ann.get("image_id")!r}, which is not in "images".')
            anns_by_image.setdefault(ann['image_id'], []).append(ann)

        instance_list, image_list = [], []
        for img_id, img in images.items():
            if isinstance(img_id, int) and img_id % self.sample_interval:
                continue
            image_list.append(img)
            self._image_sizes[img['img_path']] = (int(img['height']), int(img['width']))
            for ann in anns_by_image.get(img_id, []):
                info = self.parse_data_info(dict(raw_ann_info=ann, raw_img_info=img))
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
            raise UserValueError(f'{where} has no "{key}" ({what}).') from None
        except (TypeError, ValueError):
            raise UserValueError(f'{where}: "{key}" must be numbers ({what}).') from None
        expected = int(np.prod(shape))
        if arr.size != expected:
            if per_keypoint:
                per = expected // shape[0]
                raise UserValueError(f'{where}: "{key}" has {arr.size / per:g} keypoints '
                                     f'({what}), expected {shape[0]} (box centre + corners '
                                     f'= {expected} numbers).')
            raise UserValueError(f'{where}: "{key}" has {arr.size} numbers, '
                                 f'expected {expected} ({what}).')
        if not np.isfinite(arr).all():
            raise UserValueError(f'{where}: "{key}" contains NaN or infinite values.')
        return arr.reshape(shape)

    def parse_data_info(self, raw_data_info: dict) -> Optional[dict]:
        """Parse one annotation; adds ``keypoints_depth`` (1, K) float32 and
        ``keypoints_3d`` (1, K, 3) when present, and sets the bbox by
        ``bbox_mode``."""
        ann = raw_data_info['raw_ann_info']
        img = raw_data_info['raw_img_info']
        num = self._metainfo['num_keypoints']
        self._field(ann, 'keypoints', (num, 3), '[x, y, v] per keypoint')
        depth = self._field(ann, 'keypoints_depth', (num, ), 'depth in metres per keypoint')
        if (depth < 0).any():
            k = int(np.argmax(depth < 0))
            name = self._metainfo['keypoint_id2name'].get(k, k)
            raise UserValueError(f'{self.ann_file}: annotation id {ann["id"]}: '
                                 f'"keypoints_depth"[{k}] ({name}) is {float(depth[k]):g}; '
                                 'depths are metres in front of the camera and cannot be '
                                 'negative. Fix the annotation (or re-run the converter).')
        points_3d = None
        if ann.get('keypoints_3d') is not None:
            points_3d = self._field(ann, 'keypoints_3d', (num, 3), '[X, Y, Z] metres per keypoint')
        width, height = float(img['width']), float(img['height'])
        raw = dict(ann)
        if self.bbox_mode == 'frame':
            raw['bbox'] = [0.0, 0.0, width, height]
        else:
            bbox = self._field(ann, 'bbox', (4, ), 'x, y, w, h in pixels', per_keypoint=False)
            if bbox[2] <= 0 or bbox[3] <= 0:
                raise UserValueError(f'{self.ann_file}: annotation id {ann["id"]}: bbox '
                                     f'{bbox.tolist()} is empty; use bbox_mode="frame" or '
                                     'fix the annotation.')
        info = super().parse_data_info(dict(raw_ann_info=raw, raw_img_info=img))
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
            dropped = sorted({d['id'] for d in instance_list} - {d['id'] for d in kept})
            print_log(
                f'BottleVideoDataset: {len(dropped)} annotation(s) without '
                f'labelled keypoints or box are skipped, ids {dropped[:10]}',
                logger='current',
                level=logging.WARNING)
        return kept

    def _check_pipeline(self) -> None:
        """Refuse, before any frame is decoded, a codec built for another
        ``K`` than the metainfo's and an output cache over a random
        pipeline; decide ``outputs_cached``."""
        if self.outputs_cached is not None:
            return
        num = self._metainfo['num_keypoints']
        for t in self.pipeline.transforms:
            encoders = getattr(t, 'encoder', None)
            if encoders is None:
                continue
            for codec in (encoders if isinstance(encoders, (list, tuple)) else [encoders]):
                k = getattr(codec, 'num_keypoints', None)
                if k is not None and k != num:
                    raise UserValueError(f'BottleVideoDataset: the pipeline\'s '
                                         f'{type(codec).__name__} has num_keypoints={k} but '
                                         f'the dataset metainfo has {num} keypoints; derive '
                                         'both from NUM_KEYPOINTS of keypose_ext/datasets/'
                                         'bottle_metainfo.py.')
        random_names = [
            transform_name(t) for t in self.pipeline.transforms if is_random_transform(t)
        ]
        what = None
        if self.cache_device is not None:
            what = f'cache_device={self.cache_device!r}'
        elif self._cache_outputs is True:
            what = 'cache_outputs=True'
        if what and random_names:
            raise UserValueError(f'BottleVideoDataset: {what} stores the first pipeline '
                                 'output of each sample, but the pipeline has the random '
                                 f'transform {random_names[0]}; remove it or turn the output '
                                 'cache off.')
        self.outputs_cached = bool(
            self.cache_device is not None or self._cache_outputs is True
            or (self._cache_outputs == 'auto' and self.cache and not random_names))

    # ------------------------------------------------------------- caching
    def full_init(self):
        if self._fully_initialized:
            return
        self._check_pipeline()
        super().full_init()
        if self.cache:
            self._init_frame_cache()

    def _decode(self, path: str) -> np.ndarray:
        """Decode frame ``path`` (:func:`decode_frame`: one user error naming
        a bad file) and count it in ``num_decoded``."""
        img = decode_frame(path, self._image_sizes[path], self.ann_file)
        self.num_decoded += 1
        return img

    def _init_frame_cache(self) -> None:
        img_paths = sorted(
            {BaseDataset.get_data_info(self, i)['img_path']
             for i in range(len(self))})
        if not img_paths:
            return
        folders = cache_dirs(self.cache_dir, self.data_root, self.ann_file)
        self._frame_cache = FrameCache.find_or_write(img_paths, self._image_sizes, self.ann_file,
                                                     folders, self._decode)

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

    def _run_pipeline(self, idx: int) -> Any:
        """``prepare_data`` of the base class; a frame that fails to load
        becomes one user error naming the file (mmpose's ``LoadImage`` would
        end in an OpenCV or mmcv assertion)."""
        try:
            return super().prepare_data(idx)
        except KeyposeUserError:
            raise
        except Exception:
            if self._frame_cache is not None:
                raise  # frames were checked when the cache was built
            path = BaseDataset.get_data_info(self, idx)['img_path']
            try:
                self._decode(path)
            except KeyposeUserError as bad_frame:
                raise bad_frame from None
            raise

    def prepare_data(self, idx: int) -> Any:
        if not self.outputs_cached:
            return self._run_pipeline(idx)
        if (self.cache_device is not None and torch.utils.data.get_worker_info() is not None):
            raise UserRuntimeError(f'BottleVideoDataset: cache_device={self.cache_device!r} '
                                   'keeps samples in the main process; use a dataloader with '
                                   'num_workers=0, persistent_workers=False, pin_memory=False.')
        packed = self._packed_cache.get(idx)
        if packed is None:
            packed = self._run_pipeline(idx)
            if not (isinstance(packed, dict) and isinstance(packed.get('inputs'), torch.Tensor)):
                # Not packed (no Pack*Inputs at the end): nothing to share.
                return packed
            if self.cache_device is not None:
                packed['inputs'] = packed['inputs'].to(self.cache_device)
            self._packed_cache[idx] = packed
        # The data sample is cloned because models write predictions into
        # it; ``inputs`` is shared and only ever read.
        return dict(inputs=packed['inputs'], data_samples=packed['data_samples'].clone())
