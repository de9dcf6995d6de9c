"""Objectron end to end on synthetic portrait clips: convert many videos, train the demo
config for a few epochs, test with --show-dir (lifted boxes + one IoU plot per video)."""
import os
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import RUNNERS

from keypose_ext.dataset_converters.objectron_clips_converter import convert_objectron_clips
from keypose_ext.testing.synthetic_objectron import make_objectron_multivideo

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'objectron',
                  'td-depthreg_res18_1xb16-40e_objectron-synthetic-128x96.py')


@pytest.mark.slow
def test_train_and_test_with_show_dir(tmp_path):
    make_objectron_multivideo(
        str(tmp_path / 'src'), num_videos=4, num_frames=6, size=(72, 96), box_scale=(1.6, 2.0))
    summary = convert_objectron_clips(
        str(tmp_path / 'src'), str(tmp_path / 'data'), split=(0.5, 0.25, 0.25), progress=False)
    cfg = Config.fromfile(CONFIG)
    cfg.work_dir = str(tmp_path / 'work')
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = str(tmp_path / 'data')
        cfg[loader].batch_size = 4
    cfg.train_cfg = dict(type='KeyposeEpochBasedTrainLoop', max_epochs=2, val_interval=2)
    cfg.default_hooks.checkpoint = dict(type='KeyposeCheckpointHook', interval=2)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    runner = RUNNERS.build(cfg)  # the config's KeyposeRunner, as tools/train.py builds it
    runner.train()

    cfg.load_from = osp.join(cfg.work_dir, 'epoch_2.pth')
    cfg.default_hooks.visualization = dict(type='PoseVisualizationHook', enable=True, out_dir='vis')
    tester = RUNNERS.build(cfg)
    metrics = tester.test()
    assert metrics['objectron/num_boxes'] == 6  # one test video of 6 frames
    for key in ('iou_3d', 'AP@0.5', 'error_2d', 'azimuth_error', 'elevation_error', 'video_iou_3d'):
        assert f'objectron/{key}' in metrics
    assert 0 <= metrics['objectron/iou_3d'] <= 1
    vis_dir = osp.join(cfg.work_dir, tester.timestamp, 'vis')
    files = sorted(os.listdir(vis_dir))
    [test_video] = summary['splits']['test']
    assert f'iou_{test_video}.png' in files
    assert len([f for f in files if f.startswith(test_video + '_')]) == 6
