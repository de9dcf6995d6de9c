"""PackPoseInputs that also packs per-keypoint depths."""
import numpy as np
import torch
from mmpose.datasets.transforms import PackPoseInputs
from mmpose.registry import TRANSFORMS

from keypose_ext.utils.errors import UserValueError


@TRANSFORMS.register_module()
class PackDepthPoseInputs(PackPoseInputs):
    """Pack inputs like :class:`PackPoseInputs`, plus depth ground truth.

    ``keypoints_depth`` (N, K) metres and, if present, ``keypoints_3d``
    (N, K, 3) go into ``data_samples.gt_instances`` (as numpy, like
    ``keypoints``), so metrics can compare predicted depths with them. They
    are added even when a codec replaces the instance mapping table through
    ``GenerateTarget``.

    ``results['img']`` may also be a ``torch.Tensor`` in (H, W, C) or (H, W)
    layout, e.g. a frame already held on the GPU; it is permuted to
    (C, H, W) and stays on its device without a round trip through numpy.
    """

    depth_mapping_table = dict(keypoints_depth='keypoints_depth', keypoints_3d='keypoints_3d')
    instance_mapping_table = dict(PackPoseInputs.instance_mapping_table, **depth_mapping_table)

    def transform(self, results: dict) -> dict:
        if 'instance_mapping_table' in results:
            results['instance_mapping_table'] = dict(results['instance_mapping_table'],
                                                     **self.depth_mapping_table)
        img = results.get('img')
        if not isinstance(img, torch.Tensor):
            return super().transform(results)

        if img.ndim == 2:
            img = img[..., None]
        if img.ndim != 3:
            raise UserValueError('PackDepthPoseInputs: a tensor img must be '
                                 f'(H, W, C) or (H, W), got {tuple(img.shape)}.')
        # The parent packs everything but the image; a 1-pixel placeholder
        # keeps it on its image branch, then the real tensor replaces it.
        packed = super().transform(dict(results, img=np.zeros((1, 1, img.shape[2]), np.uint8)))
        packed['inputs'] = img.permute(2, 0, 1).contiguous()
        return packed
