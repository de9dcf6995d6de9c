"""MP100InstanceDataset: MP-100 files through MMPose's COCO parsing, skeleton conventions,
instances kept and left out, one-line errors (keypose_ext/datasets/mp100_parsing.py)."""
import json

import numpy as np
import pytest
from mmpose.datasets.datasets.base import BaseCocoStyleDataset
from mmpose.registry import DATASETS

import keypose_ext.datasets.mp100_instance_dataset as mod
from keypose_ext.utils.errors import KeyposeUserError


def _cat(cid, name, k, skeleton=None):
    cat = dict(id=cid, name=name, supercategory='x', keypoints=[f'{name}{i}' for i in range(k)])
    if skeleton is not None:
        cat['skeleton'] = skeleton
    return cat


def _ann(aid, cid, k, image_id=None, bbox=(10, 10, 40, 30), vis=2, **kw):
    kpts = []
    for i in range(k):
        kpts += [0, 0, 0] if vis == 0 else [12.0 + 3 * i, 14.0 + 2 * i, vis]
    return dict(
        id=aid,
        image_id=aid if image_id is None else image_id,
        category_id=cid,
        bbox=list(bbox),
        keypoints=kpts,
        iscrowd=0,
        **kw)


def _write(path, categories, annotations, images=None):
    images = images or [
        dict(id=a['image_id'], file_name=f'c/{a["image_id"]}.jpg', width=64, height=48)
        for a in annotations
    ]
    path.write_text(json.dumps(dict(images=images, annotations=annotations, categories=categories)))
    return str(path)


def build(ann_file, **kw):
    cfg = dict(
        type='MP100InstanceDataset', ann_file=ann_file, data_root='', check_image_files=False)
    return DATASETS.build(dict(cfg, **kw))


MIXED = [  # (id, name, keypoints, 1-based skeleton, expected 0-based skeleton)
    (1, 'chair', 3, [[1, 2], [2, 3]], [[0, 1], [1, 2]]),
    (2, 'face', 5, [[1, 5], [4, 2]], [[0, 4], [3, 1]]),
    (3, 'dot', 1, [], []),
    (4, 'pen', 2, None, []),  # no skeleton at all
]


def test_a_file_mixing_categories_reads_each_one(tmp_path):
    cats = [_cat(c, n, k, s) for c, n, k, s, _ in MIXED]
    anns = [_ann(10 + c, c, k) for c, _, k, _, _ in MIXED]
    ds = build(_write(tmp_path / 'mixed.json', cats, anns))
    meta = ds.metainfo['categories']
    assert list(meta) == [1, 2, 3, 4]
    for (cid, name, k, _, skeleton0), i in zip(MIXED, range(len(ds))):
        assert meta[cid]['name'] == name and len(meta[cid]['keypoints']) == k
        assert meta[cid]['skeleton'] == skeleton0
        info = ds.get_data_info(i)
        assert info['category_id'] == cid and info['id'] == 10 + cid
        assert info['keypoints'].shape == (1, k, 2) and info['keypoints_visible'].shape == (1, k)
        assert info['flip_indices'] == list(range(k))  # one keypoint order, no swaps
        assert info['dataset_name'] == 'mp100'
    table = ds.instance_table()
    assert table['category_id'].tolist() == [1, 2, 3, 4]
    assert table['num_labelled'].tolist() == [3, 5, 1, 2]


def test_zero_based_files_are_read_as_given(tmp_path):
    # PoseAnything's files: 0-based. 'face' never uses index 0, 'chair' does.
    cats = [_cat(1, 'chair', 3, [[0, 1], [1, 2]]), _cat(2, 'face', 5, [[1, 2], [4, 3]])]
    anns = [_ann(1, 1, 3), _ann(2, 2, 5)]
    ds = build(_write(tmp_path / 'zero.json', cats, anns))
    assert ds.metainfo['categories'][2]['skeleton'] == [[1, 2], [4, 3]]
    # the same pairs, declared 1-based
    one = build(_write(tmp_path / 'one.json', cats[1:], anns[1:]), skeleton_index_base=1)
    assert one.metainfo['categories'][2]['skeleton'] == [[0, 1], [3, 2]]
    auto = build(_write(tmp_path / 'auto.json', cats[1:], anns[1:]))  # no 0 -> COCO 1-based
    assert auto.metainfo['categories'][2]['skeleton'] == [[0, 1], [3, 2]]


@pytest.mark.parametrize('skeleton, base, shown', [
    ([[1, 2], [1, 6]], 'auto', r'skeleton pair \[1, 6\] names keypoint 6, but the category '
     r'has 5 keypoints \(1-based indices 1..5\)'),
    ([[0, 2], [4, 5]], 'auto', r'skeleton pair \[4, 5\] names keypoint 5, .*0-based indices '
     r'0..4'),
    ([[0, 1]], 1, r'skeleton pair \[0, 1\] names keypoint 0'),
])
def test_skeleton_out_of_range_names_category_and_pair(tmp_path, skeleton, base, shown):
    cats = [_cat(1, 'chair', 3, [[1, 2]]), _cat(2, 'face', 5, skeleton)]
    path = _write(tmp_path / 'bad_skeleton.json', cats, [_ann(1, 1, 3), _ann(2, 2, 5)])
    with pytest.raises(
            KeyposeUserError, match=r"bad_skeleton.json: category 2 \('face'\): " + shown):
        build(path, skeleton_index_base=base)


