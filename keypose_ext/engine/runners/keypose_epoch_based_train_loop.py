"""``EpochBasedTrainLoop`` that resumes in the middle of an epoch."""
import logging

from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop
from mmpose.registry import LOOPS

from keypose_ext.utils.rng_state import restore_rng_state


@LOOPS.register_module()
class KeyposeEpochBasedTrainLoop(EpochBasedTrainLoop):
    """MMEngine's epoch loop, plus an exact continuation after ``resume``.

    MMEngine's loop restarts the epoch of a checkpoint saved mid-epoch (by iteration,
    e.g. ``CheckpointHook(by_epoch=False)``) from its first batch while keeping the
    resumed iteration count, so the run trains those batches twice and its iteration
    numbers no longer match the epochs. This loop skips the batches the interrupted
    run had already trained in that epoch: the sampler yields the same order (seeded by
    the seed and the epoch), and the skipped batches go through the dataloader as in
    MMEngine's ``IterBasedTrainLoop``. Then it restores the random states stored by
    ``KeyposeCheckpointHook``, so augmentations in the main process and dropout draw
    what the interrupted run would have drawn.

    Not restored (MMEngine keeps no record of them): the random states of dataloader
    worker processes (each epoch's workers are seeded anew unless
    ``persistent_workers=True``) and those of ranks other than 0.
    """

    def run_epoch(self) -> None:
        done = self._iter - self._epoch * len(self.dataloader)
        if not 0 < done < len(self.dataloader):
            self._restore_rng_state()
            return super().run_epoch()
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        print_log(
            f'KeyposeEpochBasedTrainLoop: resuming epoch {self._epoch + 1} at batch '
            f'{done + 1}/{len(self.dataloader)}; skipping the {done} trained batches',
            logger='current',
            level=logging.INFO)
        batches = iter(self.dataloader)
        for _ in range(done):
            next(batches)
        self._restore_rng_state()
        for idx, data_batch in enumerate(batches, start=done):
            self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1

    def _restore_rng_state(self) -> None:
        """Put back the random states of a resumed checkpoint (once)."""
        for hook in self.runner.hooks:
            state = getattr(hook, 'resumed_rng_state', None)
            if state is not None:
                hook.resumed_rng_state = None
                if self._iter > 0:  # resumed; a fine-tune from load_from starts at 0
                    restore_rng_state(state)
