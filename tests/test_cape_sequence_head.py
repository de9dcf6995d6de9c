import pytest
import torch
from mmpose.registry import MODELS

from keypose_ext.models.heads.cape_sequence_head import skeleton_adjacency

KS = [3, 5]  # two categories in one batch
KMAX = max(KS)


def _head(**kw):
    cfg = dict(type='CapeSequenceHead', in_channels=8, embed_dims=16, num_layers=2,
               num_heads=2, ffn_dims=32, dropout=0.0)
    cfg.update(kw)
    torch.manual_seed(0)
    return MODELS.build(cfg)


def _episode(seed=0, skeletons=([[0, 1], [1, 2]], [[0, 1], [2, 3], [3, 4]])):
    g = torch.Generator().manual_seed(seed)
    n = 2
    feats = (torch.randn(2, 8, 4, 4, generator=g),
             torch.randn(2, n, 8, 4, 4, generator=g))
    vis = torch.rand(2, n, KMAX, generator=g) > 0.2
    ep = dict(
        support_keypoints=torch.rand(2, n, KMAX, 2, generator=g),
        support_visible=vis,
        num_keypoints=torch.tensor(KS),
        adjacency=skeleton_adjacency(list(skeletons), KS, KMAX))
    ep['support_visible'][0, :, 3:] = False  # padding
    ep['support_visible'][1, :, 4] = False  # keypoint 4 seen by no support
    ep['targets'] = torch.rand(2, KMAX, 2, generator=g)
    w = torch.ones(2, KMAX)
    w[0, 3:] = 0
    w[1, 2] = 0  # unlabelled query keypoint
    ep['target_weights'] = w
    return feats, ep


def test_teacher_forcing_is_causal():
    head = _head().eval()
    feats, ep = _episode()
    logits, coords = head(feats, ep, ep['targets'], ep['target_weights'] > 0)
    assert logits.shape == (2, KMAX + 1, 2) and coords.shape == (2, KMAX + 1, 2)
    t = 2
    changed = ep['targets'].clone()
    changed[:, t:] = torch.rand_like(changed[:, t:])
    logits2, coords2 = head(feats, ep, changed, ep['target_weights'] > 0)
    # step s sees the coordinates of steps < s only
    torch.testing.assert_close(coords2[:, :t + 1], coords[:, :t + 1])
    torch.testing.assert_close(logits2[:, :t + 1], logits[:, :t + 1])
    assert not torch.allclose(coords2[:, t + 1:], coords[:, t + 1:])


def test_autoregressive_decoding_feeds_back_its_own_predictions():
    head = _head(end_threshold=1.1).eval()  # never stop early
    feats, ep = _episode()
    pred = head.predict(feats, ep)
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


def test_end_token_stops_without_padding_zeros():
    head = _head().eval()
    feats, ep = _episode()
    with torch.no_grad():
        head.cls_head.bias.copy_(torch.tensor([-50.0, 50.0]))  # always "end"
    pred = head.predict(feats, ep)
    assert pred['num_decoded'].tolist() == [0, 0]
    assert torch.isnan(pred['coords']).all() and (pred['scores'] == 0).all()
    with torch.no_grad():
        head.cls_head.bias.copy_(torch.tensor([50.0, -50.0]))  # never "end"
    pred = head.predict(feats, ep)
    assert pred['num_decoded'].tolist() == KS  # stops at the keypoint count
    assert (pred['scores'][0, :3] > 0.99).all() and (pred['scores'][0, 3:] == 0).all()


def test_skeleton_and_support_keypoints_change_the_output():
    head = _head().eval()
    feats, ep = _episode()
    base = head.predict(feats, ep)['coords']
    _, ep2 = _episode(skeletons=([[0, 2]], [[0, 4], [1, 3]]))
    assert not torch.allclose(head.predict(feats, ep2)['coords'][:, :3], base[:, :3])
    ep3 = dict(ep, support_keypoints=ep['support_keypoints'].flip(2))
    assert not torch.allclose(head.predict(feats, ep3)['coords'][:, :3], base[:, :3])


@pytest.mark.parametrize('reference', ['similarity', 'support', 'center'])
def test_loss_ignores_padding_and_reaches_every_parameter(reference):
    head = _head(coord_reference=reference).train()
    feats, ep = _episode()
    losses = head.loss(feats, ep)
    assert set(losses) == {'loss_ce', 'loss_coords'} | (
        {'loss_proposal'} if reference == 'similarity' else set())
    padded = dict(ep, targets=ep['targets'].clone())
    padded['targets'][0, 3:] = 5.0  # padding of the 3-keypoint sample
    padded['targets'][1, 2] = -3.0  # its unlabelled keypoint
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
    _, ep = _episode()
    _, _, ref, proposal, seen = head._encode((query, support), ep)
    assert seen[0, :3].all() and not seen[1, 4]
    torch.testing.assert_close(proposal[0, 0], torch.tensor([2.5 / 4, 1.5 / 4]),
                               atol=0.06, rtol=0)
    torch.testing.assert_close(proposal[1, 1], torch.tensor([0.5 / 4, 3.5 / 4]),
                               atol=0.06, rtol=0)
    # a keypoint no support sees falls back to the crop centre
    torch.testing.assert_close(ref[1, 4], torch.tensor([0.5, 0.5]))


def test_bad_config():
    with pytest.raises(ValueError, match='multiple of 4'):
        _head(embed_dims=18)
    with pytest.raises(ValueError, match='coord_reference'):
        _head(coord_reference='query')
