"""MP-100 as episodes for category-agnostic pose estimation (CAPE).

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
  ``persistent_workers=False``, since forked workers keep the epoch they were
  forked with).
- validation/test (``test_mode=True``): ``episodes_per_category`` fixed episodes per
  category (MP-100 protocol: 100 x 15 queries for val, 200 x 15 for test), drawn
  from ``default_rng([seed, category_id, episode])`` once, at start-up.
"""
import copy
import json
import logging
import os.path as osp
import re
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log
from mmpose.registry import DATASETS, TRANSFORMS

# Transforms that make a crop differ between two loads of the same image: dropped
# in the debug modes, where support and query must be the very same picture.
RANDOM_TRANSFORMS = ('RandomFlip', 'RandomBBoxTransform', 'RandomHalfBody',
                     'PhotometricDistortion', 'Albumentation', 'YOLOXHSVRandomAug',
                     'RandomBottomUpAffine')
BANNER = '=' * 80


def _is_random_transform(t) -> bool:
    name = t.get('type') if isinstance(t, dict) else type(t).__name__
    name = name if isinstance(name, str) else getattr(name, '__name__', str(name))
    return name in RANDOM_TRANSFORMS or name.startswith('Random')


def strip_random_transforms(pipeline: Sequence) -> tuple:
    """Split a pipeline into (kept transforms, names of removed random ones)."""
    kept, removed = [], []
    for t in pipeline:
        if _is_random_transform(t):
            removed.append(t.get('type') if isinstance(t, dict) else type(t).__name__)
        else:
            kept.append(t)
    return kept, removed


def _banner(lines: Sequence[str]) -> None:
    print_log('\n'.join(['', BANNER, *lines, BANNER]), logger='current')


