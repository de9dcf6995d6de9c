"""MP-100 as episodes for category-agnostic pose estimation (CAPE).

Slightly over 300 lines, half of them docstrings: episode drawing, the per-image pipeline
and packing share the episode layout; parsing is in ``mp100_instance_dataset.py`` and
``mp100_parsing.py``, debug modes in ``keypose_ext/utils/cape_debug.py``.

An *episode* is ``num_shots`` support instances plus ``num_queries_per_episode``
query instances of one category. One dataset item is one (supports, query) pair,
so a batch of B items may mix episodes and categories; the model pads keypoints.

Index layout:

- training (``test_mode=False``): ``len = episodes_per_epoch * num_queries``;
  item ``i`` of epoch ``e`` belongs to episode ``i // num_queries``, which is drawn
  from ``numpy.random.default_rng([seed, e, episode])``. Episodes are therefore a
  pure function of (seed, epoch, index): every dataloader worker and DDP rank agrees
  without shared state. The epoch reaches the workers inside the index itself:
  :class:`EpisodicSampler` yields ``epoch * len(dataset) + i`` (so persistent workers
  are fine); ``set_epoch`` is a fallback for other samplers (then use
  ``persistent_workers=False``: forked workers keep the epoch they were forked with).
- validation/test (``test_mode=True``): ``episodes_per_category`` fixed episodes per
  category (MP-100 protocol: 100 x 15 queries for val, 200 x 15 for test), drawn
  from ``default_rng([seed, category_id, episode])`` once, at start-up.

Supports have a labelled keypoint; a query need not: it stays, and scores 0 (as a
pair without a counted keypoint does in the references' PCK).
"""
import logging
import os.path as osp
from collections import OrderedDict
from typing import Callable, List, Optional, Union

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log
from mmpose.registry import DATASETS, TRANSFORMS

from keypose_ext.utils.cape_debug import CapeDebugMode
from keypose_ext.utils.errors import UserValueError
from .mp100_instance_dataset import MP100InstanceDataset
from .mp100_parsing import infer_split_key, read_category_split


