"""A sampler that hands the epoch to episodic datasets inside each index."""
from typing import Iterator

from mmengine.dataset import DefaultSampler
from mmpose.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class EpisodicSampler(DefaultSampler):
    """``DefaultSampler`` whose indices carry the epoch: ``epoch * len + i``.

    Training episodes of :class:`MP100EpisodicDataset` are drawn from
    (seed, epoch, index). Dataloader workers are separate processes (persistent
    ones live across epochs), so a ``set_epoch`` on the main process's dataset
    would not reach them; the index they receive does. ``DistSamplerSeedHook``
    calls ``set_epoch`` before every training epoch, and DDP ranks split the
    indices exactly as ``DefaultSampler`` does, so every rank and worker agrees
    on every episode. Use it for training; validation/test episodes are fixed, so
    their dataloaders keep ``DefaultSampler(shuffle=False)``.

    Args:
        dataset: The dataset (anything with ``__len__``; ``set_epoch`` is
            forwarded to it when present).
        shuffle (bool): Shuffle the order of the items each epoch. Defaults to
            False: episodes are random already.
        seed (int, optional): Shuffle seed, as in ``DefaultSampler``.
        round_up (bool): As in ``DefaultSampler``.
    """

    def __init__(self, dataset, shuffle: bool = False, seed=None, round_up: bool = True) -> None:
        super().__init__(dataset, shuffle=shuffle, seed=seed, round_up=round_up)

    def __iter__(self) -> Iterator[int]:
        offset = self.epoch * len(self.dataset)
        return iter([offset + i for i in super().__iter__()])

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if hasattr(self.dataset, 'set_epoch'):
            self.dataset.set_epoch(epoch)
