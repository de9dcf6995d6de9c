"""BottleVideoDataset: parsing, bbox modes, frame cache, GPU cache, errors."""
import json
import multiprocessing as mp
import os
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmpose.registry import DATASETS
from torch.utils.data import DataLoader

from keypose_ext.datasets.bottle_metainfo import (BOTTLE_METAINFO, BOX_CORNER_SIGNS, BOX_EDGES,
                                                  KEYPOINT_NAMES, NUM_KEYPOINTS)
from keypose_ext.datasets.bottle_video_dataset import recommended_num_workers
from keypose_ext.testing.synthetic_bottle import make_bottle_dataset
from keypose_ext.utils.errors import UserRuntimeError, UserValueError

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
NUM_FRAMES = 12
INPUT = (64, 64)
CODEC = dict(type='DepthKeypointCodec', input_size=INPUT, depth_scale=1.0)
PIPELINE = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=1.0),
    dict(type='TopdownAffine', input_size=INPUT),
    dict(type='GenerateTarget', encoder=CODEC),
    dict(type='PackDepthPoseInputs'),
]


@pytest.fixture(scope='module')
def master(tmp_path_factory):
    root = tmp_path_factory.mktemp('bottle') / 'bottle_data'
    make_bottle_dataset(str(root), num_frames=NUM_FRAMES, size=(96, 64))
    return root


@pytest.fixture
def data_root(master, tmp_path):
    """A private copy, free to damage."""
    root = tmp_path / 'bottle_data'
    shutil.copytree(master, root, ignore=shutil.ignore_patterns('.cache'))
    return root


def _build(root, **kwargs):
    cfg = dict(type='BottleVideoDataset', data_root=str(root))
    cfg.setdefault('pipeline', PIPELINE)
    cfg.update(kwargs)
    return DATASETS.build(cfg)


def _edit_annotations(root, edit):
    path = root / 'annotations.json'
    data = json.load(open(path))
    edit(data)
    path.write_text(json.dumps(data))


def test_parsed_sample_and_metainfo(master):
    ds = _build(master, pipeline=[])
    assert len(ds) == NUM_FRAMES
    meta = ds.metainfo
    assert meta['num_keypoints'] == 9
    assert meta['flip_indices'] == list(range(9))
    assert [tuple(link) for link in meta['skeleton_links']] == list(BOX_EDGES)
    ann = json.load(open(master / 'annotations.json'))['annotations'][5]
    info = ds.get_data_info(5)
    assert info['keypoints_depth'].dtype == np.float32
    assert info['keypoints_depth'].shape == (1, 9)
    np.testing.assert_allclose(info['keypoints_depth'][0], ann['keypoints_depth'])
    np.testing.assert_allclose(
        info['keypoints'][0], np.array(ann['keypoints']).reshape(9, 3)[:, :2], atol=1e-4)
    assert info['keypoints_3d'].shape == (1, 9, 3)
    assert info['frame_index'] == 5
    # bbox_mode='frame': the whole frame, not the clipped W-1/H-1 box.
    np.testing.assert_array_equal(info['bbox'], [[0, 0, 96, 64]])
    assert 'img' not in info  # no cache: LoadImage reads the file


def test_annotation_bbox_mode(master):
    ds = _build(master, pipeline=[], bbox_mode='annotation')
    x, y, w, h = json.load(open(master / 'annotations.json'))['annotations'][0]['bbox']
    np.testing.assert_allclose(ds.get_data_info(0)['bbox'], [[x, y, x + w, y + h]], atol=1e-3)
    with pytest.raises(ValueError, match='bbox_mode'):
        _build(master, bbox_mode='crop')


def test_full_pipeline_packs_targets_and_depth(master):
    ds = _build(master)
    sample = ds[3]
    assert sample['inputs'].shape == (3, 64, 64)
    ds_ = sample['data_samples']
    assert ds_.gt_instances.keypoints_depth.shape == (1, 9)
    labels = ds_.gt_instance_labels.keypoint_labels
    assert labels.shape == (1, 9, 3)
    # The label's depth channel is the annotated depth (depth_scale=1).
    np.testing.assert_allclose(
        labels[0, :, 2].numpy(), ds_.gt_instances.keypoints_depth[0], atol=1e-5)


