"""Many Objectron-format clips -> one dataset split by video (resumable), and its CLI."""
import importlib.util
import json
import os
import os.path as osp

import numpy as np
import pytest

import keypose_ext.dataset_converters.objectron_clips_converter as conv
from keypose_ext.testing.synthetic_objectron import make_objectron_multivideo, write_objectron_clip
from keypose_ext.utils.cli import run_main

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
W, H = 72, 96


@pytest.fixture(scope='module')
def source(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('src'))
    clips = make_objectron_multivideo(root, num_videos=5, num_frames=5, size=(W, H))
    return root, clips


def _load(path):
    with open(path) as f:
        return json.load(f)


def test_split_by_video_with_intrinsics_and_video_ids(source, tmp_path, capsys):
    root, clips = source
    out = str(tmp_path / 'out')
    summary = conv.convert_objectron_clips(root, out, split=(0.6, 0.2, 0.2), seed=1)
    assert 'Converting clips' in capsys.readouterr().err  # the tqdm bar
    splits = summary['splits']
    ids = [v for name in conv.SPLITS for v in splits[name]]
    assert sorted(ids) == sorted(summary['converted']) and len(set(ids)) == 5
    assert [len(splits[n]) for n in conv.SPLITS] == [3, 1, 1]
    gt_by_id = {conv._safe_id(osp.relpath(c['clip_dir'], root)): c['ground_truth'] for c in clips}
    for name in conv.SPLITS:
        coco = _load(summary['ann_files'][name])
        assert {img['video_id'] for img in coco['images']} == set(splits[name])
        assert len(coco['images']) == 5 * len(splits[name]) == summary['num_images'][name]
        for img in coco['images']:
            assert osp.isfile(osp.join(out, img['file_name']))
            assert (img['width'], img['height']) == (W, H)
            cam = gt_by_id[img['video_id']]['camera']
            np.testing.assert_allclose(
                img['camera_intrinsics'], [[cam.fx, 0, cam.cx], [0, cam.fy, cam.cy], [0, 0, 1]],
                atol=1e-4)
        for ann in coco['annotations']:
            gt = gt_by_id[ann['video_id']]['frames'][ann['frame_index']]
            np.testing.assert_allclose(ann['keypoints_3d'], gt['keypoints_3d'], atol=1e-5)
            np.testing.assert_allclose(
                np.reshape(ann['keypoints'], (9, 3))[:, :2], gt['keypoints'], atol=1e-3)
            np.testing.assert_allclose(ann['keypoints_depth'], gt['depth'], atol=1e-5)
    assert _load(osp.join(out, 'splits.json')) == splits


def test_rerun_skips_and_resumes(source, tmp_path, monkeypatch):
    root, clips = source
    out = str(tmp_path / 'out')
    real = conv.convert_clip
    calls = []

    def failing(clip, *args, **kwargs):
        calls.append(clip.video_id)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed while converting the third clip
        return real(clip, *args, **kwargs)

    monkeypatch.setattr(conv, 'convert_clip', failing)
    with pytest.raises(KeyboardInterrupt):
        conv.convert_objectron_clips(root, out, progress=False)
    assert len(os.listdir(osp.join(out, 'clips'))) == 2
    assert not [n for n in os.listdir(osp.join(out, 'images')) if n.startswith('.')]
    monkeypatch.setattr(conv, 'convert_clip', real)
    summary = conv.convert_objectron_clips(root, out, progress=False)
    assert len(summary['skipped']) == 2 and len(summary['converted']) == 3
    summary = conv.convert_objectron_clips(root, out, progress=False)
    assert summary['converted'] == [] and len(summary['skipped']) == 5
    # An edited annotation file (or other options) converts that clip again.
    ann = clips[0]['annotation']
    os.utime(ann, ns=(os.stat(ann).st_atime_ns, os.stat(ann).st_mtime_ns + 10**9))
    assert len(conv.convert_objectron_clips(root, out, progress=False)['converted']) == 1
    assert len(conv.convert_objectron_clips(root, out, stride=2, progress=False)['converted']) == 5


def test_frames_without_object_and_stride(tmp_path):
    write_objectron_clip(
        str(tmp_path / 'src' / 'c0'), num_frames=6, size=(W, H), empty_frames=[1, 4])
    summary = conv.convert_objectron_clips(
        str(tmp_path / 'src'), str(tmp_path / 'out'), split=(1, 0, 0), stride=2, progress=False)
    record = _load(osp.join(tmp_path, 'out', 'clips', 'c0.json'))
    assert record['frames_without_object'] == 2 and record['orientation'] == 'portrait'
    assert [img['frame_index'] for img in record['images']] == [0, 3]  # of 0, 2, 3, 5
    assert summary['num_images'] == dict(train=2, val=0, test=0)


