"""ObjectronBoxMetric: lifted 3D boxes scored as Objectron scores them, on portrait clips."""
import json

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.structures import InstanceData
from mmpose.structures import PoseDataSample

from keypose_ext.objectron import read_objectron_clip
from keypose_ext.objectron.box3d import fit_box, project_points
from keypose_ext.testing.synthetic_objectron import write_objectron_clip

W, H = 72, 96


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp('clips')
    out = {}
    for name, seed, vis in (('a', 1, [1, 1, 0.05, 1, 1]), ('b', 2, [1] * 5)):
        clip = write_objectron_clip(
            str(root / name), num_frames=5, size=(W, H), seed=seed, visibility=vis)
        out[name] = read_objectron_clip(clip['annotation']).frames
    return out


def _shift_half_width(box):
    """The box moved by half its size along its own x axis (IoU 1/3 with itself)."""
    rotation, _, scale = fit_box(box)
    return box + rotation[:, 0] * scale[0] / 2


def _samples(frames, video_id, predict=lambda box: box, tensors=False):
    samples = []
    for f in frames:
        inst = f.instances[0]
        pred_3d = predict(inst.keypoints_3d)
        pred_px = project_points(pred_3d, f.intrinsics)
        conv = torch.as_tensor if tensors else np.asarray
        s = PoseDataSample(
            metainfo=dict(
                ori_shape=(H, W),
                img_path=f'{video_id}/{f.frame_id}',
                video_id=video_id,
                frame_index=f.frame_id,
                camera_intrinsics=f.intrinsics,
                objectron_visibility=inst.visibility))
        s.gt_instances = InstanceData(
            keypoints=inst.keypoints[None],
            keypoints_depth=inst.depth[None],
            keypoints_3d=inst.keypoints_3d[None],
            keypoints_visible=np.ones((1, 9)))
        s.pred_instances = InstanceData(
            keypoints=conv(pred_px[None]), keypoints_depth=conv(pred_3d[None, :, 2]))
        samples.append(s)
    return samples


def _evaluate(samples, **kwargs):
    evaluator = Evaluator(dict(type='ObjectronBoxMetric', **kwargs))
    evaluator.process(samples[:3])
    evaluator.process(samples[3:])
    return evaluator.evaluate(len(samples))


def test_perfect_predictions(clips):
    res = _evaluate(_samples(clips['a'], 'a'))
    assert res['objectron/num_boxes'] == 4 and res['objectron/num_skipped'] == 1
    assert res['objectron/iou_3d'] == pytest.approx(1, abs=1e-6)  # float32 points
    assert res['objectron/AP@0.5'] == pytest.approx(1)
    for key in ('error_2d', 'azimuth_error', 'elevation_error'):
        assert res[f'objectron/{key}'] == pytest.approx(0, abs=1e-6), key


def test_half_width_shift_gives_one_third(clips):
    samples = _samples(clips['b'], 'b', _shift_half_width, tensors=True)
    res = _evaluate(samples, iou_thresholds=(0.3, 0.5))
    assert res['objectron/iou_3d'] == pytest.approx(1 / 3, abs=1e-6)
    assert res['objectron/AP@0.5'] == 0 and res['objectron/AP@0.3'] == pytest.approx(1)
    # 2D error: mean corner distance in normalised coordinates, computed here directly.
    expected = []
    for f in clips['b']:
        inst = f.instances[0]
        pred = project_points(_shift_half_width(inst.keypoints_3d), f.intrinsics)
        expected.append(np.mean(np.linalg.norm((pred[1:] - inst.keypoints[1:]) / [W, H], axis=1)))
    assert res['objectron/error_2d'] == pytest.approx(np.mean(expected), rel=1e-9)
    # A pure translation along the box's x axis changes the viewing direction.
    assert res['objectron/azimuth_error'] > 0.5


def test_video_level_means_weigh_videos_equally(clips, tmp_path):
    samples = _samples(clips['a'], 'a') + _samples(clips['b'], 'b', _shift_half_width)
    out = tmp_path / 'per_video.json'
    res = _evaluate(samples, out_file=str(out))
    assert res['objectron/iou_3d'] == pytest.approx((4 * 1 + 5 / 3) / 9, abs=1e-6)
    assert res['objectron/video_iou_3d'] == pytest.approx((1 + 1 / 3) / 2, abs=1e-6)
    # Dataset order matters for Objectron's AP: 4 hits, then 5 misses.
    assert res['objectron/AP@0.5'] == pytest.approx(4 / 9)
    assert res['objectron/video_AP@0.5'] == pytest.approx(0.5)
    saved = json.loads(out.read_text())
    assert set(saved['videos']) == {'a', 'b'}
    assert saved['videos']['a']['num_boxes'] == 4
    assert [b['frame_index'] for b in saved['boxes'] if b['video_id'] == 'a'] == list(range(5))


def test_clear_errors(clips):
    s = _samples(clips['b'][:1], 'b')[0]
    del s.camera_intrinsics
    with pytest.raises(ValueError, match='camera_intrinsics'):
        _evaluate([s])
    s = _samples(clips['b'][:1], 'b')[0]
    del s.pred_instances.keypoints_depth
    with pytest.raises(ValueError, match='pred_instances.keypoints_depth'):
        _evaluate([s])
    with pytest.raises(ValueError, match='iou_thresholds'):
        Evaluator(dict(type='ObjectronBoxMetric', iou_thresholds=(1.5, )))
