# Each import below registers one component (one per file).
from .pack_cape_inputs import PackCapeInputs  # noqa: F401
from .pack_depth_pose_inputs import PackDepthPoseInputs  # noqa: F401
from .random_box_flip import RandomBoxFlip  # noqa: F401
