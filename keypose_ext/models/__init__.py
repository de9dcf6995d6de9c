from . import backbones, data_preprocessors, heads, pose_estimators  # noqa: F401
