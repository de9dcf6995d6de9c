"""video → bottle_data converter (library + CLI)."""
import importlib.util
import json
import os
import os.path as osp

import numpy as np
import pytest
from pycocotools.coco import COCO

from keypose_ext.dataset_converters.bottle_video_converter import convert_video_to_bottle_data
from keypose_ext.datasets.bottle_metainfo import BOX_EDGES
from keypose_ext.testing.synthetic_bottle import (render_synthetic_bottle_video,
                                                  write_json_annotations,
                                                  write_objectron_annotations)
from keypose_ext.utils.errors import KeyposeUserError, UserValueError

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
NUM_FRAMES = 10


@pytest.fixture(scope='module')
def source(tmp_path_factory):
    """A 10-frame video with JSON and Objectron annotations."""
    tmp = tmp_path_factory.mktemp('src')
    video = str(tmp / 'bottle.mp4')
    gt = render_synthetic_bottle_video(video, NUM_FRAMES, (96, 64), seed=2)
    ann = write_json_annotations(str(tmp / 'bottle.json'), gt)
    pbdata = write_objectron_annotations(str(tmp / 'annotation.pbdata'), gt)
    return dict(video=video, json=ann, pbdata=pbdata, gt=gt, dir=tmp)


def _edit_json(source, tmp_path, edit):
    data = json.load(open(source['json']))
    edit(data)
    path = tmp_path / 'edited.json'
    path.write_text(json.dumps(data))
    return str(path)


