"""MP100EpisodicDataset: categories, episodes as a pure function of (seed, epoch, index),
fixed val/test episodes, queries without labels, debug modes, errors."""
import json
import pickle

import numpy as np
import pytest
from cape_fixtures import AUG_PIPELINE, dataset_cfg, make_data
from mmpose.registry import DATASETS, METRICS

import keypose_ext.datasets.mp100_episodic_dataset as mod
from keypose_ext.utils.errors import KeyposeUserError


@pytest.fixture(scope='module')
def syn(tmp_path_factory):
    root = tmp_path_factory.mktemp('mp100')
    return root, make_data(root)


def build(root, subset='train', **kw):
    return DATASETS.build(dataset_cfg(root, subset, **kw))


def test_episode_items_follow_the_split_file(syn):
    root, summary = syn
    ds = build(
        root,
        category_split_file='category_splits.json',
        num_shots=2,
        num_queries_per_episode=3,
        episodes_per_epoch=4)
    assert ds.category_ids == summary['splits'][1]['train']
    assert len(ds) == 4 * 3
    item = ds[0]
    sample = item['data_samples']
    k = summary['categories'][sample.category_id]['num_keypoints']
    assert item['inputs'].shape == (3, 3, 64, 64)  # query + 2 supports
    assert sample.num_keypoints == k
    assert sample.gt_instances.keypoints.shape == (1, k, 2)
    assert sample.support_transformed_keypoints.shape == (2, k, 2)
    assert sample.support_keypoints_visible.shape == (2, k)
    assert all(max(e) < k for e in sample.skeleton)  # 0-based after loading
    assert sample.img_id not in sample.support_img_ids
    assert ds.metainfo['categories'][sample.category_id]['name'] == \
        summary['categories'][sample.category_id]['name']


def test_categories_come_from_the_json_without_split_file(syn):
    root, summary = syn
    ds = build(root, 'test', num_queries_per_episode=2, episodes_per_category=3)
    assert ds.category_ids == summary['splits'][1]['test']


def test_training_episodes_are_a_pure_function_of_seed_epoch_index(syn):
    root, _ = syn
    kw = dict(num_shots=2, num_queries_per_episode=2, episodes_per_epoch=6, seed=7)
    a, b = build(root, **kw), build(root, **kw)
    n = len(a)
    ep0 = [a.get_episode(i) for i in range(n)]
    ep1 = [a.get_episode(n + i) for i in range(n)]  # epoch 1 carried in the index
    assert ep0 == [b.get_episode(i) for i in range(n)]
    assert ep1 == [pickle.loads(pickle.dumps(b)).get_episode(n + i) for i in range(n)]
    assert [e['support_indices'] for e in ep0] != [e['support_indices'] for e in ep1]
    # the two queries of one episode share its supports and category
    assert ep0[0]['support_indices'] == ep0[1]['support_indices']
    assert ep0[0]['query_index'] != ep0[1]['query_index']
    # set_epoch: fallback for samplers that pass plain indices
    b.set_epoch(1)
    assert [b.get_episode(i) for i in range(n)] == ep1
    other_seed = build(root, **{**kw, 'seed': 8})
    assert [other_seed.get_episode(i) for i in range(n)] != ep0


def test_validation_episodes_are_fixed_per_category(syn):
    root, summary = syn
    kw = dict(num_shots=1, num_queries_per_episode=3, episodes_per_category=4)
    a, b = build(root, 'val', **kw), build(root, 'val', **kw)
    cats = summary['splits'][1]['val']
    assert len(a) == len(cats) * 4 * 3
    eps = [a.get_episode(i) for i in range(len(a))]
    assert eps == [b.get_episode(i) for i in range(len(b))]
    a.set_epoch(5)  # no effect in test mode
    assert eps == [a.get_episode(i) for i in range(len(a))]
    for e in eps:
        assert e['query_index'] not in e['support_indices']
    with pytest.raises(IndexError):
        a.get_episode(len(a))


def _write_variant(root, name, edit, subset='train'):
    data = json.load(open(root / f'annotations/mp100_split1_{subset}.json'))
    edit(data)
    path = root / 'annotations' / name
    path.write_text(json.dumps(data))
    return f'annotations/{name}'


