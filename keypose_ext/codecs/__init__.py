# Each import below registers one component (one per file).
from .cape_sequence_codec import CapeSequenceCodec  # noqa: F401
from .depth_keypoint_codec import DepthKeypointCodec  # noqa: F401
