"""The CAPE debug modes (seed 001), implemented here and only here.

- single image: one image of a category is every support and the query, in training
  and in validation (can the model memorise one picture?);
- overfit category: episodes from all images of one category only.

Two ways in, one implementation. A config sets the options of
:class:`~keypose_ext.datasets.MP100EpisodicDataset` (``debug_single_image=CAT``,
``debug_single_image_index=I``, ``debug_overfit_category=CAT``); ``tools/train.py
--debug-single-image CAT [--debug-single-image-index I]`` or ``--debug-overfit-category
CAT`` calls :func:`apply_cape_debug_options`, which writes those same options into the
config. The dataset hands its options to :class:`CapeDebugMode`, which checks them,
removes the random transforms, picks the category and image, and prints the banners.
"""
import copy
from typing import List, Optional, Sequence, Tuple

from mmengine.logging import print_log

from .errors import UserValueError
from .pipeline import strip_random_transforms

BANNER = '=' * 80
# How the options are called in a dataset config and on the command line.
DATASET_NAMES = dict(
    single_image='debug_single_image',
    single_image_index='debug_single_image_index',
    overfit_category='debug_overfit_category')
FLAG_NAMES = dict(
    single_image='--debug-single-image',
    single_image_index='--debug-single-image-index',
    overfit_category='--debug-overfit-category')


def check_debug_options(single_image: Optional[int],
                        single_image_index: Optional[int],
                        overfit_category: Optional[int],
                        names: dict = DATASET_NAMES) -> None:
    """One error line for options that contradict each other (``names``: how to call them)."""
    if single_image is not None and overfit_category is not None:
        raise UserValueError(f'{names["single_image"]} and {names["overfit_category"]} '
                             'exclude each other; set one')
    if single_image_index is not None and single_image is None:
        raise UserValueError(f'{names["single_image_index"]} needs '
                             f'{names["single_image"]} CAT_ID')


def banner(lines: Sequence[str]) -> None:
    """Log ``lines`` between two rules of ``=``."""
    print_log('\n'.join(['', BANNER, *lines, BANNER]), logger='current')


