from . import backbones, heads, pose_estimators  # noqa: F401