@DATASETS.register_module()
class MP100EpisodicDataset(BaseDataset):
    """Episodes of MP-100: (supports, query) pairs of one category, packed for CAPE.

    The instances come from :class:`MP100InstanceDataset` (MMPose's COCO parsing of
    the file, checked, per-category keypoints and 0-based skeleton); this class picks
    the categories, draws the episodes, runs ``pipeline`` on every support and query
    and packs the pair with ``pack_cfg``.

    Args:
        ann_file (str): ``mp100_split{S}_{train,val,test}.json`` (relative to
            ``data_root``).
        data_root (str): Dataset root.
        data_prefix (dict): ``img``: image folder relative to ``data_root``;
            ``file_name`` in the JSON is relative to it (``<category>/<x>.jpg``).
        category_split_file (str, optional): JSON with ``train``/``val``/``test``
            lists of category ids (relative to ``data_root``). Without one, the
            categories are those annotated in ``ann_file``.
        split_key (str, optional): Which list of ``category_split_file`` to use.
            Defaults to the ``train``/``val``/``test`` suffix of ``ann_file``.
        num_shots (int): Support instances per episode.
        num_queries_per_episode (int): Query instances per episode.
        episodes_per_epoch (int): Training episodes per epoch.
        episodes_per_category (int): Fixed val/test episodes per category.
        seed (int): Seed of all episode draws (non-negative).
        skeleton_index_base (str | int): ``'auto'``, ``0`` or ``1`` (see
            :mod:`keypose_ext.datasets.mp100_parsing`).
        check_image_files (bool): Check at start-up that every image exists.
        debug_single_image (int, optional): Category id: train and validate on one
            image of it, every support and the query (see
            :mod:`keypose_ext.utils.cape_debug`).
        debug_single_image_index (int, optional): Which image of that category
            (position among the category's images, in file order). Default 0.
        debug_overfit_category (int, optional): Category id: episodes only from it.
        pipeline (list): Per-image transforms (load, bbox to centre/scale,
            augmentation, ``TopdownAffine``), applied to every support and query.
        pack_cfg (dict): The transform that packs a pair; default ``PackCapeInputs``.
        test_mode (bool): Fixed episodes (val/test) instead of per-epoch ones.
    """

    METAINFO: dict = dict(dataset_name='mp100')

    def __init__(self,
                 ann_file: str = '',
                 data_root: str = '',
                 data_prefix: dict = dict(img='images/'),
                 category_split_file: Optional[str] = None,
                 split_key: Optional[str] = None,
                 num_shots: int = 1,
                 num_queries_per_episode: int = 1,
                 episodes_per_epoch: int = 1000,
                 episodes_per_category: int = 100,
                 seed: int = 0,
                 skeleton_index_base: Union[str, int] = 'auto',
                 check_image_files: bool = True,
                 debug_single_image: Optional[int] = None,
                 debug_single_image_index: Optional[int] = None,
                 debug_overfit_category: Optional[int] = None,
                 pipeline: List[Union[dict, Callable]] = [],
                 pack_cfg: dict = dict(type='PackCapeInputs'),
                 metainfo: Optional[dict] = None,
                 test_mode: bool = False,
                 lazy_init: bool = False,
                 max_refetch: int = 1):
        for name, value, low in (('num_shots', num_shots,
                                  1), ('num_queries_per_episode', num_queries_per_episode,
                                       1), ('episodes_per_epoch', episodes_per_epoch, 1),
                                 ('episodes_per_category', episodes_per_category, 1), ('seed', seed,
                                                                                       0)):
            if not isinstance(value, (int, np.integer)) or value < low:
                raise UserValueError(f'MP100EpisodicDataset: {name} must be an integer '
                                     f'>= {low}, got {value!r}')
        self.num_shots, self.num_queries = int(num_shots), int(num_queries_per_episode)
        self.episodes_per_epoch = int(episodes_per_epoch)
        self.episodes_per_category = int(episodes_per_category)
        self.seed, self.split_key = int(seed), split_key
        self.debug = CapeDebugMode(debug_single_image, debug_single_image_index,
                                   debug_overfit_category)
        self._epoch = 0
        self.pack = TRANSFORMS.build(pack_cfg) if isinstance(pack_cfg, dict) else pack_cfg
        super().__init__(
            ann_file=ann_file,
            metainfo=metainfo,
            data_root=data_root,
            data_prefix=data_prefix,
            serialize_data=False,
            pipeline=self.debug.strip_pipeline(pipeline),
            test_mode=test_mode,
            lazy_init=True,
            max_refetch=max_refetch)
        self.category_split_file = category_split_file
        if category_split_file and data_root and not osp.isabs(category_split_file):
            self.category_split_file = osp.join(data_root, category_split_file)
        self.instance_dataset = MP100InstanceDataset(  # paths joined with data_root above
            ann_file=self.ann_file,
            data_prefix=self.data_prefix,
            skeleton_index_base=skeleton_index_base,
            check_image_files=check_image_files,
            lazy_init=True)
        if not lazy_init:
            self.full_init()

    def full_init(self) -> None:
        """Load the instances, select categories, fix the val/test episodes."""
        if self._fully_initialized:
            return
        self.instance_dataset.full_init()
        self._cats = self.instance_dataset.metainfo['categories']
        self._table = table = self.instance_dataset.instance_table()
        annotated = sorted(set(table['category_id'].tolist()))
        selected = self._select_categories(annotated)
        # {category: instance indices}, all of them (queries) and the labelled (supports)
        self._pool = {c: np.flatnonzero(table['category_id'] == c) for c in selected}
        self._labelled = {c: p[table['num_labelled'][p] > 0] for c, p in self._pool.items()}
        unlabelled = sum(len(self._pool[c]) - len(self._labelled[c]) for c in selected)
        if unlabelled:
            print_log(
                f'{osp.basename(self.ann_file)}: {unlabelled} instance(s) without a labelled '
                'keypoint are used as queries only (they score 0)',
                logger='current')
        if self.debug.single_image is not None:
            self._init_single_image()
        else:
            self._init_categories(selected)
        self._metainfo.update(
            categories={
                c:
                dict(
                    name=self._cats[c]['name'],
                    keypoints=self._cats[c]['keypoints'],
                    skeleton=self._cats[c]['skeleton'])
                for c in self.category_ids
            },
            num_shots=self.num_shots)
        self._fully_initialized = True

    def _select_categories(self, annotated: List[int]) -> List[int]:
        if self.debug.enabled:  # any category of the file, split file or not
            return self.debug.check_category(annotated, self.ann_file)
        if self.category_split_file:
            key = infer_split_key(self.ann_file, self.split_key, self.category_split_file)
            return read_category_split(self.category_split_file, key, self.ann_file, self._cats,
                                       annotated)
        unused = [self._cats[c]['name'] for c in self._cats if c not in annotated]
        if unused:
            print_log(
                f'{osp.basename(self.ann_file)}: {len(unused)} categories have no '
                f'annotations and are not used: {unused[:10]}',
                logger='current')
        return annotated

    def _init_categories(self, selected: List[int]) -> None:
        n, q = self.num_shots, self.num_queries
        ok = [c for c in selected if len(self._labelled[c]) >= n and len(self._pool[c]) >= n + q]
        # {id: (name, number of instances)} of the categories left out
        self.skipped_categories = {
            c: (self._cats[c]['name'], len(self._pool[c]))
            for c in selected if c not in ok
        }
        if self.skipped_categories:
            print_log(
                f'{osp.basename(self.ann_file)}: categories with fewer than {n + q} instances '
                f'({n} supports with a labelled keypoint + {q} queries) are skipped: ' +
                ', '.join(f'{name} (id {c}, {k})'
                          for c, (name, k) in self.skipped_categories.items()),
                logger='current',
                level=logging.WARNING)
        if not ok:
            raise UserValueError(
                f'{self.ann_file}: no category has the {n + q} instances an episode needs '
                f'({n} shots with a labelled keypoint + {q} queries); lower '
                'num_shots/num_queries_per_episode')
        self.category_ids = ok
        if self.test_mode:  # (C, E, N + Q) instance indices
            self._fixed_episodes = np.stack([
                np.stack([
                    self._draw(np.random.default_rng([self.seed, c, e]), c)
                    for e in range(self.episodes_per_category)
                ]) for c in ok
            ])
        if self.debug.overfit_category is not None:
            c = ok[0]
            self.debug.overfit_banner(
                self.test_mode, self._cats[c]['name'], len(self._pool[c]), self.ann_file,
                self.episodes_per_category if self.test_mode else self.episodes_per_epoch,
                self.num_queries, self.num_shots)

    def _init_single_image(self) -> None:
        c = self.debug.single_image
        first = OrderedDict()  # image -> its first instance with a labelled keypoint
        for i in self._labelled[c]:
            first.setdefault(self._table['img_id'][i], int(i))
        name = self._cats[c]['name']
        index, self._single = self.debug.choose_image(list(first.values()), name)
        self.category_ids = [c]
        self.skipped_categories = {}
        self.debug.single_image_banner(self.test_mode, name,
                                       self.instance_dataset.get_data_info(self._single), index,
                                       len(first), self.episodes_per_epoch)

    def _draw(self, rng: np.random.Generator, c: int) -> np.ndarray:
        """N + Q distinct instances of category ``c``, supports first, all labelled."""
        n, m = self.num_shots, self.num_shots + self.num_queries
        pick = self._pool[c][rng.choice(len(self._pool[c]), m, replace=False)]
        has_label = self._table['num_labelled'][pick] > 0
        if has_label[:n].all():  # always so when every instance has a label
            return pick
        # an unlabelled support trades places with a labelled query, or with a
        # labelled instance not drawn
        pick, k = pick[np.argsort(~has_label, kind='stable')], int(has_label.sum())
        spare = np.setdiff1d(self._labelled[c], pick)
        extra = spare[rng.choice(len(spare), max(0, n - k), replace=False)]
        return np.concatenate([pick[:k], extra, pick[k:]])[:m]

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain indices (``EpisodicSampler`` passes it in the index)."""
        self._epoch = int(epoch)

    def __len__(self) -> int:
        if not self._fully_initialized:
            self.full_init()
        if self.debug.single_image is not None and self.test_mode:
            return 1
        if self.test_mode:
            return len(self.category_ids) * self.episodes_per_category * self.num_queries
        return self.episodes_per_epoch * self.num_queries

    def get_episode(self, idx: int) -> dict:
        """The instances of item ``idx`` (no image is read).

        ``idx`` may carry the epoch as ``epoch * len(self) + i`` (training).

        Returns:
            dict: ``category_id``, ``support_indices`` (list of instance indices),
            ``query_index``, ``episode_index``, ``pair_index`` and ``epoch``.
        """
        n, idx = len(self), int(idx)
        if idx < 0 or (self.test_mode and idx >= n):
            raise IndexError(f'MP100EpisodicDataset index {idx} out of range ({n})')
        epoch, i = (0, idx) if self.test_mode else divmod(idx, n)
        epoch = epoch or (0 if self.test_mode else self._epoch)  # set_epoch's, for plain indices
        ep, q = divmod(i, self.num_queries)
        if self.debug.single_image is not None:
            c, row = self.category_ids[0], [self._single] * (self.num_shots + q + 1)
        elif self.test_mode:
            c_pos, e = divmod(ep, self.episodes_per_category)
            c, row = self.category_ids[c_pos], self._fixed_episodes[c_pos, e]
        else:
            rng = np.random.default_rng([self.seed, epoch, ep])
            c = self.category_ids[int(rng.integers(len(self.category_ids)))]
            row = self._draw(rng, c)
        return dict(
            category_id=int(c),
            support_indices=[int(s) for s in row[:self.num_shots]],
            query_index=int(row[self.num_shots + q]),
            episode_index=int(ep),
            pair_index=i,
            epoch=int(epoch))

    def get_data_info(self, idx: int) -> dict:
        """Annotations of item ``idx``: the episode plus its instances' records."""
        ep = self.get_episode(idx)
        ep['query'] = self.instance_dataset.get_data_info(ep['query_index'])
        ep['supports'] = [self.instance_dataset.get_data_info(i) for i in ep['support_indices']]
        return ep

    def _load_one(self, inst_idx: int) -> dict:
        results = self.pipeline(info := self.instance_dataset.get_data_info(inst_idx))
        if results is None:
            raise RuntimeError(f'the pipeline dropped {info["img_path"]} (annotation '
                               f'{info["id"]}); CAPE pipelines must not filter')
        return results

    def prepare_data(self, idx: int) -> dict:
        ep = self.get_episode(idx)
        cat = self._cats[ep['category_id']]
        return self.pack(
            dict(
                query=self._load_one(ep['query_index']),
                supports=[self._load_one(i) for i in ep['support_indices']],
                category_id=ep['category_id'],
                category_name=cat['name'],
                skeleton=[list(e) for e in cat['skeleton']],
                episode_index=ep['episode_index'],
                pair_index=ep['pair_index'],
                epoch=ep['epoch']))

    def __getitem__(self, idx: int) -> dict:
        if not self._fully_initialized:
            self.full_init()
        return self.prepare_data(idx)
