# Each import below registers one component (one per file).
from .depth_keypoint_codec import DepthKeypointCodec  # noqa: F401
