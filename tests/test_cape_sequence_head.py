import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData
from mmpose.registry import MODELS
from mmpose.structures import PoseDataSample

from keypose_ext.utils.errors import UserValueError

KS = [3, 5]  # two categories in one batch
KMAX = max(KS)
N = 2  # shots
INPUT_SIZE = (64, 48)
SKELETONS = ([[0, 1], [1, 2]], [[0, 1], [2, 3], [3, 4]])


def _head(**kw):
    cfg = dict(
        type='CapeSequenceHead',
        in_channels=8,
        embed_dims=16,
        num_layers=2,
        num_heads=2,
        ffn_dims=32,
        dropout=0.0)
    cfg.update(kw)
    torch.manual_seed(0)
    return MODELS.build(cfg)


def _episode(seed=0, skeletons=SKELETONS, with_targets=True):
    """Features and the batch's data samples, as PackCapeInputs encodes them."""
    g = torch.Generator().manual_seed(seed)
    feats = (torch.randn(2, 8, 4, 4, generator=g), torch.randn(2, N, 8, 4, 4, generator=g))
    sup_xy = torch.rand(2, N, KMAX, 2, generator=g)
    sup_w = (torch.rand(2, N, KMAX, generator=g) > 0.2).float()
    sup_w[1, :, 4] = 0  # keypoint 4 of sample 1 seen by no support
    targets = torch.rand(2, KMAX, 2, generator=g)
    weights = torch.ones(2, KMAX)
    weights[1, 2] = 0  # unlabelled query keypoint
    samples = []
    for i, k in enumerate(KS):
        s = PoseDataSample()
        s.set_metainfo(
            dict(
                num_keypoints=k,
                skeleton=skeletons[i],
                input_size=INPUT_SIZE,
                support_keypoint_labels=sup_xy[i, :, :k].numpy(),
                support_keypoint_weights=sup_w[i, :, :k].numpy()))
        if with_targets:
            s.gt_instance_labels = InstanceData(
                keypoint_labels=targets[i:i + 1, :k], keypoint_weights=weights[i:i + 1, :k])
        samples.append(s)
    return feats, samples


def _collate(head, samples, with_targets=True):
    return head.collate_episode(samples, N, 'cpu', with_targets=with_targets)


def test_episode_is_padded_with_masks():
    head = _head()
    _, samples = _episode()
    ep = _collate(head, samples)
    assert ep['support_keypoints'].shape == (2, N, KMAX, 2)
    assert ep['num_keypoints'].tolist() == KS
    assert not ep['support_visible'][0, :, 3:].any()  # padding
    assert (ep['target_weights'][0, 3:] == 0).all()
    np.testing.assert_array_equal(ep['support_keypoints'][1].numpy(),
                                  samples[1].support_keypoint_labels)
    adj = ep['adjacency']
    assert adj[1, 3, 2] == 1 and adj[1, 2, 3] == 1 and adj[0, 3, 3] == 0


def test_teacher_forcing_is_causal():
    head = _head().eval()
    feats, samples = _episode()
    ep = _collate(head, samples)
    known = ep['target_weights'] > 0
    logits, coords = head(feats, ep, ep['targets'], known)
    assert logits.shape == (2, KMAX + 1, 2) and coords.shape == (2, KMAX + 1, 2)
    t = 2
    changed = ep['targets'].clone()
    changed[:, t:] = torch.rand_like(changed[:, t:])
    logits2, coords2 = head(feats, ep, changed, known)
    # step s sees the coordinates of steps < s only
    torch.testing.assert_close(coords2[:, :t + 1], coords[:, :t + 1])
    torch.testing.assert_close(logits2[:, :t + 1], logits[:, :t + 1])
    assert not torch.allclose(coords2[:, t + 1:], coords[:, t + 1:])


def test_autoregressive_decoding_feeds_back_its_own_predictions():
    head = _head(end_threshold=1.1).eval()  # never stop early
    feats, samples = _episode()
    ep = _collate(head, samples)
    pred = head.decode_sequence(feats, ep)
    assert pred['num_decoded'].tolist() == KS
    assert torch.isnan(pred['coords'][0, 3:]).all()  # padding never predicted
    # a teacher-forced pass fed with the decoder's own outputs reproduces them
    prev = torch.nan_to_num(pred['coords'])
    _, coords = head(feats, ep, prev, torch.ones(2, KMAX, dtype=torch.bool))
    for i, k in enumerate(KS):
        torch.testing.assert_close(coords[i, :k], pred['coords'][i, :k])
    # and differs from teacher forcing with the ground truth
    _, coords_gt = head(feats, ep, ep['targets'], ep['target_weights'] > 0)
    assert not torch.allclose(coords_gt[1, 1:5], pred['coords'][1, 1:5])


def test_predict_returns_instances_in_crop_pixels_without_the_query_labels():
    head = _head(end_threshold=1.1).eval()
    feats, samples = _episode()
    raw = head.decode_sequence(feats, _collate(head, samples, with_targets=False))
    _, no_labels = _episode(with_targets=False)
    preds = head.predict(feats, no_labels)  # no gt_instance_labels: never needed
    assert isinstance(preds, list) and all(isinstance(p, InstanceData) for p in preds)
    for i, (p, k) in enumerate(zip(preds, KS)):
        assert p.keypoints.shape == (1, k, 2) and p.keypoint_scores.shape == (1, k)
        np.testing.assert_allclose(
            p.keypoints[0], raw['coords'][i, :k].numpy() * np.array(INPUT_SIZE), rtol=1e-6)
        np.testing.assert_allclose(p.keypoint_scores[0], raw['scores'][i, :k].numpy())
    # the query's labels change nothing at predict time
    tampered = _episode(seed=5)[1]
    for s, o in zip(tampered, samples):
        s.set_metainfo({k: o.metainfo[k] for k in o.metainfo_keys()})
    for a, b in zip(preds, head.predict(feats, tampered)):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)