class CapeDebugMode:
    """The debug options of one episodic dataset, checked once.

    Args:
        single_image (int, optional): Category id of the single-image mode.
        single_image_index (int, optional): Which image of it (position among the
            category's images in file order). Default 0.
        overfit_category (int, optional): Category id of the overfit mode.
    """

    def __init__(self,
                 single_image: Optional[int] = None,
                 single_image_index: Optional[int] = None,
                 overfit_category: Optional[int] = None):
        check_debug_options(single_image, single_image_index, overfit_category)
        self.single_image = single_image
        self.single_image_index = single_image_index
        self.overfit_category = overfit_category
        self.removed: List[str] = []

    @property
    def enabled(self) -> bool:
        return self.category is not None

    @property
    def category(self) -> Optional[int]:
        """The one category of a debug mode, else None."""
        return self.single_image if self.single_image is not None else self.overfit_category

    def strip_pipeline(self, pipeline: Sequence) -> list:
        """The pipeline without random transforms in a debug mode (support = query crop)."""
        if not self.enabled:
            return list(pipeline)
        kept, self.removed = strip_random_transforms(pipeline)
        return kept

    def check_category(self, annotated: Sequence[int], ann_file: str) -> List[int]:
        """``[category]``, if ``ann_file`` annotates it (split file or not)."""
        if self.category not in annotated:
            raise UserValueError(f'No images found for category {self.category} in {ann_file}. '
                                 f'Valid category ids: {sorted(annotated)}')
        return [self.category]

    def choose_image(self, image_instances: Sequence[int], name: str) -> Tuple[int, int]:
        """(position, instance) of the chosen image among the category's images.

        Args:
            image_instances: One instance index per image of the category, in file order.
            name: The category's name, for messages.
        """
        index, n = self.single_image_index or 0, len(image_instances)
        if not 0 <= index < n:
            raise UserValueError(
                f'Image index out of range: --debug-single-image-index {index}, but category '
                f'{self.single_image} ({name}) has {n} images (valid 0..{n - 1})')
        return index, image_instances[index]

    def augmentation_note(self) -> str:
        return 'Augmentation OFF' + (f' (removed: {", ".join(self.removed)})'
                                     if self.removed else '')

    def single_image_banner(self, test_mode: bool, name: str, inst: dict, index: int,
                            num_images: int, episodes: int) -> None:
        cid = self.single_image
        if test_mode:
            banner([
                '⚠️  SINGLE IMAGE VALIDATION MODE',
                'Validation will use the SAME image as training:',
                f'  - Image: {inst["img_path"]} (image id {inst["img_id"]})',
                f'  - Category ID: {cid} ({name})',
                '  - Same image used as both support and query (self-supervised)',
                '  - Purpose: Verify model can perfectly memorize single image'
            ])
        else:
            banner([
                '⚠️  DEBUG SINGLE IMAGE MODE ENABLED',
                f'Training on SINGLE IMAGE from category: {cid} ({name})',
                f'Selected image index: {inst["img_id"]} (image {index + 1} of {num_images} '
                f'in category), {inst["img_path"]}', f'Episodes per epoch: {episodes}',
                self.augmentation_note(), 'Expected: Training loss -> 0 within ~10 epochs',
                'Purpose: Extreme overfitting test on single image'
            ])

    def overfit_banner(self, test_mode: bool, name: str, num_instances: int, ann_file: str,
                       episodes: int, num_queries: int, num_shots: int) -> None:
        mode = '(validation)' if test_mode else 'ENABLED'
        banner([
            f'⚠️  DEBUG OVERFIT CATEGORY MODE {mode}',
            f'Category: {self.overfit_category} ({name}), {num_instances} instances from '
            f'{ann_file}', f'Episodes: {episodes} x {num_queries} queries, {num_shots} shot(s)',
            self.augmentation_note(), 'Purpose: check the model can fit every image of one category'
        ])


def apply_cape_debug_options(cfg,
                             single_image: Optional[int] = None,
                             single_image_index: Optional[int] = None,
                             overfit_category: Optional[int] = None):
    """Write the command line's CAPE debug options into a loaded ``Config``, in place.

    The training dataset gets them; the validation and test datasets become test-mode
    copies of it (same annotation file, so a training category can be validated; in
    single-image mode the very same image is support and query everywhere). Nothing
    else changes here: the dataset applies the options (:class:`CapeDebugMode`).

    Returns:
        The same ``cfg``.
    """
    check_debug_options(single_image, single_image_index, overfit_category, FLAG_NAMES)
    if single_image is None and overfit_category is None:
        return cfg
    train_dl = cfg.get('train_dataloader')
    train_ds = train_dl.get('dataset') if train_dl else None
    ds_type = train_ds.get('type') if train_ds else None
    if getattr(ds_type, '__name__', ds_type) != 'MP100EpisodicDataset':
        raise UserValueError('the CAPE debug flags need train_dataloader.dataset.type='
                             f'"MP100EpisodicDataset"; this config has {ds_type!r}')
    train_ds.update(
        debug_single_image=single_image,
        debug_single_image_index=single_image_index,
        debug_overfit_category=overfit_category)
    rewritten = ['train_dataloader']
    for name in ('val_dataloader', 'test_dataloader'):
        loader = cfg.get(name)
        if not loader or not loader.get('dataset'):
            continue
        copied = copy.deepcopy(train_ds)
        copied.update(
            test_mode=True,
            episodes_per_category=loader['dataset'].get('episodes_per_category', 100))
        loader['dataset'] = copied
        rewritten.append(name)
    mode = (f'single image of category {single_image}, image index {single_image_index or 0}'
            if single_image is not None else f'all images of category {overfit_category}')
    print_log(
        f'CAPE debug mode: {mode}; {", ".join(rewritten)} read '
        f'{train_ds.get("ann_file")}',
        logger='current')
    return cfg
