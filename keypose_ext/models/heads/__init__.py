# Each import below registers one component (one per file).
from .cape_sequence_head import CapeSequenceHead  # noqa: F401
from .depth_keypoint_regression_head import DepthKeypointRegressionHead  # noqa: F401,E501
