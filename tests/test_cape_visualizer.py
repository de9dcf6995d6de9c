import cv2
import numpy as np
from mmengine.structures import InstanceData
from mmpose.registry import VISUALIZERS
from mmpose.structures import PoseDataSample

from keypose_ext.visualization.cape_visualizer import keypoint_colours


def _sample(tmp_path, shots=2):
    paths = []
    for i in range(shots):
        img = np.zeros((60, 80, 3), np.uint8)
        paths.append(str(tmp_path / f'support{i}.png'))
        cv2.imwrite(paths[-1], img)
    s = PoseDataSample()
    gt = InstanceData()
    gt.keypoints = np.array([[[20., 20.], [40., 30.], [30., 40.]]])
    gt.keypoints_visible = np.array([[1., 1., 0.]])
    gt.bboxes = np.array([[10., 10., 50., 50.]])
    s.gt_instances = gt
    pred = InstanceData()
    pred.keypoints = np.array([[[21., 21.], [45., 30.], [np.nan, np.nan]]])
    pred.keypoint_scores = np.array([[0.9, 0.8, 0.0]])
    s.pred_instances = pred
    s.set_metainfo(dict(
        num_keypoints=3, skeleton=[[0, 1], [1, 2]], support_img_paths=paths,
        support_keypoints=np.tile(gt.keypoints, (shots, 1, 1)),
        support_keypoints_visible=np.ones((shots, 3)),
        support_bboxes=np.tile(gt.bboxes, (shots, 1)), img_path='query.png'))
    return s


def test_supports_beside_the_query_with_prediction_and_truth(tmp_path):
    vis = VISUALIZERS.build(dict(type='CapeVisualizer', name='cape_vis_test',
                                 panel_height=100, crop_padding=0, radius=3))
    sample = _sample(tmp_path)
    query = np.zeros((60, 80, 3), np.uint8)
    out = tmp_path / 'out.jpg'
    # the hook passes draw_gt=False; the truth is overlaid anyway
    vis.add_datasample('q', query, sample, draw_gt=False, out_file=str(out))
    canvas = cv2.imread(str(out))[..., ::-1]
    panel_w = int(round(80 * 100 / 60))
    assert canvas.shape == (100, 3 * panel_w + 2 * 4, 3)
    scale = 100 / 60
    col = keypoint_colours(3)
    for p in range(3):  # keypoint 0 in its colour in both supports and the query
        x0 = p * (panel_w + 4)
        src = (21, 21) if p == 2 else (20, 20)
        px = canvas[int(round(src[1] * scale)), x0 + int(round(src[0] * scale))]
        assert np.abs(px.astype(int) - col[0]).max() < 40, (p, px, col[0])
    # the truth ring of keypoint 1 is white, the prediction is 5 px right of it
    q0 = 2 * (panel_w + 4)
    ring = canvas[int(30 * scale) - 5:int(30 * scale) + 6,
                  q0 + int(40 * scale) - 6:q0 + int(40 * scale) + 7]
    assert (ring.min(-1) > 200).any()
    # the undecoded keypoint 2 (NaN) is not drawn, title carries the pair's PCK
    raw = vis.draw_episode(query, sample)
    assert raw.shape == canvas.shape


def test_single_support_and_no_prediction(tmp_path):
    vis = VISUALIZERS.build(dict(type='CapeVisualizer', name='cape_vis_test2',
                                 panel_height=64))
    sample = _sample(tmp_path, shots=1)
    del sample.pred_instances
    canvas = vis.draw_episode(np.zeros((60, 80, 3), np.uint8), sample)
    assert canvas.shape[0] == 64 and canvas.shape[1] > 2 * 60