def test_parsing_is_mmposes_and_instances_without_labels_stay(tmp_path, monkeypatch):
    logged = []
    monkeypatch.setattr(mod, 'print_log', lambda msg, **kw: logged.append(msg))
    cats = [_cat(1, 'chair', 3, [[1, 2]])]
    anns = [
        _ann(1, 1, 3, bbox=(50, 40, 30, 30)),  # runs past the 64 x 48 image
        _ann(2, 1, 3, vis=0),  # no labelled keypoint: kept
        _ann(3, 1, 3, bbox=(5, 5, 0.5, 20)),  # under one pixel wide: left out
        dict(_ann(4, 1, 3), iscrowd=1)
    ]  # crowd: left out
    anns[0]['keypoints'][2] = 1  # labelled, occluded: visible for training and PCK
    ds = build(_write(tmp_path / 'f.json', cats, anns))
    assert [ds.get_data_info(i)['id'] for i in range(len(ds))] == [1, 2]
    assert any('chair (id 1): 2' in m for m in logged)
    first = ds.get_data_info(0)
    images = {1: dict(id=1, file_name='c/1.jpg', width=64, height=48, img_path='c/1.jpg')}
    ref = BaseCocoStyleDataset.parse_data_info(ds,
                                               dict(raw_ann_info=anns[0], raw_img_info=images[1]))
    for key in ('bbox', 'keypoints', 'keypoints_visible', 'bbox_score'):
        np.testing.assert_array_equal(first[key], ref[key])
    np.testing.assert_array_equal(first['bbox'], [[50, 40, 63, 47]])  # clipped as MMPose does
    np.testing.assert_array_equal(first['keypoints_visible'], [[1, 1, 1]])
    empty = ds.get_data_info(1)
    assert not empty['keypoints_visible'].any() and empty['keypoints'].shape == (1, 3, 2)
    assert ds.instance_table()['num_labelled'].tolist() == [3, 0]


def _variant(tmp_path, edit, name='variant_train.json'):
    cats = [_cat(1, 'chair', 3, [[1, 2]]), _cat(2, 'face', 5, [])]
    data = dict(
        images=[dict(id=i, file_name=f'c/{i}.jpg', width=64, height=48) for i in (1, 2)],
        annotations=[_ann(1, 1, 3), _ann(2, 2, 5)],
        categories=cats)
    edit(data)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize('edit, message', [
    (lambda d: d['annotations'][1].update(keypoints=[1, 2, 2] * 4),
     r"annotation 2 \(image 2\) has 4 keypoints but its category 2 \('face'\) defines 5"),
    (lambda d: d['annotations'][1].update(category_id=9),
     r'annotation 2 has category_id 9, which is not in "categories" \(known: \[1, 2\]\)'),
    (lambda d: d['annotations'][1].update(image_id=9), 'annotation 2 has image_id 9'),
    (lambda d: d['annotations'][1].pop('bbox'), r'annotation 2 \(image 2\) needs a "bbox"'),
    (lambda d: d['images'][0].pop('width'), r'image entry .* needs "id", "file_name", "width" '
     'and "height"'),
    (lambda d: d['categories'][1].update(keypoints=[]), r"category 2 \('face'\) defines no "
     'keypoints'),
    (lambda d: d['categories'][1].update(id=1), 'category id 1 appears twice'),
    (lambda d: d['categories'][1].update(skeleton=[[1, 2, 3]]),
     r"category 2 \('face'\): \"skeleton\" must be a list of \[i, j\] keypoint index pairs"),
    (lambda d: d.pop('images'), 'a COCO-style MP-100 file needs a list "images"'),
])
def test_bad_files_end_in_one_line(tmp_path, edit, message):
    path = _variant(tmp_path, edit)
    with pytest.raises(KeyposeUserError, match='variant_train.json: ' + message) as err:
        build(path)
    assert '\n' not in str(err.value)


def test_missing_or_malformed_files(tmp_path):
    with pytest.raises(
            FileNotFoundError,
            match=r'MP-100 annotation file not found: .*nope.json'
            '.*make_synthetic_mp100.py'):
        build(str(tmp_path / 'nope.json'))
    bad = tmp_path / 'broken.json'
    bad.write_text('{"images": [')
    with pytest.raises(ValueError, match='broken.json: malformed JSON at line 1'):
        build(str(bad))
    with pytest.raises(ValueError, match="skeleton_index_base must be 'auto', 0 or 1"):
        build(_variant(tmp_path, lambda d: None), skeleton_index_base=2)
    path = _variant(tmp_path, lambda d: None)
    with pytest.raises(
            FileNotFoundError,
            match=r'variant_train.json: 2 image file\(s\) are '
            'missing, e.g. image 1: .*c/1.jpg'):
        build(path, check_image_files=True, data_prefix=dict(img=str(tmp_path)))