def test_cache_decodes_each_frame_once_and_matches_files(data_root):
    plain = _build(data_root)
    cached = _build(data_root, cache=True)
    assert cached.num_decoded == NUM_FRAMES
    cache_files = os.listdir(data_root / '.cache')
    assert len(cache_files) == 1 and cache_files[0].endswith('.npy')
    info = cached.get_data_info(2)
    assert info['img'].shape == (64, 96, 3) and info['img'].flags.writeable
    for i in (0, 7):
        assert torch.equal(plain[i]['inputs'], cached[i]['inputs'])

    # Another instance (another rank, a later run) reuses the file.
    again = _build(data_root, cache=True)
    assert again.num_decoded == 0

    # Workers read the shared map only: with the frames gone from disk,
    # a multi-worker epoch still yields every sample.
    shutil.rmtree(data_root / 'images')
    loader = DataLoader(cached, batch_size=4, num_workers=2, collate_fn=pseudo_collate)
    seen = [s.metainfo['id'] for b in loader for s in b['data_samples']]
    assert sorted(seen) == list(range(1, NUM_FRAMES + 1))
    assert cached.num_decoded == NUM_FRAMES


def test_cache_is_rebuilt_when_a_frame_changes(data_root):
    _build(data_root, cache=True, pipeline=[])
    img_path = data_root / 'images' / '000003.jpg'
    img = cv2.imread(str(img_path))
    cv2.imwrite(str(img_path), 255 - img)
    ds = _build(data_root, cache=True, pipeline=[])
    assert ds.num_decoded == NUM_FRAMES
    np.testing.assert_array_equal(ds.get_data_info(3)['img'], cv2.imread(str(img_path)))
    assert len(os.listdir(data_root / '.cache')) == 2


def test_frames_of_different_sizes_are_padded_in_the_cache(data_root):
    small = data_root / 'images' / '000001.jpg'
    img = cv2.resize(cv2.imread(str(small)), (48, 40))
    cv2.imwrite(str(small), img)

    def edit(data):
        data['images'][1].update(width=48, height=40)

    _edit_annotations(data_root, edit)
    cache_dir = data_root.parent / 'elsewhere'
    ds = _build(data_root, cache=True, cache_dir=str(cache_dir), pipeline=[])
    (npy, ) = os.listdir(cache_dir)
    shape = np.load(cache_dir / npy, mmap_mode='r').shape
    assert shape == (NUM_FRAMES, 64, 96, 3)
    info = ds.get_data_info(1)
    assert info['img_shape'] == (40, 48)
    np.testing.assert_array_equal(info['img'], cv2.imread(str(small)))
    assert ds.get_data_info(2)['img'].shape == (64, 96, 3)


def test_frame_size_disagreeing_with_annotation(data_root):

    def edit(data):
        data['images'][4]['width'] = 100

    _edit_annotations(data_root, edit)
    with pytest.raises(ValueError, match=r'000004.jpg.*96x64.*100x64'):
        _build(data_root, cache=True, pipeline=[])


def _ddp_worker(rank, init_file, root, cache_dir, queue):
    import torch.distributed as dist
    from mmengine.registry import init_default_scope

    import keypose_ext  # noqa: F401
    init_default_scope('mmpose')
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    try:
        ds = DATASETS.build(
            dict(
                type='BottleVideoDataset',
                data_root=root,
                cache=True,
                cache_dir=cache_dir,
                pipeline=[]))
        queue.put(
            (rank, ds.num_decoded, ds._frame_cache.path, int(ds.get_data_info(3)['img'].sum())))
    finally:
        dist.destroy_process_group()


def test_ddp_rank0_decodes_and_other_ranks_wait(data_root, tmp_path):
    ctx = mp.get_context('fork')
    queue = ctx.Queue()
    procs = [
        ctx.Process(
            target=_ddp_worker,
            args=(r, str(tmp_path / 'init'), str(data_root), str(tmp_path / 'cache'), queue))
        for r in range(2)
    ]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    assert [r[1] for r in results] == [NUM_FRAMES, 0]
    assert results[0][2] == results[1][2]
    assert results[0][3] == results[1][3]
    assert len(os.listdir(tmp_path / 'cache')) == 1  # no tmp file left


def test_metainfo_is_derived_from_the_corner_signs():
    assert NUM_KEYPOINTS == len(BOTTLE_METAINFO['keypoint_info']) == 9
    assert len(BOTTLE_METAINFO['joint_weights']) == NUM_KEYPOINTS
    assert len(BOTTLE_METAINFO['sigmas']) == NUM_KEYPOINTS
    assert KEYPOINT_NAMES[0] == 'center' and KEYPOINT_NAMES[5] == 'corner_pnn'
    signs = np.asarray(BOX_CORNER_SIGNS)
    assert len(BOX_EDGES) == 12
    for a, b in BOX_EDGES:  # an edge joins corners that differ in one sign
        assert a > 0 and (signs[a] != signs[b]).sum() == 1
    links = [info['link'] for info in BOTTLE_METAINFO['skeleton_info'].values()]
    assert links == [(KEYPOINT_NAMES[a], KEYPOINT_NAMES[b]) for a, b in BOX_EDGES]


