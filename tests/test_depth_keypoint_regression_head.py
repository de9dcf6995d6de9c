import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.optim import OptimWrapper
from mmengine.structures import InstanceData
from mmpose.datasets.transforms import (GenerateTarget, GetBBoxCenterScale, PackPoseInputs,
                                        TopdownAffine)
from mmpose.registry import MODELS
from mmpose.structures import PoseDataSample

from keypose_ext.datasets.bottle_metainfo import NUM_KEYPOINTS
from keypose_ext.utils.errors import UserValueError

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
IN_W, IN_H = 64, 64
CODEC = dict(
    type='DepthKeypointCodec',
    input_size=(IN_W, IN_H),
    depth_scale=0.5,
    depth_offset=0.6,
    num_keypoints=9)


def _head(**kw):
    cfg = dict(type='DepthKeypointRegressionHead', in_channels=16, num_joints=9, decoder=CODEC)
    cfg.update(kw)
    return MODELS.build(cfg)


def _samples(labels, weights):
    out = []
    for lab, w in zip(labels, weights):
        s = PoseDataSample(metainfo=dict(input_size=(IN_W, IN_H)))
        s.gt_instance_labels = InstanceData(keypoint_labels=lab[None], keypoint_weights=w[None])
        out.append(s)
    return out


def test_forward_shape_and_pooling():
    torch.manual_seed(0)
    head = _head()
    feats = (torch.randn(3, 8, 4, 4), torch.randn(3, 16, 2, 3))
    out = head(feats)
    assert out.shape == (3, 9, 3)
    # global average pooling: only the channel means matter
    pooled = feats[-1].mean(dim=(2, 3))
    torch.testing.assert_close(head((pooled, )), out)


def test_loss_values_and_logged_errors():
    torch.manual_seed(0)
    head = _head()
    feats = (torch.randn(2, 16, 2, 2), )
    labels = torch.rand(2, 9, 3)
    weights = torch.ones(2, 9)
    weights[1, 3] = 0
    losses = head.loss(feats, _samples(labels, weights))
    pred = head(feats).detach()
    w = weights[..., None]
    expect = ((pred * w - labels * w)**2).mean()
    torch.testing.assert_close(losses['loss_kpt'].detach(), expect)
    err = ((pred[..., :2] - labels[..., :2]) * torch.tensor([IN_W, IN_H])).norm(dim=-1)
    mask = weights > 0
    torch.testing.assert_close(losses['mpjpe_2d'], err[mask].mean())
    depth_err = (pred[..., 2] - labels[..., 2]).abs()[mask].mean() * 0.5
    torch.testing.assert_close(losses['mae_depth'], depth_err)
    assert not losses['mpjpe_2d'].requires_grad
    losses['loss_kpt'].backward()
    assert head.fc.weight.grad is not None


def test_predict_outputs_pixels_and_metres():
    torch.manual_seed(0)
    head = _head()
    feats = (torch.randn(2, 16, 2, 2), )
    preds = head.predict(feats, _samples(torch.zeros(2, 9, 3), torch.ones(2, 9)))
    raw = head(feats).detach().numpy()
    assert len(preds) == 2
    for p, r in zip(preds, raw):
        assert p.keypoints.shape == (1, 9, 2)
        assert p.keypoint_scores.shape == (1, 9)
        assert p.keypoints_depth.shape == (1, 9)
        np.testing.assert_allclose(p.keypoints[0], r[:, :2] * [IN_W, IN_H], rtol=1e-5)
        np.testing.assert_allclose(p.keypoints_depth[0], r[:, 2] * 0.5 + 0.6, rtol=1e-5)


def test_user_errors():
    head = _head()
    feats = (torch.randn(1, 16, 2, 2), )
    with pytest.raises(ValueError, match='flip test'):
        head.predict(
            feats, _samples(torch.zeros(1, 9, 3), torch.ones(1, 9)), test_cfg=dict(flip_test=True))
    with pytest.raises(ValueError, match='in_channels=16'):
        head((torch.randn(1, 32, 2, 2), ))
    with pytest.raises(ValueError, match='num_keypoints=9'):
        _head(num_joints=8)
    with pytest.raises(ValueError, match=r'\(1, 8, 3\)'):
        head.loss(feats, _samples(torch.zeros(1, 8, 3), torch.ones(1, 8)))
    with pytest.raises(ValueError, match='needs a decoder'):
        _head(decoder=None).predict(feats, _samples(torch.zeros(1, 9, 3), torch.ones(1, 9)))