def _cli():
    spec = importlib.util.spec_from_file_location(
        'video_to_bottle_data', osp.join(ROOT, 'tools/dataset_converters/video_to_bottle_data.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return _Cli(module)


class _Cli:
    """The tool as its ``__main__`` runs it (under ``run_main``): ``main`` returns the exit
    status instead of exiting."""

    def __init__(self, module):
        self.module = module

    def main(self, argv):
        from keypose_ext.utils.cli import run_main
        with pytest.raises(SystemExit) as exc:
            run_main(lambda: self.module.main(argv))
        return exc.value.code


def test_coco_output_readable_by_pycocotools(source, tmp_path):
    out = tmp_path / 'bottle_data'
    summary = convert_video_to_bottle_data(
        source['video'], source['json'], str(out), progress=False)
    assert summary['num_images'] == NUM_FRAMES
    coco = COCO(str(out / 'annotations.json'))
    cat = coco.loadCats([1])[0]
    assert cat['name'] == 'bottle' and len(cat['keypoints']) == 9
    # COCO skeletons are 1-based; keypoint 0 (the centre) has no edge.
    assert cat['skeleton'] == [[a + 1, b + 1] for a, b in BOX_EDGES]
    img = coco.loadImgs([1])[0]
    assert (img['width'], img['height'], img['frame_index']) == (96, 64, 0)
    assert osp.isfile(out / 'images' / img['file_name'])
    for ann, frame in zip(coco.loadAnns(coco.getAnnIds()), source['gt']['frames']):
        kpt = np.array(ann['keypoints']).reshape(9, 3)
        np.testing.assert_allclose(kpt[:, :2], frame['keypoints'], atol=1e-3)
        np.testing.assert_allclose(ann['keypoints_depth'], frame['depth'], atol=1e-5)
        assert ann['num_keypoints'] == int((kpt[:, 2] > 0).sum())
        x, y, w, h = ann['bbox']
        assert x >= 0 and y >= 0 and x + w <= 96 + 1e-6 and y + h <= 64 + 1e-6
        assert ann['area'] == pytest.approx(w * h, rel=1e-3)
    # No temporary directory is left next to the output.
    assert sorted(os.listdir(tmp_path)) == ['bottle_data']


def test_objectron_input_gives_the_same_keypoints(source, tmp_path):
    convert_video_to_bottle_data(
        source['video'], source['json'], str(tmp_path / 'a'), progress=False)
    convert_video_to_bottle_data(
        source['video'], source['pbdata'], str(tmp_path / 'b'), progress=False)
    a = json.load(open(tmp_path / 'a' / 'annotations.json'))
    b = json.load(open(tmp_path / 'b' / 'annotations.json'))
    assert b['info']['annotation_format'] == 'objectron'
    np.testing.assert_allclose([x['keypoints'] for x in a['annotations']],
                               [x['keypoints'] for x in b['annotations']],
                               atol=1e-3)


def test_stride_start_max_frames(source, tmp_path):
    out = tmp_path / 'sub'
    convert_video_to_bottle_data(
        source['video'], source['json'], str(out), stride=3, start=1, max_frames=2, progress=False)
    data = json.load(open(out / 'annotations.json'))
    assert [i['frame_index'] for i in data['images']] == [1, 4]
    assert sorted(os.listdir(out / 'images')) == ['000001.jpg', '000004.jpg']
    kpt = np.array(data['annotations'][1]['keypoints']).reshape(9, 3)
    np.testing.assert_allclose(kpt[:, :2], source['gt']['frames'][4]['keypoints'], atol=1e-3)
    assert data['info']['video_frame_count'] == NUM_FRAMES


def test_keypoint_outside_the_frame_is_labelled_not_visible(source, tmp_path):

    def edit(data):
        data['frames'][0]['keypoints'][3][0] = -5.0

    ann = _edit_json(source, tmp_path, edit)
    convert_video_to_bottle_data(source['video'], ann, str(tmp_path / 'o'), progress=False)
    first = json.load(open(tmp_path / 'o' / 'annotations.json'))
    flags = first['annotations'][0]['keypoints'][2::3]
    assert flags[3] == 1 and flags.count(2) == 8
    assert first['annotations'][0]['bbox'][0] == 0  # clipped to the frame


@pytest.mark.parametrize('drop', [1, -1])
def test_frame_count_mismatch_names_both_counts_and_files(source, tmp_path, drop):

    def edit(data):
        if drop > 0:
            data['frames'].pop()
        else:
            extra = dict(data['frames'][-1], frame_index=NUM_FRAMES)
            data['frames'].append(extra)

    ann = _edit_json(source, tmp_path, edit)
    n_ann = NUM_FRAMES - drop
    with pytest.raises(ValueError) as err:
        convert_video_to_bottle_data(source['video'], ann, str(tmp_path / 'out'), progress=False)
    msg = str(err.value)
    assert f'annotates {n_ann} frames' in msg and 'edited.json' in msg
    assert 'bottle.mp4' in msg and str(NUM_FRAMES) in msg
    assert not (tmp_path / 'out').exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith('.out')] == []


def test_eight_keypoints_and_nan_depth(source, tmp_path):

    def eight(data):
        data['frames'][2]['keypoints'] = data['frames'][2]['keypoints'][:8]

    with pytest.raises(ValueError, match=r'frames\[2\].*\[8, 3\].*9'):
        convert_video_to_bottle_data(source['video'], _edit_json(source, tmp_path, eight),
                                     str(tmp_path / 'o'))

    def nan(data):
        data['frames'][4]['keypoints'][0][2] = float('nan')

    with pytest.raises(ValueError, match=r'frames\[4\].*NaN'):
        convert_video_to_bottle_data(source['video'], _edit_json(source, tmp_path, nan),
                                     str(tmp_path / 'o'))


def test_missing_inputs_and_bad_formats(source, tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.mp4'):
        convert_video_to_bottle_data(
            str(tmp_path / 'missing.mp4'), source['json'], str(tmp_path / 'o'))
    with pytest.raises(FileNotFoundError, match='nope.json'):
        convert_video_to_bottle_data(source['video'], str(tmp_path / 'nope.json'),
                                     str(tmp_path / 'o'))
    bad = tmp_path / 'bad.json'
    bad.write_text('{"frames": [\n  {"frame_index": 0,,}\n]}')
    with pytest.raises(ValueError, match='bad.json: malformed JSON at line 2'):
        convert_video_to_bottle_data(source['video'], str(bad), str(tmp_path / 'o'))
    odd = tmp_path / 'ann.txt'
    odd.write_text('x')
    with pytest.raises(ValueError, match='--format'):
        convert_video_to_bottle_data(source['video'], str(odd), str(tmp_path / 'o'))
    not_video = tmp_path / 'notvideo.mp4'
    not_video.write_bytes(b'\x00' * 100)
    with pytest.raises(ValueError, match='notvideo.mp4'):
        convert_video_to_bottle_data(str(not_video), source['json'], str(tmp_path / 'o'))


def test_existing_output_needs_overwrite(source, tmp_path):
    out = tmp_path / 'bd'
    out.mkdir()
    (out / 'keep.txt').write_text('old')
    with pytest.raises(UserValueError, match='--overwrite'):
        convert_video_to_bottle_data(source['video'], source['json'], str(out))
    assert (out / 'keep.txt').is_file()
    convert_video_to_bottle_data(
        source['video'], source['json'], str(out), overwrite=True, progress=False)
    assert not (out / 'keep.txt').exists()
    assert (out / 'annotations.json').is_file()
    assert sorted(os.listdir(tmp_path)) == ['bd']


def test_cli(source, tmp_path, capsys):
    cli = _cli()
    out = tmp_path / 'cli_out'
    rc = cli.main([
        source['video'], '--annotations', source['pbdata'], '--out-dir',
        str(out), '--stride', '5', '--no-progress'
    ])
    assert rc == 0
    assert 'Wrote 2 frames (of 10)' in capsys.readouterr().out
    rc = cli.main([
        str(tmp_path / 'gone.mov'), '--annotations', source['json'], '--out-dir',
        str(tmp_path / 'x')
    ])
    assert rc == 2
    err = capsys.readouterr().err
    assert 'gone.mov' in err and 'Traceback' not in err


def _one_line_error(capsys, rc):
    assert rc == 2
    err = capsys.readouterr().err
    assert 'Traceback' not in err and err.startswith('error: ')
    assert len(err.strip().splitlines()) == 1, err
    return err.splitlines()[0]


def test_out_dir_that_is_a_file_is_refused(source, tmp_path, capsys):
    target = tmp_path / 'bottle_data'
    target.write_text('my notes')
    for overwrite in (False, True):
        with pytest.raises(UserValueError, match='is an existing file'):
            convert_video_to_bottle_data(
                source['video'], source['json'], str(target), overwrite=overwrite)
    assert target.read_text() == 'my notes'
    assert sorted(os.listdir(tmp_path)) == ['bottle_data']
    line = _one_line_error(
        capsys,
        _cli().main([
            source['video'], '--annotations', source['json'], '--out-dir',
            str(target), '--overwrite', '--no-progress'
        ]))
    assert str(target) in line and 'existing file' in line
    (tmp_path / 'parent_file').write_text('x')
    with pytest.raises(UserValueError, match='parent'):
        convert_video_to_bottle_data(source['video'], source['json'],
                                     str(tmp_path / 'parent_file' / 'out'))


def test_negative_depth_is_refused_naming_frame_and_keypoint(source, tmp_path):

    def edit(data):
        data['frames'][3]['keypoints'][5][2] = -0.4

    with pytest.raises(
            UserValueError,
            match=r'frames\[3\].*keypoint 5 \(corner_pnn\).*-0.4'
            r'.*cannot be negative'):
        convert_video_to_bottle_data(source['video'], _edit_json(source, tmp_path, edit),
                                     str(tmp_path / 'o'))
    gt = dict(source['gt'])
    frames = [dict(f) for f in gt['frames']]
    frames[2]['depth'] = frames[2]['depth'].copy()
    frames[2]['depth'][1] = -0.1
    gt['frames'] = frames
    pbdata = write_objectron_annotations(str(tmp_path / 'neg.pbdata'), gt)
    with pytest.raises(
            UserValueError, match=r'neg.pbdata: frame_id 2: point_2d.depth of '
            r'keypoint 1'):
        convert_video_to_bottle_data(source['video'], pbdata, str(tmp_path / 'o'))
    assert not (tmp_path / 'o').exists()


def test_bad_pbdata_and_bad_video_are_one_line(source, tmp_path, capsys):
    bad = tmp_path / 'annotation.pbdata'
    bad.write_bytes(os.urandom(512))
    line = _one_line_error(
        capsys,
        _cli().main([
            source['video'], '--annotations',
            str(bad), '--out-dir',
            str(tmp_path / 'o'), '--no-progress'
        ]))
    assert 'annotation.pbdata' in line
    video = tmp_path / 'clip.mov'
    video.write_bytes(os.urandom(4096))
    line = _one_line_error(
        capsys,
        _cli().main([
            str(video), '--annotations', source['json'], '--out-dir',
            str(tmp_path / 'o'), '--no-progress'
        ]))
    assert 'clip.mov' in line and 'OpenCV cannot open' in line
    assert not (tmp_path / 'o').exists()


def test_output_has_usual_permissions(source, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / 'perm'
        convert_video_to_bottle_data(source['video'], source['json'], str(out), progress=False)
        convert_video_to_bottle_data(
            source['video'], source['json'], str(out), overwrite=True, progress=False)
    finally:
        os.umask(old)
    mode = lambda p: oct(os.stat(p).st_mode & 0o777)  # noqa: E731
    assert mode(out) == mode(out / 'images') == '0o755'
    assert mode(out / 'annotations.json') == '0o644'
    assert {mode(p) for p in (out / 'images').iterdir()} == {'0o644'}


def test_user_errors_have_the_project_types(source, tmp_path):
    with pytest.raises(KeyposeUserError):
        convert_video_to_bottle_data(
            str(tmp_path / 'missing.mp4'), source['json'], str(tmp_path / 'o'))
    with pytest.raises(KeyposeUserError):
        convert_video_to_bottle_data(source['video'], source['json'], str(tmp_path / 'o'), stride=0)
