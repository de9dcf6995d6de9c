import numpy as np
import pytest
import torch
from mmpose.registry import TRANSFORMS

from keypose_ext.utils.errors import UserValueError


def _image_result(k, seed, size=(16, 12)):
    rng = np.random.default_rng(seed)
    w, h = size
    return dict(
        img=rng.integers(0, 255, (h, w, 3), dtype=np.uint8),
        img_path=f'img{seed}.jpg',
        img_id=seed,
        id=100 + seed,
        bbox=np.array([[1, 2, 11, 9]], np.float32),
        bbox_score=np.ones(1, np.float32),
        keypoints=rng.uniform(0, 10, (1, k, 2)).astype(np.float32),
        keypoints_visible=(rng.uniform(size=(1, k)) > 0.3).astype(np.float32),
        transformed_keypoints=rng.uniform(0, 16, (1, k, 2)).astype(np.float32),
        input_size=size,
        input_center=np.array([6., 5.5], np.float32),
        input_scale=np.array([12., 9.], np.float32),
        ori_shape=(20, 30))


def test_packs_query_first_and_supports_into_metainfo():
    pack = TRANSFORMS.build(dict(type='PackCapeInputs'))
    q, s1, s2 = (_image_result(5, i) for i in range(3))
    out = pack(
        dict(
            query=q,
            supports=[s1, s2],
            category_id=7,
            category_name='cat',
            skeleton=[[0, 1], [3, 4]],
            episode_index=2,
            pair_index=5,
            epoch=1))
    inputs, sample = out['inputs'], out['data_samples']
    assert inputs.shape == (3, 3, 12, 16) and inputs.dtype == torch.uint8
    assert torch.equal(inputs[0], torch.from_numpy(q['img']).permute(2, 0, 1))
    assert torch.equal(inputs[2], torch.from_numpy(s2['img']).permute(2, 0, 1))
    gt = sample.gt_instances
    np.testing.assert_array_equal(gt.keypoints, q['keypoints'])
    np.testing.assert_array_equal(gt.transformed_keypoints, q['transformed_keypoints'])
    assert sample.num_keypoints == 5 and sample.num_shots == 2
    assert sample.category_id == 7 and sample.skeleton == [[0, 1], [3, 4]]
    np.testing.assert_array_equal(
        sample.support_transformed_keypoints,
        np.concatenate([s1['transformed_keypoints'], s2['transformed_keypoints']]))
    np.testing.assert_array_equal(
        sample.support_keypoints_visible,
        np.concatenate([s1['keypoints_visible'], s2['keypoints_visible']]))
    assert sample.support_img_paths == ['img1.jpg', 'img2.jpg']
    assert sample.support_bboxes.shape == (2, 4)
    assert sample.img_path == 'img0.jpg' and sample.input_size == (16, 12)
    # no query annotation leaks into the support fields
    assert 'keypoints' not in sample.metainfo


def test_targets_and_support_inputs_are_encoded_by_the_codec():
    from mmpose.registry import KEYPOINT_CODECS
    codec = KEYPOINT_CODECS.build(dict(type='CapeSequenceCodec', input_size=(16, 12)))
    q, s1, s2 = (_image_result(5, i) for i in range(3))
    q['raw_ann_info'] = dict(bbox=[1, 2, 10, 7], id=100)
    for cfg in (dict(type='PackCapeInputs'),
                dict(
                    type='PackCapeInputs',
                    codec=dict(type='CapeSequenceCodec', input_size=(16, 12)))):
        sample = TRANSFORMS.build(cfg)(dict(query=q, supports=[s1, s2],
                                            category_id=7))['data_samples']
        labels = sample.gt_instance_labels
        want = codec.encode(q['transformed_keypoints'], q['keypoints_visible'])
        assert isinstance(labels.keypoint_labels, torch.Tensor)
        np.testing.assert_array_equal(labels.keypoint_labels.numpy(), want['keypoint_labels'])
        np.testing.assert_array_equal(labels.keypoint_weights.numpy(), want['keypoint_weights'])
        sup = codec.encode(
            np.concatenate([s1['transformed_keypoints'], s2['transformed_keypoints']]),
            np.concatenate([s1['keypoints_visible'], s2['keypoints_visible']]))
        np.testing.assert_array_equal(sample.support_keypoint_labels, sup['keypoint_labels'])
        np.testing.assert_array_equal(sample.support_keypoint_weights, sup['keypoint_weights'])
        # the annotated box reaches the metric (MP-100 box cleaning)
        assert sample.raw_ann_info['bbox'] == [1, 2, 10, 7]
        assert sample.ori_shape == (20, 30)


def test_mismatches_are_errors():
    pack = TRANSFORMS.build(dict(type='PackCapeInputs'))
    q = _image_result(5, 0)
    with pytest.raises(ValueError, match='4 keypoints, the query 5'):
        pack(dict(query=q, supports=[_image_result(4, 1)], category_id=1))
    with pytest.raises(ValueError, match='crops differ in shape'):
        pack(dict(query=q, supports=[_image_result(5, 1, size=(8, 8))], category_id=1))
    with pytest.raises(ValueError, match='at least one support'):
        pack(dict(query=q, supports=[], category_id=1))
    other = TRANSFORMS.build(
        dict(type='PackCapeInputs', codec=dict(type='CapeSequenceCodec', input_size=(32, 32))))
    with pytest.raises(UserValueError, match=r'input_size \(32, 32\)'):
        other(dict(query=q, supports=[_image_result(5, 1)], category_id=1))