def test_cache_device_cpu_runs_the_pipeline_once(master):
    ds = _build(master, cache=True, cache_device='cpu')
    first = ds[4]
    second = ds[4]
    assert second['inputs'] is first['inputs']
    assert second['data_samples'] is not first['data_samples']
    np.testing.assert_array_equal(second['data_samples'].gt_instances.keypoints_depth,
                                  first['data_samples'].gt_instances.keypoints_depth)
    assert torch.equal(first['inputs'], _build(master)[4]['inputs'])


def test_cache_device_refuses_random_pipelines_and_workers(master, monkeypatch):
    random_pipeline = PIPELINE[:1] + [dict(type='RandomFlip')] + PIPELINE[1:]
    with pytest.raises(ValueError, match='RandomFlip'):
        _build(master, cache_device='cpu', pipeline=random_pipeline)
    ds = _build(master, cache_device='cpu')
    # Inside a dataloader worker torch reports worker info. (Patched rather
    # than spawning a worker: torch takes 5 s to reap a failed worker.)
    monkeypatch.setattr(torch.utils.data, 'get_worker_info', lambda: object())
    with pytest.raises(RuntimeError, match='num_workers=0'):
        ds[0]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cache_device_cuda(master):
    ds = _build(master, cache=True, cache_device='cuda')
    batch = pseudo_collate([ds[i] for i in range(4)])
    assert all(x.is_cuda for x in batch['inputs'])
    assert ds[0]['inputs'] is ds[0]['inputs']
    assert torch.equal(ds[1]['inputs'].cpu(), _build(master)[1]['inputs'])


# ---------------------------------------------------------------- errors
def test_missing_annotation_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='annotations.json'):
        _build(tmp_path)


def test_malformed_json_names_file_and_line(data_root):
    (data_root / 'annotations.json').write_text('{\n"images": [,]\n}')
    with pytest.raises(ValueError, match=r'annotations.json: malformed JSON at line 2'):
        _build(data_root)


def test_missing_image_is_named_at_init(data_root):
    os.remove(data_root / 'images' / '000006.jpg')
    with pytest.raises(FileNotFoundError, match='000006.jpg'):
        _build(data_root)


@pytest.mark.parametrize('content', [b'', b'random'])
@pytest.mark.parametrize('cache', [True, False])
def test_empty_or_random_frame_is_one_user_error(data_root, content, cache):
    """Not an OpenCV/mmcv assertion: one error naming the file, at build time
    with the frame cache, on first use without it."""
    if content:
        content = np.random.default_rng(0).bytes(3000)
    (data_root / 'images' / '000002.jpg').write_bytes(content)
    what = 'is empty' if not content else 'Cannot decode'
    with pytest.raises(UserValueError, match='000002.jpg') as err:
        ds = _build(data_root, cache=cache)
        ds[1]  # fine
        ds[2]
    assert what in str(err.value)
    # One error: no chained OpenCV/mmcv exception printed above it.
    assert err.value.__suppress_context__ or err.value.__context__ is None


def test_frame_deleted_after_build_is_named(data_root):
    ds = _build(data_root)
    os.remove(data_root / 'images' / '000004.jpg')
    with pytest.raises(FileNotFoundError, match="000004.jpg' is gone") as err:
        ds[4]
    assert err.value.__suppress_context__


def test_negative_depth_is_refused_naming_the_field(data_root):

    def edit(data):
        data['annotations'][4]['keypoints_depth'][3] = -0.25

    _edit_annotations(data_root, edit)
    with pytest.raises(
            UserValueError,
            match=r'annotation id 5: "keypoints_depth"\[3\] '
            r'\(corner_npn\) is -0.25.*cannot be negative'):
        _build(data_root)


def test_codec_for_another_keypoint_count_is_refused_at_build(master):
    codec = dict(CODEC, num_keypoints=8)
    pipeline = PIPELINE[:3] + [dict(type='GenerateTarget', encoder=codec)]
    with pytest.raises(UserValueError, match='num_keypoints=8.*9 keypoints'):
        _build(master, pipeline=pipeline, cache=True)
    _build(
        master,
        pipeline=PIPELINE[:3] + [dict(type='GenerateTarget', encoder=dict(CODEC, num_keypoints=9))])


def _refuse_writes_under(monkeypatch, root):
    """As a read-only data root would (tests run as root, so chmod cannot)."""
    real = os.makedirs

    def makedirs(path, *args, **kwargs):
        if str(path).startswith(str(root)):
            raise PermissionError(13, 'Permission denied', str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, 'makedirs', makedirs)


