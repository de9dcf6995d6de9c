"""Codec between crop-pixel keypoints and the CAPE sequence head's coordinates."""
from typing import Optional, Sequence, Tuple

import numpy as np
from mmpose.codecs.base import BaseKeypointCodec
from mmpose.registry import KEYPOINT_CODECS

from ..utils.errors import UserValueError


@KEYPOINT_CODECS.register_module()
class CapeSequenceCodec(BaseKeypointCodec):
    """Encode the keypoints of a top-down crop as the sequence head's targets.

    One CAPE episode has keypoints on every crop: the query's are the targets, the
    supports' are inputs of the head (where to sample the support features). Both
    are encoded alike, one row per instance::

        keypoint_labels  (N, K, 2)  [x / W, y / H] clipped to [0, 1]
        keypoint_weights (N, K)     1 where the keypoint is labelled
                                    (``keypoints_visible > 0``), finite and inside
                                    the crop, else 0

    with ``(W, H) = input_size`` and ``x, y`` in crop pixels (after
    ``TopdownAffine``). A keypoint outside the crop has no feature to sample and no
    place in the [0, 1] output of the head, hence weight 0.

    :meth:`decode` is the inverse: normalised coordinates (N, K, 2) to crop pixels,
    which ``TopdownPoseEstimator.add_pred_to_datasample`` maps to the image.
    Keypoints the head did not decode are NaN and stay NaN (score 0).

    ``PackCapeInputs`` calls :meth:`encode` for the query and for the supports
    (``GenerateTarget`` would only see one image); ``CapeSequenceHead`` uses the
    same codec as its ``decoder``. ``label_mapping_table`` names the query items
    that go to ``gt_instance_labels``.

    Args:
        input_size (tuple[int, int]): Crop size ``(W, H)``, TopdownAffine's.
    """

    label_mapping_table = dict(
        keypoint_labels='keypoint_labels',
        keypoint_weights='keypoint_weights',
    )

    def __init__(self, input_size: Sequence[int]) -> None:
        super().__init__()
        if len(input_size) != 2 or min(input_size) <= 0:
            raise UserValueError('CapeSequenceCodec: `input_size` must be (W, H) with '
                                 f'positive values, got {input_size!r}')
        self.input_size = (int(input_size[0]), int(input_size[1]))

    def encode(self, keypoints: np.ndarray, keypoints_visible: Optional[np.ndarray] = None) -> dict:
        """Normalise crop keypoints.

        Args:
            keypoints (np.ndarray): (N, K, 2) crop pixels (extra trailing
                coordinates are ignored).
            keypoints_visible (np.ndarray, optional): (N, K); all labelled if None.

        Returns:
            dict: ``keypoint_labels`` (N, K, 2) and ``keypoint_weights`` (N, K),
            float32.
        """
        keypoints = np.asarray(keypoints, np.float64)
        if keypoints.ndim != 3 or keypoints.shape[-1] < 2:
            raise UserValueError('CapeSequenceCodec.encode: `keypoints` must be (N, K, 2)'
                                 f', got shape {keypoints.shape}')
        xy = keypoints[..., :2] / np.array(self.input_size, np.float64)
        if keypoints_visible is None:
            visible = np.ones(xy.shape[:2], bool)
        else:
            visible = np.asarray(keypoints_visible) > 0
            if visible.shape != xy.shape[:2]:
                raise UserValueError(
                    'CapeSequenceCodec.encode: `keypoints_visible` must be (N, K) = '
                    f'{xy.shape[:2]}, got {visible.shape}')
        finite = np.isfinite(xy).all(-1)
        with np.errstate(invalid='ignore'):
            inside = ((xy >= 0) & (xy < 1)).all(-1)
        weights = visible & finite & inside
        labels = np.clip(np.nan_to_num(xy), 0, 1)
        return dict(
            keypoint_labels=labels.astype(np.float32), keypoint_weights=weights.astype(np.float32))

    def decode(self, encoded: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Normalised coordinates to crop pixels.

        Args:
            encoded (np.ndarray): (N, K, 2) in [0, 1]; NaN where not decoded.

        Returns:
            tuple: ``keypoints`` (N, K, 2) crop pixels (NaN kept) and
            ``scores`` (N, K): 1 where decoded, 0 where NaN. The head replaces
            the scores with its keypoint-token probabilities.
        """
        encoded = np.asarray(encoded, np.float32)
        if encoded.ndim != 3 or encoded.shape[-1] != 2:
            raise ValueError('CapeSequenceCodec.decode: expected (N, K, 2) normalised '
                             f'coordinates, got shape {encoded.shape}')
        keypoints = encoded * np.array(self.input_size, np.float32)
        scores = np.isfinite(keypoints).all(-1).astype(np.float32)
        return keypoints, scores