def test_keypoint_count_comes_from_one_place_and_must_agree():
    codec_without_k = dict(CODEC, num_keypoints=None)
    head = _head(num_joints=None)  # K from the decoder
    assert head.num_joints == 9 and head.fc.out_features == 27
    head = _head(decoder=codec_without_k)  # the decoder learns K
    assert head.decoder.num_keypoints == 9
    with pytest.raises(UserValueError, match='num_keypoints=9'):
        head.decoder.decode(np.zeros((1, 8, 3)))
    with pytest.raises(UserValueError, match='set `num_joints`'):
        _head(num_joints=None, decoder=codec_without_k)
    with pytest.raises(UserValueError, match='num_joints=8.*num_keypoints=9'):
        _head(num_joints=8)


@pytest.mark.parametrize('name', [
    'td-depthreg_res18_1xb16-1000e_bottle-224x224',
    'td-depthreg_res18_1xb16-40e_bottle-synthetic-96x96',
    'td-depthreg_res18_2xb64-1000e_bottle-224x224'
])
def test_configs_derive_k_and_the_check_fires(name):
    """The configs take K from the metainfo; a head edited to another K is
    refused when the model is built (this fails without the check)."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(ROOT, f'configs/bottle/{name}.py'))
    head = cfg.model.head
    assert head.num_joints == head.decoder.num_keypoints == NUM_KEYPOINTS
    for t in cfg.train_dataloader.dataset.pipeline:
        if t.type == 'GenerateTarget':
            assert t.encoder.num_keypoints == NUM_KEYPOINTS
    cfg.model.head.num_joints = NUM_KEYPOINTS - 1
    with pytest.raises(UserValueError, match='num_joints=8 but the decoder'):
        MODELS.build(cfg.model)


def test_output_stays_float32_under_bf16_autocast():
    head = _head()
    feats = (torch.randn(2, 16, 2, 2), )
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = head(feats)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, head(feats))


def _topdown_model():
    return MODELS.build(
        dict(
            type='TopdownPoseEstimator',
            data_preprocessor=dict(
                type='PoseDataPreprocessor',
                mean=[123.675, 116.28, 103.53],
                std=[58.395, 57.12, 57.375],
                bgr_to_rgb=True),
            backbone=dict(type='ResNet', depth=18, init_cfg=None),
            head=dict(
                type='DepthKeypointRegressionHead',
                in_channels=512,
                num_joints=9,
                loss=dict(type='MSELoss', use_target_weight=True),
                decoder=CODEC),
            test_cfg=dict(flip_test=False)))


def _packed_batch(n=2, seed=0):
    """Real mmpose transforms on synthetic frames (no augmentation)."""
    rng = np.random.default_rng(seed)
    codec = dict(CODEC)
    items = []
    for i in range(n):
        img = rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)
        results = dict(
            img=img,
            img_shape=img.shape[:2],
            ori_shape=img.shape[:2],
            img_path=f'frame_{i}.jpg',
            id=i,
            img_id=i,
            bbox=np.array([[0, 0, 100, 80]], np.float32),
            bbox_score=np.ones(1, np.float32),
            keypoints=rng.uniform([10, 10], [90, 70], (1, 9, 2)).astype(np.float32),
            keypoints_visible=np.ones((1, 9), np.float32),
            keypoints_depth=rng.uniform(0.4, 0.8, (1, 9)).astype(np.float32))
        for t in (GetBBoxCenterScale(padding=1.0), TopdownAffine(input_size=(IN_W, IN_H)),
                  GenerateTarget(encoder=codec), PackPoseInputs()):
            results = t(results)
        items.append(results)
    return pseudo_collate(items)


def test_topdown_estimator_overfits_and_maps_back_to_image():
    """ResNet-18 + head in mmpose's TopdownPoseEstimator: loss falls on two
    frames (the seed's overfitting idea, in miniature) and predictions come
    back in original-image pixels."""
    torch.manual_seed(0)
    model = _topdown_model()
    model.init_weights()
    batch = _packed_batch()
    optim = OptimWrapper(torch.optim.Adam(model.parameters(), lr=1e-3))
    first = None
    for _ in range(25):
        log = model.train_step(batch, optim)
        first = first if first is not None else log['loss'].item()
    assert {'loss', 'loss_kpt', 'mpjpe_2d', 'mae_depth'} <= set(log)
    assert log['loss'].item() < 0.2 * first

    model.eval()
    with torch.no_grad():
        outs = model.val_step(batch)
        inputs = model.data_preprocessor(batch)['inputs']
        raw = model.head(model.extract_feat(inputs)).numpy()  # (B, K, 3)
    for out, r in zip(outs, raw):
        pred = out.pred_instances
        assert pred.keypoints.shape == (1, 9, 2)
        assert pred.keypoints_depth.shape == (1, 9)
        # input pixels → original image, as TopdownAffine defined the crop
        centre = out.metainfo['input_center']
        scale = out.metainfo['input_scale']
        expect = (r[:, :2] * scale + centre - 0.5 * scale)
        np.testing.assert_allclose(pred.keypoints[0], expect, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(pred.keypoints_depth[0], r[:, 2] * 0.5 + 0.6, rtol=1e-5)
