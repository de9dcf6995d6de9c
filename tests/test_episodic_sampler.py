import mmengine.dataset.sampler as sampler_mod
import pytest
import torch
from cape_fixtures import dataset_cfg, make_data
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope
from mmpose.registry import DATA_SAMPLERS, DATASETS


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('mp100')
    make_data(root, images_per_category=6, keypoint_counts=(2, 3, 4, 5))
    with DefaultScope.overwrite_default_scope('mmpose'):
        return DATASETS.build(
            dataset_cfg(root, num_queries_per_episode=2, episodes_per_epoch=5, seed=3))


def _expected_query_ids(ds, epoch):
    n = len(ds)
    info = ds.instance_dataset.get_data_info
    return [info(ds.get_episode(epoch * n + i)['query_index'])['id'] for i in range(n)]


def test_indices_carry_the_epoch(dataset):
    sampler = DATA_SAMPLERS.build(dict(type='EpisodicSampler', dataset=dataset, seed=0))
    n = len(dataset)
    assert list(sampler) == list(range(n))
    sampler.set_epoch(3)
    assert list(sampler) == [3 * n + i for i in range(n)]
    assert dataset._epoch == 3  # forwarded for plain-index users


def test_ddp_ranks_split_the_same_episodes(dataset, monkeypatch):
    n = len(dataset)
    seen = []
    for rank in range(2):
        monkeypatch.setattr(sampler_mod, 'get_dist_info', lambda r=rank: (r, 2))
        sampler = DATA_SAMPLERS.build(dict(type='EpisodicSampler', dataset=dataset, seed=0))
        sampler.set_epoch(2)
        seen += list(sampler)
    assert sorted(set(seen)) == [2 * n + i for i in range(n)]


def test_persistent_workers_see_each_epoch(dataset):
    """Forked, persistent workers draw the main process's episodes every epoch."""
    sampler = DATA_SAMPLERS.build(dict(type='EpisodicSampler', dataset=dataset, seed=0))
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=2,
        sampler=sampler,
        num_workers=2,
        persistent_workers=True,
        collate_fn=pseudo_collate,
        multiprocessing_context='fork')
    for epoch in range(3):
        sampler.set_epoch(epoch)  # what DistSamplerSeedHook does
        got = [ds.id for batch in loader for ds in batch['data_samples']]
        assert got == _expected_query_ids(dataset, epoch)
    assert _expected_query_ids(dataset, 0) != _expected_query_ids(dataset, 1)
