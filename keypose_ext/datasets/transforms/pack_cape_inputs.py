"""Pack one CAPE episode pair (supports + one query) for :class:`CapeEstimator`."""
from typing import Optional, Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import InstanceData
from mmpose.registry import KEYPOINT_CODECS, TRANSFORMS
from mmpose.structures import PoseDataSample

from ...utils.errors import UserValueError


@TRANSFORMS.register_module()
class PackCapeInputs(BaseTransform):
    """Stack the query and support crops, encode and gather their keypoints.

    Input: ``results`` with ``query`` (the per-image pipeline's result dict, after
    ``TopdownAffine``), ``supports`` (a list of N such dicts), ``category_id``,
    ``category_name``, ``skeleton`` (0-based [i, j] pairs), ``episode_index``,
    ``pair_index`` and ``epoch``.

    Output:

    - ``inputs``: uint8 tensor (1 + N, 3, H, W), the query crop first.
    - ``data_samples``: a :class:`PoseDataSample` whose ``gt_instances`` is the
      query (``bboxes`` (1, 4) xyxy, ``keypoints`` (1, K, 2) in the original
      image, ``keypoints_visible`` (1, K), ``transformed_keypoints`` (1, K, 2) in
      the crop) and ``gt_instance_labels`` holds its targets, encoded by the codec
      (``keypoint_labels`` (1, K, 2), ``keypoint_weights`` (1, K), tensors). The
      supports are model *inputs*, so they live in the metainfo (which, unlike
      other fields, survives ``merge_data_samples`` and reaches the visualiser and
      the metric): ``support_keypoint_labels`` (N, K, 2) and
      ``support_keypoint_weights`` (N, K) (the same codec's encoding),
      ``support_transformed_keypoints`` (N, K, 2), ``support_keypoints`` (N, K, 2),
      ``support_keypoints_visible`` (N, K), ``support_bboxes`` (N, 4),
      ``support_img_paths``, ``support_img_ids``, ``support_ids``,
      ``support_input_centers``/``support_input_scales`` (N, 2).

    Keypoint counts differ between categories; ``CapeSequenceHead`` pads them per
    batch with masks, so one batch may mix categories.

    Args:
        codec (dict, optional): The keypoint codec, normally
            ``dict(type='CapeSequenceCodec', input_size=...)`` (the head's
            ``decoder``). Default: a ``CapeSequenceCodec`` for the crops'
            ``input_size`` (TopdownAffine's).
        meta_keys (Sequence[str]): Query keys copied into the metainfo
            (``raw_ann_info``, when the dataset keeps it, gives the metric the
            annotated box).
    """

    def __init__(self,
                 codec: Optional[dict] = None,
                 meta_keys: Sequence[str] = ('id', 'img_id', 'img_path', 'ori_shape', 'img_shape',
                                             'input_size', 'input_center', 'input_scale', 'flip',
                                             'flip_direction', 'raw_ann_info', 'dataset_name')):
        self.codec_cfg = codec
        self.codec = KEYPOINT_CODECS.build(codec) if codec is not None else None
        self.meta_keys = tuple(meta_keys)

    def _codec_for(self, input_size):
        input_size = tuple(int(v) for v in input_size)
        if self.codec is None or self.codec_cfg is None:
            if getattr(self.codec, 'input_size', None) != input_size:
                self.codec = KEYPOINT_CODECS.build(
                    dict(type='CapeSequenceCodec', input_size=input_size))
        elif tuple(self.codec.input_size) != input_size:
            raise UserValueError(
                f'PackCapeInputs: the codec has input_size {self.codec.input_size} but '
                f'the crops are {input_size} (TopdownAffine); use one input_size for both')
        return self.codec

    def transform(self, results: dict) -> dict:
        query, supports = results['query'], list(results['supports'])
        if not supports:
            raise UserValueError('PackCapeInputs: an episode needs at least one support')
        crops = [query['img']] + [s['img'] for s in supports]
        shapes = {c.shape for c in crops}
        if len(shapes) != 1:
            raise UserValueError(f'PackCapeInputs: support and query crops differ in '
                                 f'shape {sorted(shapes)}; put TopdownAffine with one '
                                 'input_size in the pipeline')
        imgs = np.stack([c if c.ndim == 3 else c[..., None] for c in crops])
        inputs = torch.from_numpy(np.ascontiguousarray(imgs.transpose(0, 3, 1, 2)))

        k = query['keypoints'].shape[1]
        for s in supports:
            if s['keypoints'].shape[1] != k:
                raise UserValueError(f'PackCapeInputs: support {s.get("img_path")} has '
                                     f'{s["keypoints"].shape[1]} keypoints, the query {k}')

        gt = InstanceData()
        gt.bboxes = query['bbox'].astype(np.float32)
        gt.bbox_scores = query.get('bbox_score', np.ones(1, np.float32))
        gt.keypoints = query['keypoints'].astype(np.float32)
        gt.keypoints_visible = query['keypoints_visible'].astype(np.float32)
        gt.transformed_keypoints = query['transformed_keypoints'][..., :2].astype(np.float32)
        codec = self._codec_for(query['input_size'])
        enc = codec.encode(query['transformed_keypoints'][..., :2], query['keypoints_visible'])
        labels = InstanceData()
        for key, packed in codec.label_mapping_table.items():
            labels.set_field(enc[key], packed)
        sup_enc = codec.encode(
            np.concatenate([s['transformed_keypoints'][..., :2] for s in supports]),
            np.concatenate([s['keypoints_visible'] for s in supports]))
        sample = PoseDataSample()
        sample.gt_instances = gt
        sample.gt_instance_labels = labels.to_tensor()

        meta = {key: query[key] for key in self.meta_keys if key in query}
        meta.update(
            category_id=int(results['category_id']),
            category_name=results.get('category_name', ''),
            skeleton=[list(e) for e in results.get('skeleton', [])],
            num_keypoints=k,
            num_shots=len(supports),
            episode_index=results.get('episode_index', -1),
            pair_index=results.get('pair_index', -1),
            epoch=results.get('epoch', 0),
            support_keypoint_labels=sup_enc['keypoint_labels'],
            support_keypoint_weights=sup_enc['keypoint_weights'],
            support_transformed_keypoints=np.concatenate(
                [s['transformed_keypoints'][..., :2] for s in supports]).astype(np.float32),
            support_keypoints=np.concatenate([s['keypoints'] for s in supports]).astype(np.float32),
            support_keypoints_visible=np.concatenate([s['keypoints_visible']
                                                      for s in supports]).astype(np.float32),
            support_bboxes=np.concatenate([s['bbox'] for s in supports]).astype(np.float32),
            support_img_paths=[s['img_path'] for s in supports],
            support_img_ids=[s.get('img_id') for s in supports],
            support_ids=[s.get('id') for s in supports],
            support_input_centers=np.stack([s['input_center'] for s in supports]),
            support_input_scales=np.stack([s['input_scale'] for s in supports]))
        sample.set_metainfo(meta)
        return dict(inputs=inputs, data_samples=sample)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(codec={self.codec_cfg}, '
                f'meta_keys={self.meta_keys})')
