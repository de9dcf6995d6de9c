# Each import below registers one component (one per file).
from .depth_keypoint_metric import DepthKeypointMetric  # noqa: F401
from .episodic_pck_metric import EpisodicPCKMetric  # noqa: F401
from .objectron_box_metric import ObjectronBoxMetric  # noqa: F401
