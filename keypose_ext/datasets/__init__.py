# Each import below registers one component (one per file).
from . import transforms  # noqa: F401
from .bottle_video_dataset import BottleVideoDataset  # noqa: F401
from .checked_coco_dataset import CheckedCocoDataset  # noqa: F401
from .episodic_sampler import EpisodicSampler  # noqa: F401
from .mp100_episodic_dataset import MP100EpisodicDataset  # noqa: F401
from .mp100_instance_dataset import MP100InstanceDataset  # noqa: F401
from .objectron_multi_video_dataset import ObjectronMultiVideoDataset  # noqa: F401
