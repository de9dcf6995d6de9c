import copy

import numpy as np
import pytest
import torch
from cape_fixtures import dataset_cfg, make_data, tiny_model_cfg
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope
from mmpose.registry import DATASETS, MODELS


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('mp100')
    summary = make_data(root, images_per_category=5, keypoint_counts=(2, 4, 5, 7, 9))
    with DefaultScope.overwrite_default_scope('mmpose'):
        ds = DATASETS.build(dataset_cfg(root, num_shots=2, episodes_per_epoch=20))
        items = [ds[i] for i in range(len(ds))]
        single = DATASETS.build(
            dataset_cfg(
                root,
                num_shots=1,
                episodes_per_epoch=2,
                debug_single_image=summary['splits'][1]['train'][-1]))
    # a batch of four episodes with at least two keypoint counts
    batch = []
    for it in items:
        if len(batch) < 3 or it['data_samples'].num_keypoints != \
                batch[0]['data_samples'].num_keypoints:
            batch.append(it)
        if len(batch) == 4:
            break
    assert len({b['data_samples'].num_keypoints for b in batch}) > 1
    return batch, single


def _model(**head):
    torch.manual_seed(0)
    return MODELS.build(tiny_model_cfg(**head))


def _predict(model, batch):
    model.eval()
    data = model.data_preprocessor(pseudo_collate(copy.deepcopy(batch)))
    return model(**data, mode='predict')


def test_predictions_never_read_the_query_ground_truth(data):
    batch, _ = data
    model = _model(end_threshold=1.1)  # decode every keypoint
    ref = _predict(model, batch)
    assert all(np.isfinite(d.pred_instances.keypoints).all() for d in ref)
    tampered = copy.deepcopy(batch)
    rng = np.random.default_rng(0)
    for it in tampered:
        gt = it['data_samples'].gt_instances
        gt.keypoints = rng.uniform(0, 100, gt.keypoints.shape).astype(np.float32)
        gt.transformed_keypoints = rng.uniform(-50, 50,
                                               gt.transformed_keypoints.shape).astype(np.float32)
        gt.keypoints_visible = 1 - gt.keypoints_visible
        labels = it['data_samples'].gt_instance_labels
        labels.keypoint_labels = torch.rand_like(labels.keypoint_labels)
        labels.keypoint_weights = 1 - labels.keypoint_weights
    out = _predict(model, tampered)
    for a, b in zip(ref, out):
        np.testing.assert_array_equal(a.pred_instances.keypoints, b.pred_instances.keypoints)
        np.testing.assert_array_equal(a.pred_instances.keypoint_scores,
                                      b.pred_instances.keypoint_scores)
    # ... while a different query image does change them
    other = copy.deepcopy(batch)
    other[0]['inputs'][0] = other[1]['inputs'][0]
    assert not np.array_equal(
        _predict(model, other)[0].pred_instances.keypoints, ref[0].pred_instances.keypoints)


def test_mixed_categories_give_one_prediction_per_keypoint(data):
    batch, _ = data
    out = _predict(_model(), batch)
    for it, ds in zip(batch, out):
        k = it['data_samples'].num_keypoints
        assert ds.pred_instances.keypoints.shape == (1, k, 2)
        assert ds.pred_instances.keypoint_scores.shape == (1, k)


def test_every_parameter_learns_and_the_pose_graph_matters(data):
    batch, _ = data
    model = _model().train()
    batch = copy.deepcopy(batch)
    # one support keypoint seen by no shot and one unlabelled query keypoint, so
    # the "missing" embeddings take part too
    batch[0]['data_samples'].support_keypoint_weights[:, 0] = 0
    batch[1]['data_samples'].gt_instance_labels.keypoint_weights[0, 1] = 0
    data_ = model.data_preprocessor(pseudo_collate(batch), True)
    losses = model(**data_, mode='loss')
    assert set(losses) == {'loss_ce', 'loss_coords', 'loss_proposal'}
    sum(losses.values()).backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name

    model = _model(end_threshold=1.1)
    ref = _predict(model, batch)[0].pred_instances.keypoints
    assert np.isfinite(ref).all()
    rewired = copy.deepcopy(batch)
    k = rewired[0]['data_samples'].num_keypoints
    rewired[0]['data_samples'].set_metainfo(dict(skeleton=[[i, (i + 2) % k] for i in range(k)]))
    assert not np.allclose(_predict(model, rewired)[0].pred_instances.keypoints, ref)
    moved = copy.deepcopy(batch)
    moved[0]['data_samples'].support_keypoint_labels[..., 0] += 7 / 64
    assert not np.allclose(_predict(model, moved)[0].pred_instances.keypoints, ref)


def test_topdown_contract_loss_predict_and_image_mapping_are_mmposes():
    from mmpose.models.pose_estimators.topdown import TopdownPoseEstimator

    from keypose_ext.models.pose_estimators.cape_estimator import CapeEstimator
    assert issubclass(CapeEstimator, TopdownPoseEstimator)
    for name in ('loss', 'predict', 'add_pred_to_datasample'):
        assert getattr(CapeEstimator, name) is getattr(TopdownPoseEstimator, name), name


def test_predictions_are_in_original_image_pixels(data):
    """With support == query and the support-location prior, an untrained model
    predicts the query's own keypoints: checks the crop -> image mapping."""
    _, single = data
    it = single[0]
    s = it['data_samples']
    assert s.support_img_paths == [s.img_path]
    pred = _predict(_model(coord_reference='support', end_threshold=1.1), [it])[0]
    vis = s.gt_instances.keypoints_visible[0] > 0
    err = np.linalg.norm(
        pred.pred_instances.keypoints[0] - s.gt_instances.keypoints[0], axis=-1)[vis]
    box = s.gt_instances.bboxes[0]
    assert err.max() < 0.02 * max(box[2] - box[0], box[3] - box[1])


def test_tensor_mode_and_errors(data):
    batch, _ = data
    model = _model().eval()
    data_ = model.data_preprocessor(pseudo_collate(copy.deepcopy(batch)))
    out = model(**data_, mode='tensor')
    assert out['coords'].shape[:2] == (4, max(b['data_samples'].num_keypoints for b in batch))
    with pytest.raises(ValueError, match='needs data_samples'):
        model(data_['inputs'], None, mode='tensor')
    with pytest.raises(ValueError, match=r'\(B, 1 \+ num_shots, 3, H, W\)'):
        model.extract_feat(data_['inputs'][:, 0])


def test_mixed_precision_loss_and_prediction(data):
    """AmpOptimWrapper runs the model under autocast: outputs stay float32."""
    batch, _ = data
    model = _model(end_threshold=1.1)
    data_ = model.data_preprocessor(pseudo_collate(copy.deepcopy(batch)), True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model(**data_, mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = _predict(model, batch)
    assert out[0].pred_instances.keypoints.dtype == np.float32
    assert np.isfinite(out[0].pred_instances.keypoints).all()
