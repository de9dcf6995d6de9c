import pytest
import torch
from mmpose.registry import MODELS


def test_normalises_every_crop_of_the_episode():
    pre = MODELS.build(
        dict(type='CapeDataPreprocessor', mean=[10., 20., 30.], std=[2., 4., 5.], bgr_to_rgb=True))
    x = torch.randint(0, 255, (3, 3, 4, 5), dtype=torch.uint8)  # query + 2 supports
    y = torch.randint(0, 255, (3, 3, 4, 5), dtype=torch.uint8)
    out = pre(dict(inputs=[x, y], data_samples=['a', 'b']))
    inputs = out['inputs']
    assert inputs.shape == (2, 3, 3, 4, 5) and inputs.dtype == torch.float32
    mean = torch.tensor([10., 20., 30.]).view(1, 3, 1, 1)
    std = torch.tensor([2., 4., 5.]).view(1, 3, 1, 1)
    torch.testing.assert_close(inputs[1], (y[:, [2, 1, 0]].float() - mean) / std)
    assert out['data_samples'] == ['a', 'b']


def test_rejects_mixed_or_flat_inputs():
    pre = MODELS.build(dict(type='CapeDataPreprocessor'))
    with pytest.raises(ValueError, match='same num_shots'):
        pre(dict(inputs=[torch.zeros(2, 3, 4, 4), torch.zeros(3, 3, 4, 4)]))
    with pytest.raises(ValueError, match=r'\(1 \+ num_shots, 3, H, W\)'):
        pre(dict(inputs=[torch.zeros(3, 4, 4)]))


def test_blank_query_zeroes_the_query_crop_only():
    pre = MODELS.build(
        dict(type='CapeDataPreprocessor', mean=[10., 20., 30.], std=[2., 4., 5.], blank_query=True))
    x = torch.randint(0, 255, (3, 3, 4, 5), dtype=torch.uint8)  # query + 2 supports
    out = pre(dict(inputs=[x]))['inputs']
    assert (out[0, 0] == 0).all()  # the normalised mean colour
    mean = torch.tensor([10., 20., 30.]).view(1, 3, 1, 1)
    std = torch.tensor([2., 4., 5.]).view(1, 3, 1, 1)
    torch.testing.assert_close(out[0, 1:], (x[1:].float() - mean) / std)