def test_too_few_instances_are_reported_by_name(syn, monkeypatch):
    root, summary = syn
    logged = []
    monkeypatch.setattr(mod, 'print_log', lambda msg, **kw: logged.append(msg))
    # 8 images per category: 1 shot + 8 queries needs 9 -> every category skipped
    with pytest.raises(KeyposeUserError, match='no category has the 9 instances an episode'):
        build(root, num_queries_per_episode=8)
    short, unlabelled = summary['splits'][1]['train'][:2]

    def edit(data):  # `short` keeps 2 instances; `unlabelled` keeps 1 with a label
        keep = [a for a in data['annotations'] if a['category_id'] == short][:2]
        data['annotations'] = [a for a in data['annotations'] if a['category_id'] != short]
        for a in [a for a in data['annotations'] if a['category_id'] == unlabelled][1:]:
            a['keypoints'] = [0] * len(a['keypoints'])
        data['annotations'] += keep

    ann = _write_variant(root, 'few_train.json', edit)
    logged.clear()
    ds = build(root, ann_file=ann, num_queries_per_episode=2)
    assert unlabelled in ds.category_ids  # 1 support with a label + 2 queries without
    names = {c: summary['categories'][c]['name'] for c in (short, unlabelled)}
    assert ds.skipped_categories == {short: (names[short], 2)}
    assert any(names[short] in m and 'skipped' in m for m in logged)
    ds = build(root, ann_file=ann, num_shots=2, num_queries_per_episode=1)
    assert set(ds.skipped_categories) == {short, unlabelled}  # 2 shots need 2 labelled


def test_supports_always_have_a_label(syn):
    root, summary = syn
    cat = summary['splits'][1]['train'][3]

    def edit(data):  # 5 of the category's 8 instances lose every label
        for a in [a for a in data['annotations'] if a['category_id'] == cat][3:]:
            a['keypoints'] = [0] * len(a['keypoints'])

    ann = _write_variant(root, 'mostly_unlabelled_train.json', edit)
    ds = build(
        root,
        ann_file=ann,
        debug_overfit_category=cat,
        num_shots=3,
        num_queries_per_episode=4,
        episodes_per_epoch=50)
    has_label = ds._table['num_labelled'] > 0
    for e in (ds.get_episode(4 * ep) for ep in range(50)):
        ids = e['support_indices'] + [
            ds.get_episode(4 * e['episode_index'] + q)['query_index'] for q in range(4)
        ]
        assert has_label[e['support_indices']].all() and len(set(ids)) == 7
    # every instance labelled: the draw is the plain one, N + Q distinct of the category
    plain = build(root, num_shots=2, num_queries_per_episode=3, episodes_per_epoch=3, seed=5)
    rng = np.random.default_rng([5, 0, 1])
    c = plain.category_ids[int(rng.integers(len(plain.category_ids)))]
    pick = plain._pool[c][rng.choice(len(plain._pool[c]), 5, replace=False)]
    assert plain.get_episode(3)['support_indices'] == pick[:2].tolist()
    assert plain.get_episode(4)['query_index'] == pick[3]


def test_a_query_without_labelled_keypoints_is_kept_and_scores_zero(syn):
    root, summary = syn
    cat = summary['splits'][1]['val'][0]

    def edit(data):
        ann = [a for a in data['annotations'] if a['category_id'] == cat][0]
        ann['keypoints'] = [0] * len(ann['keypoints'])
        ann['num_keypoints'] = 0

    ann = _write_variant(root, 'unlabelled_val.json', edit, 'val')
    ds = build(root, 'val', ann_file=ann, num_queries_per_episode=3, episodes_per_category=4)
    empty = [
        i for i in range(len(ds.instance_dataset))
        if not ds.instance_dataset.get_data_info(i)['keypoints_visible'].any()
    ]
    assert len(empty) == 1  # kept, not skipped
    eps = [ds.get_episode(i) for i in range(len(ds))]
    assert all(empty[0] not in e['support_indices'] for e in eps)  # never a support
    pairs = [i for i, e in enumerate(eps) if e['query_index'] == empty[0]]
    assert pairs, 'the unlabelled instance is the query of some pair'
    # the metric (EpisodicPCKMetric) scores that pair 0 even for a perfect prediction
    metric = METRICS.build(dict(type='EpisodicPCKMetric'))
    metric.dataset_meta = ds.metainfo
    info = ds.instance_dataset.get_data_info
    counted = next(i for i, e in enumerate(eps) if i not in pairs and (  # a control pair
        info(e['query_index'])['keypoints_visible'][0] *
        np.prod([info(s)['keypoints_visible'][0] for s in e['support_indices']], 0)).any())
    for i in (pairs[0], counted):
        sample = ds[i]['data_samples']
        assert sample.num_keypoints == summary['categories'][sample.category_id]['num_keypoints']
        sample.pred_instances = sample.gt_instances.clone()
        sample.pred_instances.keypoint_scores = np.ones(sample.gt_instances.keypoints.shape[:2])
        metric.process({}, [sample.to_dict()])
    assert metric.compute_metrics(metric.results)['PCK@0.2'] == pytest.approx(0.5)