def test_read_only_data_root_falls_back_to_the_user_cache(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    _refuse_writes_under(monkeypatch, data_root)
    ds = _build(data_root, cache=True, pipeline=[])
    assert ds.num_decoded == NUM_FRAMES
    assert ds._frame_cache.path.startswith(str(tmp_path / 'xdg' / 'keypose_ext' / 'bottle_frames'))
    assert not (data_root / '.cache').exists()
    assert _build(data_root, cache=True, pipeline=[]).num_decoded == 0


def test_unwritable_cache_dir_is_one_line_naming_folder_and_fix(data_root, tmp_path, monkeypatch):
    _refuse_writes_under(monkeypatch, data_root)
    with pytest.raises(UserRuntimeError) as err:
        _build(data_root, cache=True, cache_dir=str(data_root / 'c'))
    msg = str(err.value)
    assert str(data_root / 'c') in msg and 'Permission denied' in msg
    assert 'set cache_dir to a writable folder' in msg and '\n' not in msg
    # Neither the data root nor the user cache can be written.
    monkeypatch.setenv('XDG_CACHE_HOME', str(data_root / 'xdg'))
    with pytest.raises(UserRuntimeError, match=r'\.cache.*or.*xdg'):
        _build(data_root, cache=True)


@pytest.mark.skipif(os.geteuid() == 0, reason='root can write read-only dirs')
def test_read_only_data_root_for_real(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    os.chmod(data_root, 0o555)
    try:
        ds = _build(data_root, cache=True, pipeline=[])
    finally:
        os.chmod(data_root, 0o755)
    assert str(tmp_path / 'xdg') in ds._frame_cache.path


def test_frame_cache_file_is_complete_and_readable_by_others(data_root):
    old = os.umask(0o022)
    try:
        ds = _build(data_root, cache=True, pipeline=[])
    finally:
        os.umask(old)
    path = ds._frame_cache.path
    assert oct(os.stat(path).st_mode & 0o777) == '0o644'
    assert os.listdir(osp.dirname(path)) == [osp.basename(path)]
    frames = np.load(path)
    for i in (0, 5):
        img = cv2.imread(str(data_root / 'images' / f'{i:06d}.jpg'))
        np.testing.assert_array_equal(frames[i], img)


def test_output_cache_is_automatic_for_deterministic_pipelines(master):
    ds = _build(master, cache=True)
    assert ds.outputs_cached
    first, second = ds[3], ds[3]
    assert second['inputs'] is first['inputs']
    assert torch.equal(first['inputs'], _build(master)[3]['inputs'])
    assert not _build(master).outputs_cached  # cache=False
    assert not _build(master, cache=True, cache_outputs=False).outputs_cached
    random_pipeline = PIPELINE[:1] + [dict(type='RandomFlip')] + PIPELINE[1:]
    assert not _build(master, cache=True, pipeline=random_pipeline).outputs_cached
    with pytest.raises(UserValueError, match='cache_outputs=True.*RandomFlip'):
        _build(master, cache=True, cache_outputs=True, pipeline=random_pipeline)
    # Unlike cache_device, the CPU output cache works inside workers too.
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=pseudo_collate)
    assert sum(len(b['inputs']) for b in loader) == NUM_FRAMES


def test_recommended_num_workers():
    assert recommended_num_workers(True, True, cpu_count=64) == 0
    assert recommended_num_workers(True, False, cpu_count=2) == 1
    assert recommended_num_workers(True, False, cpu_count=64) == 4
    assert recommended_num_workers(False, False, cpu_count=64) == 8
    assert recommended_num_workers(False, False, cpu_count=1) == 0
    assert recommended_num_workers(False, False) >= 0


def test_eight_keypoints_name_annotation_and_nine(data_root):

    def edit(data):
        data['annotations'][3]['keypoints'] = data['annotations'][3]['keypoints'][:24]

    _edit_annotations(data_root, edit)
    with pytest.raises(
            ValueError, match=r'annotation id 4: "keypoints" has 8 keypoints'
            r'.*expected 9'):
        _build(data_root)


@pytest.mark.parametrize('bad', [float('nan'), float('inf')])
def test_non_finite_depth_names_annotation(data_root, bad):

    def edit(data):
        data['annotations'][6]['keypoints_depth'][2] = bad

    _edit_annotations(data_root, edit)
    with pytest.raises(
            ValueError, match=r'annotation id 7: "keypoints_depth" contains '
            'NaN'):
        _build(data_root)


def test_missing_depth_field(data_root):

    def edit(data):
        del data['annotations'][0]['keypoints_depth']

    _edit_annotations(data_root, edit)
    with pytest.raises(
            ValueError, match='annotation id 1 has no '
            '"keypoints_depth"'):
        _build(data_root)
