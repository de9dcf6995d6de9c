"""Decoded video frames in one memory-mapped ``.npy``, found or written once.

This is a plain module, not a registered component: the datasets compose a
:class:`FrameCache` so that their own files only parse annotations and serve
samples, while the cache file (its name, folder fallback, atomic write,
rank-0 decode and one-line user errors) lives here.

Shapes: the file holds ``(N, H_max, W_max, 3)`` uint8 BGR, one row per
distinct frame in sorted ``img_path`` order; a frame smaller than the largest
is stored top-left and cropped back to its own ``(h, w)``, so
:meth:`FrameCache.get` returns ``(h, w, 3)`` uint8 BGR, as mmpose's
``LoadImage`` would. The file is
``frames-<20 hex digits>.npy`` in the first of ``<data_root>/.cache`` and
:func:`user_cache_dir` that can be written (or only ``cache_dir`` when set);
the digits hash :data:`CACHE_FORMAT`, the annotation file and each frame's
path, ``(h, w)``, file size and modification time, so edited data is decoded
again.
"""
import errno
import hashlib
import logging
import os
import os.path as osp
import time
from typing import Callable, Dict, List, Optional, Tuple

import cv2
import mmcv
import numpy as np
from mmengine.dist import barrier, get_rank
from mmengine.logging import print_log

from keypose_ext.utils.errors import UserFileNotFoundError, UserRuntimeError, UserValueError
from keypose_ext.utils.io import atomic_write

CACHE_FORMAT = 'bottle-frames-v1'
# errno values meaning "this folder cannot be written": try the next one.
_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)

Sizes = Dict[str, Tuple[int, int]]  # img_path -> (height, width)


def user_cache_dir() -> str:
    """The per-user folder for frame caches whose data root is read-only:
    ``$XDG_CACHE_HOME/keypose_ext/bottle_frames`` (``~/.cache/...``)."""
    base = os.environ.get('XDG_CACHE_HOME') or osp.join(osp.expanduser('~'), '.cache')
    return osp.join(base, 'keypose_ext', 'bottle_frames')


def recommended_num_workers(cache: bool,
                            outputs_cached: bool,
                            cpu_count: Optional[int] = None) -> int:
    """Dataloader workers for a bottle dataset, from its cache mode and the
    cores this process may use.

    - Pipeline outputs cached (``cache_outputs`` or ``cache_device``): 0.
      A cached sample is served in tens of microseconds, less than a worker
      needs to pass it through its queue, and ``cache_device`` needs the
      main process anyway.
    - Frame cache only (a random pipeline still runs per sample): up to 4,
      leaving one core to the main process.
    - No cache (JPEG decoding per sample): up to 8, leaving one core.

    Args:
        cache (bool): The dataset's ``cache``.
        outputs_cached (bool): Whether pipeline outputs are cached.
        cpu_count (int, optional): Usable cores; defaults to this process's
            CPU affinity.

    Returns:
        int: ``num_workers`` (``persistent_workers`` must be False for 0).
    """
    if outputs_cached:
        return 0
    if cpu_count is None:
        cpu_count = len(os.sched_getaffinity(0)) if hasattr(
            os, 'sched_getaffinity') else (os.cpu_count() or 1)
    return max(0, min(4 if cache else 8, cpu_count - 1))


def decode_frame(path: str, expected: Tuple[int, int], ann_file: str) -> np.ndarray:
    """Decode like mmpose's ``LoadImage`` (mmcv, cv2 backend, BGR) into
    ``(H, W, 3)`` uint8; a missing, empty, undecodable or wrongly sized
    (``expected`` = ``(H, W)`` of ``ann_file``) file is one user error
    naming it."""
    try:
        with open(path, 'rb') as f:
            content = f.read()
    except FileNotFoundError:
        raise UserFileNotFoundError(
            f'Frame {path!r} is gone (it existed when the dataset was built); '
            'restore it or re-run the converter.') from None
    if not content:
        raise UserValueError(f'Frame {path!r} is empty (0 bytes); re-run the converter '
                             '(tools/dataset_converters/video_to_bottle_data.py).')
    try:
        img = mmcv.imfrombytes(content, flag='color', backend='cv2')
    except cv2.error:
        img = None
    if img is None:
        raise UserValueError(f'Cannot decode frame {path!r} (corrupt or not an image); '
                             're-run the converter '
                             '(tools/dataset_converters/video_to_bottle_data.py).')
    if img.shape[:2] != expected:
        raise UserValueError(f'Frame {path!r} is {img.shape[1]}x{img.shape[0]} but '
                             f'{ann_file} says {expected[1]}x{expected[0]}; the '
                             'keypoints would not match the pixels.')
    return img


def cache_key(prefix: str, ann_file: str, img_paths: List[str], sizes: Sizes) -> str:
    """20 hex digits of SHA-1 over ``prefix``, the bytes of ``ann_file`` and
    each frame's path, ``(h, w)``, file size and modification time."""
    digest = hashlib.sha1(prefix.encode())
    with open(ann_file, 'rb') as f:
        digest.update(f.read())
    for path in img_paths:
        stat = os.stat(path)
        digest.update(f'{path}|{sizes[path]}|{stat.st_size}|'
                      f'{stat.st_mtime_ns}\n'.encode())
    return digest.hexdigest()[:20]