def test_end_token_stops_without_padding_zeros():
    head = _head().eval()
    feats, samples = _episode()
    ep = _collate(head, samples)
    with torch.no_grad():
        head.cls_head.bias.copy_(torch.tensor([-50.0, 50.0]))  # always "end"
    pred = head.decode_sequence(feats, ep)
    assert pred['num_decoded'].tolist() == [0, 0]
    assert torch.isnan(pred['coords']).all() and (pred['scores'] == 0).all()
    insts = head.predict(feats, samples)
    assert np.isnan(insts[1].keypoints).all() and (insts[1].keypoint_scores == 0).all()
    with torch.no_grad():
        head.cls_head.bias.copy_(torch.tensor([50.0, -50.0]))  # never "end"
    pred = head.decode_sequence(feats, ep)
    assert pred['num_decoded'].tolist() == KS  # stops at the keypoint count
    assert (pred['scores'][0, :3] > 0.99).all() and (pred['scores'][0, 3:] == 0).all()


def test_skeleton_and_support_keypoints_change_the_output():
    head = _head().eval()
    feats, samples = _episode()
    base = [p.keypoints for p in head.predict(feats, samples)]
    _, rewired = _episode(skeletons=([[0, 2]], [[0, 4], [1, 3]]))
    out = head.predict(feats, rewired)
    assert not np.allclose(out[0].keypoints, base[0])
    _, moved = _episode()
    moved[0].set_metainfo(
        dict(support_keypoint_labels=moved[0].support_keypoint_labels[:, ::-1].copy()))
    assert not np.allclose(head.predict(feats, moved)[0].keypoints, base[0])


@pytest.mark.parametrize('reference', ['similarity', 'support', 'center'])
def test_loss_ignores_padding_and_reaches_every_parameter(reference):
    head = _head(coord_reference=reference).train()
    feats, samples = _episode()
    losses = head.loss(feats, samples)
    assert set(losses) == {'loss_ce', 'loss_coords'
                           } | ({'loss_proposal'} if reference == 'similarity' else set())
    _, padded = _episode()
    padded[1].gt_instance_labels.keypoint_labels[0, 2] = -3.0  # its unlabelled keypoint
    for key, value in head.loss(feats, padded).items():
        torch.testing.assert_close(value, losses[key])
    sum(losses.values()).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        # keypoint 4 of sample 1 is labelled in the query but seen by no support:
        # no degenerate (zero-vector) similarity may blow the gradient up
        assert p.grad.norm() < 1e3, name


def test_similarity_proposal_finds_the_matching_cell():
    head = _head().eval()
    g = torch.Generator().manual_seed(1)
    v = torch.randn(8, generator=g)
    support = v.view(1, 1, 8, 1, 1).expand(2, 2, 8, 4, 4).clone()
    query = 0.3 * torch.randn(2, 8, 4, 4, generator=g)
    query[0, :, 1, 2] = v  # row 1, column 2
    query[1, :, 3, 0] = v  # row 3, column 0
    _, samples = _episode()
    ep = _collate(head, samples)
    _, _, ref, proposal, seen = head._encode((query, support), ep)
    assert seen[1, :4].any() and not seen[1, 4]
    torch.testing.assert_close(proposal[0, 0], torch.tensor([2.5 / 4, 1.5 / 4]), atol=0.06, rtol=0)
    torch.testing.assert_close(proposal[1, 1], torch.tensor([0.5 / 4, 3.5 / 4]), atol=0.06, rtol=0)
    # a keypoint no support sees falls back to the crop centre
    torch.testing.assert_close(ref[1, 4], torch.tensor([0.5, 0.5]))


def test_bad_config_and_inputs():
    with pytest.raises(UserValueError, match='multiple of 4'):
        _head(embed_dims=18)
    with pytest.raises(UserValueError, match='coord_reference'):
        _head(coord_reference='query')
    feats, samples = _episode()
    with pytest.raises(UserValueError, match='flip test'):
        _head().predict(feats, samples, dict(flip_test=True))
    head = _head(decoder=dict(type='CapeSequenceCodec', input_size=(32, 32))).eval()
    with pytest.raises(UserValueError, match=r'input_size \(32, 32\)'):
        head.predict(feats, samples)
    bare = PoseDataSample(metainfo=dict(num_keypoints=3))
    with pytest.raises(UserValueError, match='PackCapeInputs'):
        head.predict(feats, [bare, bare])


def test_checkpoints_with_the_old_transformer_name_still_load():
    head = _head()
    old = {
        (k.replace('transformer.', 'decoder.', 1) if k.startswith('transformer.') else k): v
        for k, v in head.state_dict().items()
    }
    assert any(k.startswith('decoder.') for k in old)
    fresh = _head(num_layers=2)
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    fresh.load_state_dict(old)  # strict: every key matched
    for k, v in head.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v)
