"""mmpose's ``PoseLocalVisualizer`` made to draw keypoints under numpy >= 2."""
import numpy as np
from mmpose.registry import VISUALIZERS
from mmpose.visualization import PoseLocalVisualizer


@VISUALIZERS.register_module()
class KeyposeLocalVisualizer(PoseLocalVisualizer):
    """``PoseLocalVisualizer`` whose opencv backend accepts array radii.

    mmpose 1.3.2 draws each keypoint with ``draw_circles(kpt, radius=np.array([r]))``
    and its opencv backend then calls ``int(radius)`` on that 1-element array, which
    numpy >= 2 refuses ("only 0-dimensional arrays can be converted to Python
    scalars"): every ``--show-dir`` run with a confident prediction crashes. Here a
    single circle's centre (2,) / (1, 2) and radius (1,) are turned into scalars
    first; everything else is mmpose's drawing.
    """

    def draw_circles(self, center, radius, face_colors='none', alpha=1.0, **kwargs):
        if self.backend == 'opencv':
            radius = np.asarray(radius, dtype=float).reshape(-1)
            center = np.asarray(center, dtype=float).reshape(-1, 2)
            if len(radius) == 1 and len(center) == 1:
                return super().draw_circles(
                    center[0], float(radius[0]), face_colors=face_colors, alpha=alpha, **kwargs)
            for c, r in zip(center, np.broadcast_to(radius, (len(center), ))):
                super().draw_circles(c, float(r), face_colors=face_colors, alpha=alpha, **kwargs)
            return self
        return super().draw_circles(center, radius, face_colors=face_colors, alpha=alpha, **kwargs)
