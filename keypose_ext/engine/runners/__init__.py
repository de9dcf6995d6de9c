# Each import below registers one component (one per file).
from .device_resident_train_loop import DeviceResidentTrainLoop  # noqa: F401
from .keypose_epoch_based_train_loop import KeyposeEpochBasedTrainLoop  # noqa: F401
from .keypose_runner import KeyposeRunner  # noqa: F401
