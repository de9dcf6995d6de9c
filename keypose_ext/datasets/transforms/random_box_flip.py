"""Horizontal flip of a frame with a 3D box: corners relabelled, depths and 3D kept consistent."""
import numpy as np
from mmpose.datasets.transforms import RandomFlip
from mmpose.registry import TRANSFORMS

from keypose_ext.datasets.bottle_metainfo import BOX_CORNER_SIGNS
from keypose_ext.utils.errors import UserValueError

# Keypoint i of the flipped frame is keypoint X_MIRROR[i] of the original:
# the corner with the opposite local x sign (see OBJECTRON_METAINFO).
X_MIRROR = tuple(BOX_CORNER_SIGNS.index((-x, y, z)) for x, y, z in BOX_CORNER_SIGNS)


@TRANSFORMS.register_module()
class RandomBoxFlip(RandomFlip):
    """mmpose's ``RandomFlip`` (horizontal) for box keypoints with depth.

    A mirrored frame shows a mirrored box. mmpose flips the pixels, the bbox
    and the 2D keypoints and reorders them by the metainfo's ``flip_indices``,
    which for ``ObjectronMultiVideoDataset`` swap each corner with its
    partner across the box's local x axis (Objectron order: 1<->5, 2<->6,
    3<->7, 4<->8), so the flipped corners again form a right-handed box with
    the same top and front faces. This transform applies the same change to
    the rest of the geometry:

    - ``keypoints_depth`` (N, K): reordered (a mirror keeps depths);
    - ``keypoints_3d`` (N, K, 3): reordered, x negated (the OpenCV camera
      frame mirrored like the pixels);
    - ``camera_intrinsics`` (3, 3): ``cx -> W - 1 - cx`` and the skew negated,
      matching mmpose's ``x -> W - 1 - x``, so ``K @ keypoints_3d`` still
      projects onto ``keypoints``.

    Put it after ``GetBBoxCenterScale`` and before ``TopdownAffine``, as
    mmpose's ``RandomFlip`` (it flips the whole frame).

    Args:
        prob (float): Flip probability.
        direction (str): Only ``'horizontal'``: a vertical flip would turn the
            box's top (Objectron's +y, up) into its bottom.
    """

    def __init__(self, prob: float = 0.5, direction: str = 'horizontal') -> None:
        if direction != 'horizontal':
            raise UserValueError(f"RandomBoxFlip: direction must be 'horizontal', got "
                                 f'{direction!r}; a vertical flip turns the box upside down.')
        super().__init__(prob=float(prob), direction='horizontal')

    def transform(self, results: dict) -> dict:
        indices = results.get('flip_indices')
        if indices is None or tuple(indices) != X_MIRROR:
            raise UserValueError(
                f'RandomBoxFlip needs flip_indices {list(X_MIRROR)} (corners swapped across '
                f'the box x axis), got {indices}; use ObjectronMultiVideoDataset or '
                'OBJECTRON_METAINFO.')
        results = super().transform(results)
        if not results['flip']:
            return results
        order = np.asarray(indices)
        if results.get('keypoints_depth') is not None:
            results['keypoints_depth'] = np.take(results['keypoints_depth'], order, axis=-1)
        if results.get('keypoints_3d') is not None:
            points = np.take(results['keypoints_3d'], order, axis=-2).copy()
            points[..., 0] *= -1
            results['keypoints_3d'] = points
        if results.get('camera_intrinsics') is not None:
            width = results['img_shape'][1]
            k = np.array(results['camera_intrinsics'], copy=True)
            k[0, 2] = width - 1 - k[0, 2]
            k[0, 1] = -k[0, 1]
            results['camera_intrinsics'] = k
        return results