def test_two_objects(tmp_path):
    write_objectron_clip(
        str(tmp_path / 'src' / 'c0'), num_frames=3, size=(W, H), second_object_offset=(0.05, 0, 0))
    src = str(tmp_path / 'src')
    with pytest.warns(UserWarning, match=r'objects \[0, 1\]; keeping object 0'):
        conv.convert_objectron_clips(src, str(tmp_path / 'first'), split=(1, 0, 0), progress=False)
    coco = _load(osp.join(tmp_path, 'first', 'annotations_train.json'))
    assert {a['object_id'] for a in coco['annotations']} == {0}
    conv.convert_objectron_clips(
        src, str(tmp_path / 'all'), split=(1, 0, 0), objects='all', progress=False)
    coco = _load(osp.join(tmp_path, 'all', 'annotations_train.json'))
    assert len(coco['annotations']) == 2 * len(coco['images']) == 6
    conv.convert_objectron_clips(
        src, str(tmp_path / 'one'), split=(1, 0, 0), objects=1, progress=False)
    coco = _load(osp.join(tmp_path, 'one', 'annotations_train.json'))
    assert {a['object_id'] for a in coco['annotations']} == {1}
    with pytest.raises(ValueError, match=r'object id 7 is not annotated; its objects are'):
        conv.convert_objectron_clips(src, str(tmp_path / 'bad'), objects=7, progress=False)


def test_bad_clips_are_one_clear_error(tmp_path):
    write_objectron_clip(
        str(tmp_path / 'noK' / 'c0'), num_frames=2, size=(W, H), with_intrinsics=False)
    with pytest.raises(
            ValueError, match=r'clip c0: .*annotation.pbdata frame_id 0 has no '
            r'camera intrinsics'):
        conv.convert_objectron_clips(str(tmp_path / 'noK'), str(tmp_path / 'o1'), progress=False)
    write_objectron_clip(str(tmp_path / 'short' / 'c0'), num_frames=4, size=(W, H), num_annotated=3)
    with pytest.raises(
            ValueError, match=r'annotation.pbdata annotates 3 frames .* but '
            r'video.MOV has 4 frames'):
        conv.convert_objectron_clips(str(tmp_path / 'short'), str(tmp_path / 'o2'), progress=False)
    assert not os.listdir(osp.join(tmp_path, 'o2', 'images'))  # nothing half-written
    with pytest.raises(FileNotFoundError, match='Clip source not found'):
        conv.convert_objectron_clips(str(tmp_path / 'nothing'), str(tmp_path / 'o3'))
    os.makedirs(tmp_path / 'empty')
    with pytest.raises(ValueError, match='No clip found'):
        conv.convert_objectron_clips(str(tmp_path / 'empty'), str(tmp_path / 'o3'))


def test_json_clips_and_objectron_download_layout(tmp_path):
    clip = write_objectron_clip(
        str(tmp_path / 'json' / 'c0'),
        num_frames=3,
        size=(W, H),
        annotation_format='json',
        video_name='video.mp4')
    summary = conv.convert_objectron_clips(
        str(tmp_path / 'json'), str(tmp_path / 'o1'), split=(1, 0, 0), progress=False)
    img = _load(summary['ann_files']['train'])['images'][0]
    cam = clip['ground_truth']['camera']
    assert img['camera_intrinsics'][0] == [cam.fx, 0, cam.cx]
    data = _load(clip['annotation'])
    del data['camera']
    with open(clip['annotation'], 'w') as f:
        json.dump(data, f)
    with pytest.raises(
            ValueError, match=r'clip c0: .*has no camera intrinsics; add a '
            'top-level "camera"'):
        conv.convert_objectron_clips(str(tmp_path / 'json'), str(tmp_path / 'o2'), progress=False)
    # videos/<id>/video.MOV + annotations/<id>.pbdata, as Objectron's bucket.
    made = write_objectron_clip(
        str(tmp_path / 'dl' / 'videos' / 'bottle' / 'batch-3' / '7'), num_frames=2, size=(W, H))
    os.makedirs(tmp_path / 'dl' / 'annotations' / 'bottle' / 'batch-3')
    os.rename(made['annotation'],
              tmp_path / 'dl' / 'annotations' / 'bottle' / 'batch-3' / '7.pbdata')
    clips = conv.discover_clips(str(tmp_path / 'dl'))
    assert [c.video_id for c in clips] == ['bottle_batch-3_7']


def test_split_videos():
    ids = [f'v{i}' for i in range(10)]
    s = conv.split_videos(ids, (0.8, 0.1, 0.1), seed=0)
    assert [len(s[n]) for n in conv.SPLITS] == [8, 1, 1]
    assert conv.split_videos(ids, (0.8, 0.1, 0.1), seed=0) == s
    assert conv.split_videos(ids[:3], (0.9, 0.05, 0.05)) and \
        [len(v) for v in conv.split_videos(ids[:3], (0.9, 0.05, 0.05)).values()] == [1, 1, 1]
    explicit = conv.split_videos(ids, dict(train=ids[:5], val=ids[5:7], test=ids[7:]))
    assert explicit['val'] == ['v5', 'v6']
    with pytest.raises(ValueError, match='in two splits'):
        conv.split_videos(ids, dict(train=ids[:5], test=ids[4:]))
    with pytest.raises(ValueError, match='not converted'):
        conv.split_videos(ids, dict(train=['nope']))


def _tool():
    spec = importlib.util.spec_from_file_location(
        'objectron_to_multivideo',
        osp.join(ROOT, 'tools', 'dataset_converters', 'objectron_to_multivideo.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli(tmp_path, capsys):
    tool = _tool()
    argv = [
        '--synthetic', '3', '--synthetic-frames', '3', '--out-dir',
        str(tmp_path / 'out'), '--no-progress'
    ]
    tool.main(argv)
    assert 'converted 3 clip(s)' in capsys.readouterr().out
    tool.main(argv)
    assert 'skipped 3 already converted' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: tool.main([str(tmp_path / 'missing'), '--out-dir', str(tmp_path)]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'Clip source not found' in err