def cache_dirs(cache_dir: Optional[str], data_root: Optional[str], ann_file: str) -> List[str]:
    """Folders to hold the frame cache, in order of preference."""
    if cache_dir:
        return [cache_dir]
    root = data_root or osp.dirname(ann_file)
    return [osp.join(root, '.cache'), user_cache_dir()]


def _write(path: str, img_paths: List[str], sizes: Sizes, decode: Callable[[str],
                                                                           np.ndarray]) -> None:
    """Decode every frame into the ``.npy`` at ``path``, one row at a
    time (the whole video never sits in memory); ``atomic_write`` makes
    readers see the old state or the finished file, never a part."""
    h_max = max(sizes[p][0] for p in img_paths)
    w_max = max(sizes[p][1] for p in img_paths)
    start = time.time()
    row = np.zeros((h_max, w_max, 3), np.uint8)
    header = dict(
        descr=np.lib.format.dtype_to_descr(row.dtype),
        fortran_order=False,
        shape=(len(img_paths), h_max, w_max, 3))
    with atomic_write(path, 'wb') as f:
        np.lib.format.write_array_header_1_0(f, header)
        for img_path in img_paths:
            img = decode(img_path)
            if img.shape[:2] != (h_max, w_max):
                row[:] = 0
            row[:img.shape[0], :img.shape[1]] = img
            f.write(row.data)
    print_log(
        f'BottleVideoDataset: decoded {len(img_paths)} frames into '
        f'{path} in {time.time() - start:.1f}s',
        logger='current')


def _find_or_write(name: str, folders: List[str], write: Callable[[str], None]) -> str:
    """The cache file ``name`` in the first folder that has it, else
    written to the first folder that can be written."""
    for folder in folders:
        if osp.isfile(osp.join(folder, name)):
            return osp.join(folder, name)
    refused = []
    for folder in folders:
        path = osp.join(folder, name)
        try:
            os.makedirs(folder, exist_ok=True)
            write(path)
        except OSError as e:
            if e.errno not in _UNWRITABLE:
                raise
            refused.append(f'{folder!r} ({e.strerror})')
            continue
        if refused:
            print_log(
                f'BottleVideoDataset: cannot write {refused[0]}; the '
                f'frame cache is in {folder} instead. Set cache_dir= '
                'to choose the folder.',
                logger='current',
                level=logging.WARNING)
        return path
    raise UserRuntimeError('BottleVideoDataset: cannot write the frame cache to '
                           f'{" or ".join(refused)}; set cache_dir to a writable folder '
                           '(or cache=False).')


class FrameCache:
    """All frames in one ``(N, H_max, W_max, 3)`` uint8 ``.npy``,
    memory-mapped read-only so dataloader workers share its pages.

    Build it with :meth:`find_or_write`. Pickling or deep-copying
    (dataloader workers, ``get_subset``) carries only the path, ``rows``
    (img_path -> row) and ``shapes`` (row -> ``(h, w)``); the map is reopened
    on first use.
    """

    def __init__(self, path: str, rows: Dict[str, int], shapes: List[Tuple[int, int]]):
        self.path = path
        self.rows = rows
        self.shapes = shapes
        self._array: Optional[np.ndarray] = None

    @classmethod
    def find_or_write(cls, img_paths: List[str], sizes: Sizes, ann_file: str, folders: List[str],
                      decode: Callable[[str], np.ndarray]) -> 'FrameCache':
        """The cache of the sorted, distinct ``img_paths`` (``sizes`` gives
        each ``(h, w)``), reused from the first of ``folders`` that has it or
        decoded with ``decode`` into the first that can be written. Rank 0
        decodes while the other ranks wait at a barrier; a rank that then
        cannot see the file (node-local ``folders``) decodes its own copy."""
        name = f'frames-{cache_key(CACHE_FORMAT, ann_file, img_paths, sizes)}.npy'

        def write(path: str) -> None:
            _write(path, img_paths, sizes, decode)

        if get_rank() == 0:
            _find_or_write(name, folders, write)
        barrier()
        found = [osp.join(d, name) for d in folders if osp.isfile(osp.join(d, name))]
        if found:
            path = found[0]
        else:
            # cache_dir is not shared with rank 0 (e.g. node-local disks).
            print_log(
                f'BottleVideoDataset: {name} is not visible on this rank; '
                'decoding a local copy.',
                logger='current',
                level=logging.WARNING)
            path = _find_or_write(name, folders, write)
        cache = cls(path, {p: i for i, p in enumerate(img_paths)}, [sizes[p] for p in img_paths])
        if cache.array.shape[0] != len(img_paths):
            raise UserRuntimeError(f'Frame cache {path} holds '
                                   f'{cache.array.shape[0]} frames, expected '
                                   f'{len(img_paths)}; delete it.')
        return cache

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode='r')
        return self._array

    def get(self, img_path: str) -> np.ndarray:
        """Frame ``img_path`` as a writable ``(h, w, 3)`` uint8 BGR copy."""
        row = self.rows[img_path]
        h, w = self.shapes[row]
        # Copy: the pipeline owns its image, the shared map stays read-only.
        return np.array(self.array[row, :h, :w])

    def __getstate__(self):
        state = self.__dict__.copy()
        state['_array'] = None
        return state

    def __deepcopy__(self, memo):
        new = FrameCache(self.path, dict(self.rows), list(self.shapes))
        memo[id(self)] = new
        return new