@DATASETS.register_module()
class MP100EpisodicDataset(BaseDataset):
    """Episodes of MP-100 (COCO-style JSON, per-category keypoints and skeleton).

    Args:
        ann_file (str): ``mp100_split{S}_{train,val,test}.json`` (relative to
            ``data_root``). Each category lists its own ``keypoints`` (1..68
            names) and ``skeleton`` (pairs of keypoint indices, COCO's 1-based or
            0-based, see ``skeleton_index_base``).
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
        skeleton_index_base (str | int): ``'auto'`` (0-based if any skeleton of
            the file uses index 0, else COCO's 1-based), ``0`` or ``1``.
        check_image_files (bool): Check at start-up that every image exists.
        debug_single_image (int, optional): Category id: train and validate on
            one image of it, used as every support and as the query; random
            augmentation is removed from the pipeline.
        debug_single_image_index (int, optional): Which image of that category
            (position among the category's images, in file order). Default 0.
        debug_overfit_category (int, optional): Category id: episodes only from
            this category (all its images), augmentation removed.
        pipeline (list): Per-image transforms (load, bbox to centre/scale,
            augmentation, ``TopdownAffine``), applied to every support and query.
        pack_cfg (dict): The transform that packs a whole episode; default
            ``PackCapeInputs``.
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
        for name, value, low in (('num_shots', num_shots, 1),
                                 ('num_queries_per_episode', num_queries_per_episode, 1),
                                 ('episodes_per_epoch', episodes_per_epoch, 1),
                                 ('episodes_per_category', episodes_per_category, 1),
                                 ('seed', seed, 0)):
            if not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f'MP100EpisodicDataset: {name} must be an integer '
                                 f'>= {low}, got {value!r}')
        if skeleton_index_base not in ('auto', 0, 1):
            raise ValueError("MP100EpisodicDataset: skeleton_index_base must be "
                             f"'auto', 0 or 1, got {skeleton_index_base!r}")
        if debug_single_image is not None and debug_overfit_category is not None:
            raise ValueError('MP100EpisodicDataset: debug_single_image and '
                             'debug_overfit_category exclude each other; set one')
        if debug_single_image_index is not None and debug_single_image is None:
            raise ValueError('MP100EpisodicDataset: debug_single_image_index needs '
                             'debug_single_image=<category id>')
        self.num_shots = int(num_shots)
        self.num_queries = int(num_queries_per_episode)
        self.episodes_per_epoch = int(episodes_per_epoch)
        self.episodes_per_category = int(episodes_per_category)
        self.seed = int(seed)
        self.skeleton_index_base = skeleton_index_base
        self.check_image_files = check_image_files
        self.debug_single_image = debug_single_image
        self.debug_single_image_index = debug_single_image_index
        self.debug_overfit_category = debug_overfit_category
        self.category_split_file = category_split_file
        self.split_key = split_key
        self._epoch = 0
        if self.debug_mode:
            pipeline, removed = strip_random_transforms(pipeline)
            self._removed_transforms = removed
        self.pack = TRANSFORMS.build(pack_cfg) if isinstance(pack_cfg, dict) \
            else pack_cfg
        super().__init__(
            ann_file=ann_file, metainfo=metainfo, data_root=data_root,
            data_prefix=data_prefix, serialize_data=False, pipeline=pipeline,
            test_mode=test_mode, lazy_init=True, max_refetch=max_refetch)
        if category_split_file and data_root and not osp.isabs(category_split_file):
            self.category_split_file = osp.join(data_root, category_split_file)
        if not lazy_init:
            self.full_init()

    # ------------------------------------------------------------------ loading
    def _augmentation_note(self) -> str:
        removed = ', '.join(getattr(self, '_removed_transforms', []))
        return 'Augmentation OFF' + (f' (removed: {removed})' if removed else '')

    @property
    def debug_mode(self) -> bool:
        return (self.debug_single_image is not None
                or self.debug_overfit_category is not None)

    def full_init(self) -> None:
        """Read and check the annotations, select categories, fix val episodes."""
        if self._fully_initialized:
            return
        cats, images, anns = self._read_annotation_file()
        self._cats = cats
        selected = self._select_categories(cats, anns)
        self._build_instances(cats, images, anns, selected)
        if self.check_image_files:
            self._check_images()
        if self.debug_single_image is not None:
            self._init_single_image()
        else:
            self._init_categories()
        self._metainfo.update(
            categories={cid: dict(name=cats[cid]['name'],
                                  keypoints=list(cats[cid]['keypoints']),
                                  skeleton=[list(e) for e in cats[cid]['skeleton0']])
                        for cid in self.category_ids},
            num_shots=self.num_shots)
        self._fully_initialized = True

    def _read_annotation_file(self):
        f = self.ann_file
        if not osp.isfile(f):
            raise FileNotFoundError(
                f'MP-100 annotation file {f!r} not found; set ann_file (relative to '
                f'data_root={self.data_root!r}) to an mp100_split*_{{train,val,test}}'
                '.json, or make synthetic data with tools/dataset_converters/'
                'make_synthetic_mp100.py')
        try:
            with open(f) as fh:
                data = json.load(fh)
        except json.JSONDecodeError as e:
            raise ValueError(f'{f}: not valid JSON ({e})') from None
        for key in ('images', 'annotations', 'categories'):
            if not isinstance(data, dict) or not isinstance(data.get(key), list):
                raise ValueError(f'{f}: a COCO-style MP-100 file needs a list '
                                 f'"{key}"')
        cats = OrderedDict()
        for c in data['categories']:
            cid, name = c.get('id'), c.get('name', f'category {c.get("id")}')
            kpts = c.get('keypoints')
            if not isinstance(kpts, list):
                raise ValueError(f'{f}: category {cid} ({name!r}) has no "keypoints" '
                                 'list')
            skel = c.get('skeleton', []) or []
            if not all(isinstance(e, (list, tuple)) and len(e) == 2 for e in skel):
                raise ValueError(f'{f}: category {cid} ({name!r}): "skeleton" must be '
                                 'a list of [i, j] keypoint index pairs')
            cats[cid] = dict(id=cid, name=name, keypoints=kpts,
                             skeleton=[[int(a), int(b)] for a, b in skel])
        base = self.skeleton_index_base
        if base == 'auto':  # COCO convention is 1-based; 0 appears only if 0-based
            base = 0 if any(0 in e for c in cats.values() for e in c['skeleton']) \
                else 1
        for c in cats.values():
            k = len(c['keypoints'])
            c['skeleton0'] = [[a - base, b - base] for a, b in c['skeleton']]
            bad = [e for e, e0 in zip(c['skeleton'], c['skeleton0'])
                   if not (0 <= e0[0] < k and 0 <= e0[1] < k)]
            if bad:
                raise ValueError(
                    f'{f}: category {c["id"]} ({c["name"]!r}) skeleton edges {bad[:5]} '
                    f'name keypoints outside 1..{k} ({base}-based indices); fix the '
                    'skeleton or set skeleton_index_base')
        images = {}
        for im in data['images']:
            if 'id' not in im or 'file_name' not in im:
                raise ValueError(f'{f}: image entry {im!r} needs "id" and "file_name"')
            images[im['id']] = im
        anns = data['annotations']
        for a in anns:
            aid = a.get('id')
            if a.get('category_id') not in cats:
                raise ValueError(f'{f}: annotation {aid} has category_id '
                                 f'{a.get("category_id")!r}, which is not in '
                                 f'"categories" (known: {list(cats)})')
            if a.get('image_id') not in images:
                raise ValueError(f'{f}: annotation {aid} has image_id '
                                 f'{a.get("image_id")!r}, which is not in "images"')
            c = cats[a['category_id']]
            kp = a.get('keypoints')
            if not isinstance(kp, list) or len(kp) != 3 * len(c['keypoints']):
                got = len(kp) // 3 if isinstance(kp, list) else None
                raise ValueError(
                    f'{f}: annotation {aid} (image {a["image_id"]}) has {got} '
                    f'keypoints but its category {c["id"]} ({c["name"]!r}) defines '
                    f'{len(c["keypoints"])}; "keypoints" must hold x, y, v for each '
                    'of the category\'s keypoints')
            bbox = a.get('bbox')
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise ValueError(f'{f}: annotation {aid} (image {a["image_id"]}) needs '
                                 'a "bbox" [x, y, w, h]')
        return cats, images, anns

    def _infer_split_key(self) -> str:
        if self.split_key is not None:
            return self.split_key
        m = re.search(r'(train|val|test)\.json$', osp.basename(self.ann_file))
        if m is None:
            raise ValueError(
                f'MP100EpisodicDataset: cannot tell which list of '
                f'{self.category_split_file} to use for {self.ann_file}; set '
                "split_key='train', 'val' or 'test'")
        return m.group(1)

    def _select_categories(self, cats, anns) -> List[int]:
        f = self.ann_file
        annotated = sorted({a['category_id'] for a in anns})
        debug_cat = self.debug_single_image if self.debug_single_image is not None \
            else self.debug_overfit_category
        if debug_cat is not None:
            # Debug modes may pick any category of this file, split file or not.
            if debug_cat not in annotated:
                raise ValueError(
                    f'No images found for category {debug_cat} in {f}. Valid '
                    f'category ids: {annotated}')
            return [debug_cat]
        if not self.category_split_file:
            unused = [c for c in cats if c not in annotated]
            if unused:
                print_log(f'MP100EpisodicDataset: {len(unused)} categories of {f} '
                          f'have no annotations and are not used: '
                          f'{[cats[c]["name"] for c in unused][:10]}',
                          logger='current')
            return annotated
        sf = self.category_split_file
        if not osp.isfile(sf):
            raise FileNotFoundError(
                f'category split file {sf!r} not found; it holds {{"train": [...], '
                '"val": [...], "test": [...]}} category ids (relative to data_root); '
                'set category_split_file=None to use the categories of ann_file')
        try:
            with open(sf) as fh:
                split = json.load(fh)
        except json.JSONDecodeError as e:
            raise ValueError(f'{sf}: not valid JSON ({e})') from None
        key = self._infer_split_key()
        if not isinstance(split, dict) or not isinstance(split.get(key), list):
            found = list(split) if isinstance(split, dict) else type(split).__name__
            raise ValueError(f'{sf}: needs a list of category ids under "{key}" '
                             f'(found {found})')
        ids = split[key]
        unknown = [c for c in ids if c not in cats]
        if unknown:
            raise ValueError(
                f'{sf}: "{key}" names categories {unknown} that {f} does not define '
                f'(it has {list(cats)}); fix the split file or use the matching '
                'annotation file')
        empty = [c for c in ids if c not in annotated]
        if empty:
            raise ValueError(
                f'{f}: categories {[(c, cats[c]["name"]) for c in empty]} of "{key}" '
                f'in {sf} have no annotations (empty category); remove them from the '
                'split file or add their annotations')
        return sorted(ids)

    def _build_instances(self, cats, images, anns, selected) -> None:
        img_root = self.data_prefix.get('img', self.data_prefix.get('img_path', ''))
        sel = set(selected)
        self.instances: List[dict] = []
        self.cat_to_instances: Dict[int, List[int]] = {c: [] for c in selected}
        dropped: Dict[int, int] = {}
        for a in anns:
            cid = a['category_id']
            if cid not in sel:
                continue
            kp = np.asarray(a['keypoints'], np.float32).reshape(1, -1, 3)
            x, y, w, h = (float(v) for v in a['bbox'])
            vis = np.minimum(1, kp[..., 2]).astype(np.float32)
            if w <= 1 or h <= 1 or not vis.any() or a.get('iscrowd', 0):
                dropped[cid] = dropped.get(cid, 0) + 1
                continue
            im = images[a['image_id']]
            self.cat_to_instances[cid].append(len(self.instances))
            self.instances.append(dict(
                img_id=a['image_id'], id=a['id'], category_id=cid,
                img_path=osp.join(img_root, im['file_name']),
                bbox=np.array([[x, y, x + w, y + h]], np.float32),
                bbox_score=np.ones(1, np.float32),
                keypoints=kp[..., :2].copy(), keypoints_visible=vis,
                num_keypoints=int(vis.sum())))
        if dropped:
            print_log('MP100EpisodicDataset: instances without a usable box or any '
                      'labelled keypoint were left out: ' + ', '.join(
                          f'{cats[c]["name"]} (id {c}): {n}'
                          for c, n in sorted(dropped.items())), logger='current')

    def _check_images(self) -> None:
        missing = OrderedDict()
        for inst in self.instances:
            if inst['img_path'] not in missing and not osp.isfile(inst['img_path']):
                missing[inst['img_path']] = inst['img_id']
        if missing:
            shown = [f'image {i}: {p}' for p, i in list(missing.items())[:5]]
            raise FileNotFoundError(
                f'{self.ann_file}: {len(missing)} image file(s) are missing, e.g. '
                f'{"; ".join(shown)}. Check data_root={self.data_root!r} and '
                f'data_prefix={self.data_prefix!r}')

    def _init_categories(self) -> None:
        need = self.num_shots + self.num_queries
        ok, few = [], []
        for cid, idx in self.cat_to_instances.items():
            (ok if len(idx) >= need else few).append(cid)
        # {id: (name, number of valid instances)} of the categories left out
        self.skipped_categories = {c: (self._cats[c]['name'],
                                       len(self.cat_to_instances[c])) for c in few}
        if few:
            print_log(
                f'MP100EpisodicDataset ({osp.basename(self.ann_file)}): categories with '
                f'fewer than {need} valid instances ({self.num_shots} supports + '
                f'{self.num_queries} queries) are skipped: ' + ', '.join(
                    f'{self._cats[c]["name"]} (id {c}, {len(self.cat_to_instances[c])})'
                    for c in few), logger='current', level=logging.WARNING)
        if not ok:
            raise ValueError(
                f'{self.ann_file}: no category has the {need} valid instances an episode '
                f'needs ({self.num_shots} shots + {self.num_queries} queries); lower '
                'num_shots/num_queries_per_episode')
        self.category_ids = ok
        if self.test_mode:
            per_cat = []
            for cid in ok:
                pool = np.asarray(self.cat_to_instances[cid])
                eps = np.stack([
                    pool[np.random.default_rng([self.seed, cid, e]).choice(
                        len(pool), need, replace=False)]
                    for e in range(self.episodes_per_category)])
                per_cat.append(eps)
            self._fixed_episodes = np.stack(per_cat)  # (C, E, N + Q)
        if self.debug_overfit_category is not None:
            cid = ok[0]
            n_eps = self.episodes_per_category if self.test_mode \
                else self.episodes_per_epoch
            _banner([
                '⚠️  DEBUG OVERFIT CATEGORY MODE ' + ('(validation)' if self.test_mode
                                                     else 'ENABLED'),
                f'Category: {cid} ({self._cats[cid]["name"]}), '
                f'{len(self.cat_to_instances[cid])} instances from {self.ann_file}',
                f'Episodes: {n_eps} x {self.num_queries} '
                f'queries, {self.num_shots} shot(s)',
                self._augmentation_note(),
                'Purpose: check the model can fit every image of one category'])

    def _init_single_image(self) -> None:
        cid = self.debug_single_image
        by_image: 'OrderedDict[int, int]' = OrderedDict()
        for i in self.cat_to_instances[cid]:  # first instance of each image
            by_image.setdefault(self.instances[i]['img_id'], i)
        if not by_image:
            valid = sorted(c for c, v in self.cat_to_instances.items() if v)
            raise ValueError(f'No images found for category {cid} in {self.ann_file}'
                             f'. Valid category ids: {valid}')
        index = self.debug_single_image_index or 0
        if not 0 <= index < len(by_image):
            raise ValueError(
                f'Image index out of range: --debug-single-image-index {index}, but '
                f'category {cid} ({self._cats[cid]["name"]}) has {len(by_image)} '
                f'images (valid 0..{len(by_image) - 1})')
        self._single = list(by_image.values())[index]
        self.category_ids = [cid]
        inst = self.instances[self._single]
        if self.test_mode:
            _banner([
                '⚠️  SINGLE IMAGE VALIDATION MODE',
                'Validation will use the SAME image as training:',
                f'  - Image: {inst["img_path"]} (image id {inst["img_id"]})',
                f'  - Category ID: {cid} ({self._cats[cid]["name"]})',
                '  - Same image used as both support and query (self-supervised)',
                '  - Purpose: Verify model can perfectly memorize single image'])
        else:
            _banner([
                '⚠️  DEBUG SINGLE IMAGE MODE ENABLED',
                f'Training on SINGLE IMAGE from category: {cid} '
                f'({self._cats[cid]["name"]})',
                f'Selected image index: {inst["img_id"]} (image {index + 1} of '
                f'{len(by_image)} in category), {inst["img_path"]}',
                f'Episodes per epoch: {self.episodes_per_epoch}',
                self._augmentation_note(),
                'Expected: Training loss -> 0 within ~10 epochs',
                'Purpose: Extreme overfitting test on single image'])

    # ----------------------------------------------------------------- episodes
    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain indices (``EpisodicSampler`` passes it in the index)."""
        self._epoch = int(epoch)

    def __len__(self) -> int:
        if not self._fully_initialized:
            self.full_init()
        if self.debug_single_image is not None and self.test_mode:
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
        n = len(self)
        idx = int(idx)
        if idx < 0:
            raise IndexError(f'MP100EpisodicDataset index {idx} < 0')
        epoch, i = (0, idx) if self.test_mode else divmod(idx, n)
        if self.test_mode and i >= n:
            raise IndexError(f'MP100EpisodicDataset index {idx} out of range ({n})')
        if epoch == 0 and not self.test_mode:
            epoch = self._epoch
        ep, q = divmod(i, self.num_queries)
        if self.debug_single_image is not None:
            s = self._single
            cid, sup, query = self.category_ids[0], [s] * self.num_shots, s
        elif self.test_mode:
            per_cat = self.episodes_per_category
            c, e = divmod(ep, per_cat)
            row = self._fixed_episodes[c, e]
            cid, sup, query = self.category_ids[c], row[:self.num_shots], \
                row[self.num_shots + q]
        else:
            rng = np.random.default_rng([self.seed, epoch, ep])
            cid = self.category_ids[int(rng.integers(len(self.category_ids)))]
            pool = self.cat_to_instances[cid]
            pick = rng.choice(len(pool), self.num_shots + self.num_queries,
                              replace=False)
            sup = [pool[j] for j in pick[:self.num_shots]]
            query = pool[pick[self.num_shots + q]]
        return dict(category_id=int(cid), support_indices=[int(s) for s in sup],
                    query_index=int(query), episode_index=int(ep), pair_index=i,
                    epoch=int(epoch))

    def get_data_info(self, idx: int) -> dict:
        """Annotations of item ``idx``: the episode plus its instances' records."""
        ep = self.get_episode(idx)
        ep['query'] = copy.deepcopy(self.instances[ep['query_index']])
        ep['supports'] = [copy.deepcopy(self.instances[i])
                          for i in ep['support_indices']]
        return ep

    def _load_one(self, inst_idx: int) -> dict:
        info = copy.deepcopy(self.instances[inst_idx])
        k = info['keypoints'].shape[1]
        # CAPE keeps keypoint identities under a mirror flip (support and query
        # share one keypoint order), so RandomFlip must not swap any indices.
        info.update(flip_indices=list(range(k)), dataset_name='mp100')
        results = self.pipeline(info)
        if results is None:
            raise RuntimeError(f'the pipeline dropped {info["img_path"]} (annotation '
                               f'{info["id"]}); CAPE pipelines must not filter')
        return results

    def prepare_data(self, idx: int) -> dict:
        ep = self.get_episode(idx)
        cid = ep['category_id']
        cat = self._cats[cid]
        episode = dict(
            query=self._load_one(ep['query_index']),
            supports=[self._load_one(i) for i in ep['support_indices']],
            category_id=cid, category_name=cat['name'],
            skeleton=[list(e) for e in cat['skeleton0']],
            episode_index=ep['episode_index'], pair_index=ep['pair_index'],
            epoch=ep['epoch'])
        return self.pack(episode)

    def __getitem__(self, idx: int) -> dict:
        if not self._fully_initialized:
            self.full_init()
        return self.prepare_data(idx)


