"""Codec for direct regression of 2D keypoints plus a per-keypoint depth."""
from typing import Optional, Sequence, Tuple

import numpy as np
from mmpose.codecs.base import BaseKeypointCodec
from mmpose.registry import KEYPOINT_CODECS

from keypose_ext.utils.errors import UserValueError


@KEYPOINT_CODECS.register_module()
class DepthKeypointCodec(BaseKeypointCodec):
    """Encode ``(x, y, depth)`` per keypoint into one normalised vector.

    This is the target of the seed's "ResNet-18 → 27 outputs" model: for
    the bottle's K = 9 keypoints the network regresses ``K × (x, y, depth)``.

    Encoded label per keypoint (all ``float32``)::

        [x / W, y / H, (depth - depth_offset) / depth_scale]

    where ``(W, H) = input_size`` and ``x, y`` are pixels of the network
    input (after ``TopdownAffine``). Depth is in metres in the annotation;
    ``depth_scale``/``depth_offset`` bring it to the same order of magnitude as
    the normalised ``x, y`` so one MSE weights all three alike (e.g. a bottle
    filmed at 0.3–0.9 m works with ``depth_offset=0.6, depth_scale=0.3``).

    API (mmpose's codec contract plus one method for depth):

    - :meth:`encode` → ``dict(keypoint_labels (N, K, 3),
      keypoint_weights (N, K))``; called by mmpose's ``GenerateTarget``,
      which passes ``keypoints_depth`` because it is listed in
      :attr:`auxiliary_encode_keys`. ``label_mapping_table`` makes
      ``PackPoseInputs`` put both items in ``gt_instance_labels``.
    - :meth:`decode` → ``(keypoints (N, K, 2) input pixels, scores (N, K))``,
      exactly mmpose's contract, so ``BaseHead.decode`` and generic tools
      keep working. Scores are ones: plain regression has no confidence.
    - :meth:`decode_depth` → ``depth (N, K)`` in metres.

    Keypoints outside the input image keep weight 1 (unlike mmpose's
    ``RegressionLabel``): projected 3D-box corners legitimately fall outside
    the frame and their positions are still well defined. Only
    ``keypoints_visible <= 0.5`` zeroes a weight.

    Args:
        input_size (tuple[int, int]): Network input size ``(W, H)``.
        depth_scale (float): Metres per encoded depth unit. Must be > 0.
        depth_offset (float): Depth (metres) encoded as 0.
        num_keypoints (int, optional): If given, inputs with another ``K``
            are rejected. The bottle configs pass ``NUM_KEYPOINTS`` of
            ``keypose_ext/datasets/bottle_metainfo.py``; a
            :class:`DepthKeypointRegressionHead` sets its decoder's value to
            its ``num_joints`` and refuses a different one, and
            ``BottleVideoDataset`` refuses a ``GenerateTarget`` codec whose
            value differs from its metainfo.
    """

    auxiliary_encode_keys = {'keypoints_depth'}
    # Replaces PackPoseInputs' default label table for this pipeline, so it
    # must name every label item the head reads.
    label_mapping_table = dict(
        keypoint_labels='keypoint_labels',
        keypoint_weights='keypoint_weights',
    )

    def __init__(self,
                 input_size: Sequence[int],
                 depth_scale: float = 1.0,
                 depth_offset: float = 0.0,
                 num_keypoints: Optional[int] = None) -> None:
        super().__init__()
        if len(input_size) != 2 or min(input_size) <= 0:
            raise UserValueError('DepthKeypointCodec: `input_size` must be (W, H) with '
                                 f'positive values, got {input_size!r}.')
        if not (np.isfinite(depth_scale) and depth_scale > 0):
            raise UserValueError('DepthKeypointCodec: `depth_scale` must be a positive finite '
                                 f'number of metres per unit, got {depth_scale!r}.')
        if not np.isfinite(depth_offset):
            raise UserValueError('DepthKeypointCodec: `depth_offset` must be '
                                 f'finite, got {depth_offset!r}.')
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.depth_scale = float(depth_scale)
        self.depth_offset = float(depth_offset)
        self.num_keypoints = num_keypoints

    def _check_k(self, k: int, what: str) -> None:
        if self.num_keypoints is not None and k != self.num_keypoints:
            raise UserValueError(f'DepthKeypointCodec: {what} has {k} keypoints but the codec '
                                 f'was built with num_keypoints={self.num_keypoints}; check '
                                 'the dataset metainfo and the codec/head `num_keypoints`.')

    def encode(self,
               keypoints: np.ndarray,
               keypoints_visible: Optional[np.ndarray] = None,
               keypoints_depth: Optional[np.ndarray] = None) -> dict:
        """Encode input-space keypoints and their depths.

        Args:
            keypoints (np.ndarray): (N, K, 2) pixels in the network input.
            keypoints_visible (np.ndarray, optional): (N, K); ones if None.
            keypoints_depth (np.ndarray): (N, K) depth in metres.

        Returns:
            dict: ``keypoint_labels`` (N, K, 3) and ``keypoint_weights``
            (N, K), both float32.

        Raises:
            UserValueError: missing depth, mismatched shapes, wrong ``K`` or
                a non-finite coordinate/depth on a visible keypoint.
        """
        keypoints = np.asarray(keypoints, dtype=np.float64)
        if keypoints.ndim != 3 or keypoints.shape[-1] != 2:
            raise UserValueError('DepthKeypointCodec.encode: `keypoints` must have shape '
                                 f'(N, K, 2), got {keypoints.shape}.')
        n, k, _ = keypoints.shape
        self._check_k(k, '`keypoints`')
        if keypoints_depth is None:
            raise UserValueError('DepthKeypointCodec.encode: the sample has no '
                                 '`keypoints_depth`; the dataset must provide a (N, K) depth '
                                 'per keypoint (in metres) in each data info.')
        depth = np.asarray(keypoints_depth, dtype=np.float64)
        if depth.shape != (n, k):
            raise UserValueError('DepthKeypointCodec.encode: `keypoints_depth` must have shape '
                                 f'(N, K) = {(n, k)} to match `keypoints`, got {depth.shape}.')
        if keypoints_visible is None:
            visible = np.ones((n, k), dtype=np.float64)
        else:
            visible = np.asarray(keypoints_visible, dtype=np.float64)
            if visible.shape != (n, k):
                raise UserValueError('DepthKeypointCodec.encode: `keypoints_visible` must have '
                                     f'shape (N, K) = {(n, k)}, got {visible.shape}.')
        valid = visible > 0.5

        bad = valid & ~np.isfinite(depth)
        if bad.any():
            inst, kpt = np.argwhere(bad)[0]
            raise UserValueError('DepthKeypointCodec.encode: non-finite `keypoints_depth` '
                                 f'({depth[inst, kpt]}) at instance {inst}, keypoint {kpt}, '
                                 'which is marked visible; fix the annotation or mark it not '
                                 'visible.')
        bad = valid & ~np.isfinite(keypoints).all(-1)
        if bad.any():
            inst, kpt = np.argwhere(bad)[0]
            raise UserValueError('DepthKeypointCodec.encode: non-finite `keypoints` at '
                                 f'instance {inst}, keypoint {kpt}, which is marked visible.')

        w, h = self.input_size
        labels = np.empty((n, k, 3), dtype=np.float64)
        labels[..., :2] = keypoints / np.array([w, h])
        labels[..., 2] = (depth - self.depth_offset) / self.depth_scale
        # Invisible keypoints get weight 0; zero their labels too so no NaN
        # reaches the loss (NaN * 0 is still NaN).
        labels[~valid] = 0.0
        return dict(
            keypoint_labels=labels.astype(np.float32), keypoint_weights=valid.astype(np.float32))

    def _check_encoded(self, encoded: np.ndarray, method: str) -> np.ndarray:
        encoded = np.asarray(encoded)
        if encoded.ndim != 3 or encoded.shape[-1] != 3:
            raise UserValueError(f'DepthKeypointCodec.{method}: expected (N, K, 3) '
                                 f'[x, y, depth] regressions, got shape {encoded.shape}.')
        self._check_k(encoded.shape[1], f'the input of {method}()')
        return encoded

    def decode(self, encoded: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Decode the 2D part of the regressions.

        Args:
            encoded (np.ndarray): (N, K, 3) normalised ``[x, y, depth]``.

        Returns:
            tuple:
            - keypoints (np.ndarray): (N, K, 2) input-space pixels.
            - scores (np.ndarray): (N, K) ones.
        """
        encoded = self._check_encoded(encoded, 'decode')
        w, h = self.input_size
        keypoints = encoded[..., :2].astype(np.float32) * np.array([w, h], dtype=np.float32)
        scores = np.ones(encoded.shape[:2], dtype=np.float32)
        return keypoints, scores

    def decode_depth(self, encoded: np.ndarray) -> np.ndarray:
        """Decode the depth part of the regressions.

        Args:
            encoded (np.ndarray): (N, K, 3) normalised ``[x, y, depth]``.

        Returns:
            np.ndarray: (N, K) depth in metres (float32).
        """
        encoded = self._check_encoded(encoded, 'decode_depth')
        return (encoded[..., 2].astype(np.float64) * self.depth_scale +
                self.depth_offset).astype(np.float32)