def test_bad_input_raises_one_clear_error(syn, tmp_path):
    root, summary = syn

    def bad_count(data):
        data['annotations'][3]['keypoints'] = data['annotations'][3]['keypoints'][:-3]

    ann = _write_variant(root, 'bad_count.json', bad_count)
    bad_id = json.load(open(root / ann))['annotations'][3]['id']
    with pytest.raises(
            KeyposeUserError,
            match=rf'bad_count.json: annotation {bad_id} .*'
            r'keypoints but its category'):
        build(root, ann_file=ann)

    split = tmp_path / 'split.json'
    split.write_text(json.dumps(dict(train=[4, 77], val=[], test=[])))
    with pytest.raises(
            KeyposeUserError,
            match=r'split.json: "train" names categories \[77\] that .* does not '
            'define'):
        build(root, category_split_file=str(split))
    with pytest.raises(
            KeyposeUserError, match=r'split.json: needs a list of category ids '
            'under "val_set"'):
        build(root, category_split_file=str(split), split_key='val_set')
    with pytest.raises(KeyposeUserError, match="cannot tell which list .* split_key='train'"):
        build(
            root,
            ann_file=_write_variant(root, 'no_suffix.json', lambda d: None),
            category_split_file=str(split))

    def empty(data):
        cid = data['categories'][0]['id']
        data['annotations'] = [a for a in data['annotations'] if a['category_id'] != cid]

    ann = _write_variant(root, 'empty_cat_train.json', empty)
    cid = json.load(open(root / ann))['categories'][0]['id']
    split.write_text(json.dumps(dict(train=summary['splits'][1]['train'])))
    with pytest.raises(
            KeyposeUserError,
            match=rf'empty_cat_train.json: categories '
            rf'\[\({cid}, .*empty category'):
        build(root, ann_file=ann, category_split_file=str(split))

    def missing_img(data):
        data['images'][0]['file_name'] = 'nowhere/ghost.jpg'

    ann = _write_variant(root, 'missing_img.json', missing_img)
    with pytest.raises(
            FileNotFoundError, match='missing_img.json: 1 image file.*'
            'ghost.jpg'):
        build(root, ann_file=ann)

    with pytest.raises(FileNotFoundError, match='annotation file'):
        build(root, ann_file='annotations/nope.json')

    def bad_skeleton(data):
        data['categories'][0]['skeleton'] = [[1, 99]]

    ann = _write_variant(root, 'bad_skeleton.json', bad_skeleton)
    name = json.load(open(root / ann))['categories'][0]['name']
    with pytest.raises(
            KeyposeUserError,
            match=rf"bad_skeleton.json: category \d+ \('{name}'\):"
            r' skeleton pair \[1, 99\] names keypoint 99'):
        build(root, ann_file=ann)
    with pytest.raises(KeyposeUserError, match='num_shots must be an integer >= 1, got 0'):
        build(root, num_shots=0)


def test_debug_single_image_uses_one_image_everywhere(syn):
    root, summary = syn
    cat = summary['splits'][1]['train'][1]
    train = build(
        root,
        num_shots=2,
        episodes_per_epoch=5,
        debug_single_image=cat,
        debug_single_image_index=3,
        pipeline=AUG_PIPELINE)
    # augmentation removed: the same crop for support and query
    names = [type(t).__name__ for t in train.pipeline.transforms]
    assert names == ['LoadImage', 'GetBBoxCenterScale', 'TopdownAffine']
    assert len(train) == 5
    eps = {(tuple(e['support_indices']), e['query_index'])
           for e in (train.get_episode(i + 9 * len(train)) for i in range(len(train)))}
    (sup, query), = eps
    assert sup == (query, query)
    item = train[2]
    inputs = item['inputs']
    assert (inputs[0] == inputs[1]).all() and (inputs[0] == inputs[2]).all()
    s = item['data_samples']
    assert s.support_img_paths == [s.img_path] * 2
    assert s.img_path.endswith('_003.jpg')
    val = build(root, 'train', test_mode=True, debug_single_image=cat, debug_single_image_index=3)
    assert len(val) == 1
    assert val[0]['data_samples'].img_path == s.img_path

    with pytest.raises(
            ValueError, match=r'No images found for category 99 .*Valid '
            r'category ids: \['):
        build(root, debug_single_image=99)
    with pytest.raises(ValueError, match=r'Image index out of range: .* 8 images'):
        build(root, debug_single_image=cat, debug_single_image_index=8)
    with pytest.raises(ValueError, match='exclude each other'):
        build(root, debug_single_image=cat, debug_overfit_category=cat)


def test_debug_overfit_category(syn):
    root, summary = syn
    cat = summary['splits'][1]['train'][2]
    ds = build(root, episodes_per_epoch=6, debug_overfit_category=cat, pipeline=AUG_PIPELINE)
    assert {ds.get_episode(i)['category_id'] for i in range(len(ds))} == {cat}
    assert ds.category_ids == [cat]
    with pytest.raises(ValueError, match='No images found for category 123'):
        build(root, debug_overfit_category=123)
