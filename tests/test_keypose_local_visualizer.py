import numpy as np
import pytest
from mmengine.structures import InstanceData
from mmpose.registry import VISUALIZERS
from mmpose.structures import PoseDataSample
from mmpose.visualization import PoseLocalVisualizer

META = dict(
    num_keypoints=2,
    skeleton_links=[(0, 1)],
    dataset_name='t',
    flip_indices=[0, 1],
    keypoint_colors=np.array([[255, 0, 0], [0, 255, 0]]),
    skeleton_link_colors=np.array([[0, 0, 255]]))


def _sample():
    s = PoseDataSample()
    s.pred_instances = InstanceData(
        keypoints=np.array([[[10., 10.], [40., 30.]]]), keypoint_scores=np.ones((1, 2)))
    return s


def test_stock_visualizer_fails_under_numpy2():
    v = PoseLocalVisualizer(name='stock_np2', radius=3)
    v.set_dataset_meta(META)
    if int(np.__version__.split('.')[0]) < 2:
        pytest.skip('the mmpose bug only shows under numpy >= 2')
    with pytest.raises(TypeError, match='0-dimensional'):
        v.add_datasample('a', np.zeros((48, 64, 3), np.uint8), _sample(), draw_gt=False)


def test_draws_keypoints_and_links(tmp_path):
    v = VISUALIZERS.build(dict(type='KeyposeLocalVisualizer', name='keypose_np2', radius=3))
    v.set_dataset_meta(META)
    out = v.add_datasample(
        'a',
        np.zeros((48, 64, 3), np.uint8),
        _sample(),
        draw_gt=False,
        out_file=str(tmp_path / 'a.jpg'))
    assert (tmp_path / 'a.jpg').is_file()
    # both keypoints (red, green) and the link between them are drawn
    assert out[10, 10, 0] > 150 and out[30, 40, 1] > 150
    assert out.sum() > 0 and out[20, 25].sum() > 0
