import numpy as np
import pytest
from mmpose.registry import KEYPOINT_CODECS

from keypose_ext.utils.errors import UserValueError


def _codec(size=(64, 48)):
    return KEYPOINT_CODECS.build(dict(type='CapeSequenceCodec', input_size=size))


def test_encode_normalises_and_weights_labelled_keypoints_inside_the_crop():
    kpts = np.array([[[32., 24.], [0., 0.], [64., 10.], [-1., 5.], [10., np.nan], [63.9, 47.9]]])
    vis = np.array([[1., 0., 1., 1., 1., 2.]])
    enc = _codec().encode(kpts, vis)
    labels, weights = enc['keypoint_labels'], enc['keypoint_weights']
    assert labels.shape == (1, 6, 2) and labels.dtype == np.float32
    np.testing.assert_allclose(labels[0, 0], [0.5, 0.5])
    np.testing.assert_allclose(labels[0, 2], [1.0, 10 / 48], rtol=1e-6)  # clipped x
    assert labels[0, 3, 0] == 0 and np.isfinite(labels).all()
    # unlabelled, on/after the right edge, left of the crop, NaN -> weight 0
    np.testing.assert_array_equal(weights, [[1, 0, 0, 0, 0, 1]])
    assert _codec().encode(kpts[:, :1])['keypoint_weights'].tolist() == [[1.0]]


def test_decode_is_the_inverse_and_keeps_nan():
    codec = _codec()
    enc = np.array([[[0.5, 0.5], [np.nan, np.nan], [0.25, 1.0]]], np.float32)
    kpts, scores = codec.decode(enc)
    np.testing.assert_allclose(kpts[0, 0], [32, 24])
    np.testing.assert_allclose(kpts[0, 2], [16, 48])
    assert np.isnan(kpts[0, 1]).all()
    np.testing.assert_array_equal(scores, [[1, 0, 1]])
    back = codec.decode(codec.encode(kpts[:, [0, 2]] * 0.9)['keypoint_labels'])[0]
    np.testing.assert_allclose(back, kpts[:, [0, 2]] * 0.9, rtol=1e-6)


def test_bad_input():
    with pytest.raises(UserValueError, match='input_size'):
        _codec((0, 48))
    with pytest.raises(UserValueError, match=r'\(N, K, 2\)'):
        _codec().encode(np.zeros((3, 2)))
    with pytest.raises(UserValueError, match='keypoints_visible'):
        _codec().encode(np.zeros((1, 3, 2)), np.ones((1, 2)))
