# Plain functions shared by metrics and visualizers (nothing registered here).
from .mp100_pck import (MP100_THRESHOLDS, mp100_clean_bbox, mp100_pair_pck, mp100_sample_pck,
                        pair_keypoint_distances, query_box_and_image_size)

__all__ = [
    'MP100_THRESHOLDS', 'mp100_clean_bbox', 'mp100_pair_pck', 'mp100_sample_pck',
    'pair_keypoint_distances', 'query_box_and_image_size'
]
