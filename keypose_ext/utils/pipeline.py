"""The one list of random data transforms, shared by every dataset that must know.

The CAPE debug modes drop these (support and query must be the very same crop) and the
bottle dataset's output cache refuses them (a cached sample must not change between
epochs). A transform counts as random if its type is listed here or starts with
``Random``.
"""
from typing import List, Sequence, Tuple

RANDOM_TRANSFORMS = frozenset({
    'RandomFlip', 'RandomBBoxTransform', 'RandomHalfBody', 'PhotometricDistortion', 'Albumentation',
    'YOLOXHSVRandomAug', 'Mosaic', 'YOLOXMixUp', 'BottomupRandomAffine', 'BottomupRandomCrop',
    'BottomupRandomChoiceResize', 'RandomAffine', 'RandomBottomUpAffine'
})


def transform_name(transform) -> str:
    """The type name of a transform given as a config dict or an instance."""
    if isinstance(transform, dict):
        name = transform.get('type')
        return name if isinstance(name, str) else getattr(name, '__name__', str(name))
    return type(transform).__name__


def is_random_transform(transform) -> bool:
    """Whether a transform (config dict or instance) changes its output between calls."""
    name = transform_name(transform)
    return name in RANDOM_TRANSFORMS or name.startswith('Random')


def strip_random_transforms(pipeline: Sequence) -> Tuple[list, List[str]]:
    """Split a pipeline into (kept transforms, names of the removed random ones)."""
    kept, removed = [], []
    for t in pipeline:
        (removed.append(transform_name(t)) if is_random_transform(t) else kept.append(t))
    return kept, removed
