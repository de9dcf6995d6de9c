import cv2
import numpy as np
from mmengine.structures import InstanceData
from mmpose.registry import VISUALIZERS
from mmpose.structures import PoseDataSample

from keypose_ext.visualization.cape_visualizer import keypoint_colours

SCALE = 100 / 60  # panel_height / image height
PANEL_W = int(round(80 * SCALE))


def _sample(tmp_path, shots=2, pred=((21., 21.), (48., 30.), (np.nan, np.nan))):
    paths = []
    for i in range(shots):
        paths.append(str(tmp_path / f'support{i}.png'))
        cv2.imwrite(paths[-1], np.zeros((60, 80, 3), np.uint8))
    s = PoseDataSample()
    gt = InstanceData()
    gt.keypoints = np.array([[[20., 20.], [40., 30.], [30., 40.]]])
    gt.keypoints_visible = np.array([[1., 1., 0.]])
    gt.bboxes = np.array([[10., 10., 50., 50.]])
    s.gt_instances = gt
    if pred is not None:
        p = InstanceData()
        p.keypoints = np.array([pred], np.float32)
        p.keypoint_scores = np.array([[0.9, 0.8, 0.0]])
        s.pred_instances = p
    s.set_metainfo(
        dict(
            num_keypoints=3,
            skeleton=[[0, 1], [1, 2]],
            support_img_paths=paths,
            support_keypoints=np.tile(gt.keypoints, (shots, 1, 1)),
            support_keypoints_visible=np.ones((shots, 3)),
            support_bboxes=np.tile(gt.bboxes, (shots, 1)),
            img_path='query.png'))
    return s


def _vis(name):
    return VISUALIZERS.build(
        dict(type='CapeVisualizer', name=name, panel_height=100, crop_padding=0, radius=3))


def _near(panel, colour, tol=40):
    """Number of pixels of ``panel`` within ``tol`` of an RGB colour."""
    return int((np.abs(panel.astype(int) - colour).max(-1) < tol).sum())


def _at(panel, xy):
    """The pixel of ``panel`` at image point ``xy``."""
    return panel[int(round(xy[1] * SCALE)), int(round(xy[0] * SCALE))].astype(int)


def test_supports_beside_the_query_with_prediction_and_truth(tmp_path):
    vis = _vis('cape_vis_test')
    sample = _sample(tmp_path)
    query = np.zeros((60, 80, 3), np.uint8)
    out = tmp_path / 'out.jpg'
    # the hook passes draw_gt=False; the truth is overlaid anyway
    vis.add_datasample('q', query, sample, draw_gt=False, out_file=str(out))
    assert cv2.imread(str(out)).shape == (100, 3 * PANEL_W + 2 * 4, 3)
    canvas = vis.draw_episode(query, sample)
    col = keypoint_colours(3)
    panels = [canvas[:, p * (PANEL_W + 4):p * (PANEL_W + 4) + PANEL_W] for p in range(3)]
    query_panel = panels[2]
    # every support shows every keypoint in its colour
    for p in panels[:2]:
        for i, xy in enumerate(([20, 20], [40, 30], [30, 40])):
            assert np.abs(_at(p, xy) - col[i]).max() < 40, (i, _at(p, xy), col[i])
    # the query shows the decoded predictions in their colours ...
    assert np.abs(_at(query_panel, (21, 21)) - col[0]).max() < 40
    assert np.abs(_at(query_panel, (48, 30)) - col[1]).max() < 40
    # ... and nothing of the undecoded (NaN) keypoint 2: no pixel of its colour
    assert _near(query_panel, col[2]) == 0
    # the truth ring of keypoint 1 is white, the prediction 8 px right of it
    y, x = int(30 * SCALE), int(40 * SCALE)
    assert (query_panel[y - 5:y + 6, x - 6:x + 7].min(-1) > 200).any()
    # the title carries the pair's PCK@0.2 by the MP-100 rule: the cleaned box is
    # 39 px (w - 1), 0.2 * 39 = 7.8 px: keypoint 0 (1.4 px) in, keypoint 1 (8 px) out
    assert vis.pair_pck_text(sample, query.shape) == 'PCK@0.2 0.50'
    assert (query_panel[:16] > 200).any()  # white text on the black title bar
    # control: the same keypoint, decoded, is drawn in its colour
    decoded = _sample(tmp_path, pred=((21., 21.), (48., 30.), (30., 45.)))
    drawn = vis.draw_episode(query, decoded)[:, 2 * (PANEL_W + 4):]
    assert _near(drawn, col[2]) > 10
    assert np.abs(_at(drawn, (30, 45)) - col[2]).max() < 40


def test_single_support_and_no_prediction(tmp_path):
    vis = _vis('cape_vis_test2')
    sample = _sample(tmp_path, shots=1, pred=None)
    canvas = vis.draw_episode(np.zeros((60, 80, 3), np.uint8), sample)
    assert canvas.shape == (100, 2 * PANEL_W + 4, 3)
    support, query = canvas[:, :PANEL_W], canvas[:, PANEL_W + 4:]
    col = keypoint_colours(3)
    for i in range(3):
        assert _near(support, col[i]) > 10  # the support pose is drawn
        assert _near(query, col[i]) == 0  # no prediction: no coloured dot
    # the labelled truth is drawn as white rings, the unlabelled keypoint 2 is not
    for xy, drawn in (((20, 20), True), ((40, 30), True), ((30, 40), False)):
        y, x = int(round(xy[1] * SCALE)), int(round(xy[0] * SCALE))
        assert (query[y - 6:y + 7, x - 6:x + 7].min(-1) > 200).any() == drawn, xy