def apply_cape_debug_options(cfg,
                             single_image: Optional[int] = None,
                             single_image_index: Optional[int] = None,
                             overfit_category: Optional[int] = None):
    """Rewrite a loaded mmengine ``Config`` for the CAPE debug modes, in place.

    ``tools/train.py --debug-single-image CAT [--debug-single-image-index I]`` and
    ``--debug-overfit-category CAT`` call this. The training dataset gets the debug
    option and loses its random transforms; the validation and test datasets become
    copies of it in test mode (same annotation file, so they see the same image or
    category: in single-image mode the very same image is support and query in
    training and in validation).

    Returns:
        The same ``cfg``.
    """
    if single_image is None and overfit_category is None:
        if single_image_index is not None:
            raise ValueError('--debug-single-image-index needs --debug-single-image '
                             'CAT_ID')
        return cfg
    if single_image is not None and overfit_category is not None:
        raise ValueError('--debug-single-image and --debug-overfit-category exclude '
                         'each other; pass one')
    train_dl = cfg.get('train_dataloader')
    train_ds = train_dl.get('dataset') if train_dl else None
    if not train_ds or train_ds.get('type') not in ('MP100EpisodicDataset',
                                                    MP100EpisodicDataset):
        raise ValueError('the CAPE debug flags need train_dataloader.dataset.type='
                         f'"MP100EpisodicDataset"; this config has '
                         f'{train_ds.get("type") if train_ds else None!r}')
    pipeline, removed = strip_random_transforms(train_ds.get('pipeline', []))
    debug = dict(debug_single_image=single_image,
                 debug_single_image_index=single_image_index,
                 debug_overfit_category=overfit_category)
    train_ds.update(pipeline=pipeline, **debug)
    rewritten = ['train_dataloader']
    for name in ('val_dataloader', 'test_dataloader'):
        dl = cfg.get(name)
        if not dl or not dl.get('dataset'):
            continue
        old = dl['dataset']
        new = copy.deepcopy(train_ds)
        new.update(test_mode=True,
                   episodes_per_category=old.get('episodes_per_category', 100))
        dl['dataset'] = new
        rewritten.append(name)
    mode = (f'single image of category {single_image}, image index '
            f'{single_image_index or 0}' if single_image is not None
            else f'all images of category {overfit_category}')
    _banner([f'CAPE debug mode: {mode}',
             f'Rewritten: {", ".join(rewritten)} -> {train_ds.get("ann_file")}',
             f'Augmentation OFF (removed: {", ".join(removed) or "none"})'])
    return cfg
