"""Draw a CAPE episode: the support images with their poses beside the query."""
from typing import List, Optional, Sequence, Tuple

import cv2
import mmcv
import numpy as np
from mmengine.dist import master_only
from mmpose.registry import VISUALIZERS
from mmpose.structures import PoseDataSample
from mmpose.utils.tensor_utils import to_numpy
from mmpose.visualization import PoseLocalVisualizer

from ..evaluation.functional.mp100_pck import mp100_sample_pck


def keypoint_colours(k: int) -> List[Tuple[int, int, int]]:
    """One RGB colour per keypoint index, so keypoint i looks alike in every panel."""
    hsv = np.stack([
        np.linspace(0, 179, max(k, 1), endpoint=False),
        np.full(max(k, 1), 230),
        np.full(max(k, 1), 255)
    ], -1)
    rgb = cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0]
    return [tuple(int(c) for c in px) for px in rgb[:k]]


@VISUALIZERS.register_module()
class CapeVisualizer(PoseLocalVisualizer):
    """Panels ``support 1 | ... | support N | query`` for one episode pair.

    Every support panel shows its labelled keypoints and the category's skeleton;
    the query panel shows the prediction (filled dots and skeleton) and the ground
    truth (rings joined to the prediction by a thin error line), titled with the
    pair's PCK@0.2 as ``EpisodicPCKMetric`` computes it (the same function,
    :func:`~keypose_ext.evaluation.functional.mp100_sample_pck`). Keypoint i has the
    same colour in every panel; keypoints the model did not decode (NaN) are not
    drawn.
    Each panel is the instance's box enlarged by ``crop_padding`` and resized to
    ``panel_height`` pixels.

    mmpose's ``PoseVisualizationHook`` (``tools/test.py --show-dir``) passes the
    query image and ``draw_gt=False``; with ``overlay_gt=True`` the ground truth
    is drawn all the same, and the support images are read from
    ``support_img_paths`` of the sample's metainfo. Use in a config::

        visualizer = dict(type='CapeVisualizer', name='visualizer',
                          vis_backends=[dict(type='LocalVisBackend')])

    Args:
        panel_height (int): Height of each panel in pixels.
        crop_padding (float): Box enlargement of each panel (0 = full image).
        overlay_gt (bool): Draw the query ground truth even when the caller
            passes ``draw_gt=False``.
        gt_color (tuple[int]): RGB colour of the ground-truth rings.
        radius (int), line_width (int): Keypoint radius and line width.
        **kwargs: Passed to :class:`PoseLocalVisualizer`.
    """

    def __init__(self,
                 name: str = 'visualizer',
                 panel_height: int = 256,
                 crop_padding: float = 1.25,
                 overlay_gt: bool = True,
                 gt_color: Tuple[int, int, int] = (255, 255, 255),
                 radius: int = 4,
                 line_width: int = 2,
                 **kwargs) -> None:
        super().__init__(name=name, radius=radius, line_width=line_width, **kwargs)
        self.panel_height = int(panel_height)
        self.crop_padding = float(crop_padding)
        self.overlay_gt = overlay_gt
        self.gt_color = tuple(gt_color)

    def set_dataset_meta(self, dataset_meta, skeleton_style: str = 'mmpose'):
        # skeletons are per category and come with each sample
        self.dataset_meta = dict(dataset_meta or {})

    # ----------------------------------------------------------------- panels
    def _panel(self, img: np.ndarray, bbox) -> Tuple[np.ndarray, np.ndarray, float]:
        """Crop ``img`` around ``bbox`` and resize; returns (panel, offset, scale)."""
        h, w = img.shape[:2]
        x0, y0, x1, y1 = (0.0, 0.0, float(w), float(h))
        if self.crop_padding > 0 and bbox is not None:
            bx0, by0, bx1, by1 = (float(v) for v in bbox)
            cx, cy = (bx0 + bx1) / 2, (by0 + by1) / 2
            half = max(bx1 - bx0, by1 - by0) * self.crop_padding / 2
            x0, y0 = max(0.0, cx - half), max(0.0, cy - half)
            x1, y1 = min(float(w), cx + half), min(float(h), cy + half)
        crop = img[int(y0):max(int(np.ceil(y1)),
                               int(y0) + 1),
                   int(x0):max(int(np.ceil(x1)),
                               int(x0) + 1)]
        scale = self.panel_height / crop.shape[0]
        panel = cv2.resize(
            crop, (max(1, int(round(crop.shape[1] * scale))), self.panel_height),
            interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(panel), np.array([int(x0), int(y0)], np.float64), \
            scale

    def _draw_pose(self, panel, kpts, visible, skeleton, colours, filled=True):
        pts = [
            None if not v or not np.isfinite(p).all() else (int(round(p[0])), int(round(p[1])))
            for p, v in zip(kpts, visible)
        ]
        for a, b in skeleton:
            if a < len(pts) and b < len(pts) and pts[a] and pts[b]:
                cv2.line(panel, pts[a], pts[b], colours[a], max(1, self.line_width - 1),
                         cv2.LINE_AA)
        for i, p in enumerate(pts):
            if p:
                cv2.circle(panel, p, self.radius, colours[i], -1 if filled else 1, cv2.LINE_AA)
        return pts

    @staticmethod
    def pair_pck_text(data_sample: PoseDataSample, query_shape=None) -> str:
        """The query panel's PCK caption, e.g. ``'PCK@0.2 0.50'`` (MP-100 rule)."""
        ds = data_sample.to_dict()
        if ds.get('ori_shape') is None and query_shape is not None:
            ds['ori_shape'] = tuple(query_shape[:2])
        ds.setdefault('support_keypoints_visible', np.ones((1, int(ds.get('num_keypoints', 0)))))
        pck, count = mp100_sample_pck(ds, (0.2, ))
        return f'PCK@0.2 {pck[0]:.2f}' + ('' if count else ' (no keypoint counted)')

    @staticmethod
    def _title(panel, text):
        cv2.rectangle(panel, (0, 0), (panel.shape[1], 16), (0, 0, 0), -1)
        cv2.putText(panel, text, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                    cv2.LINE_AA)

    def draw_episode(self,
                     query_img: np.ndarray,
                     data_sample: PoseDataSample,
                     draw_gt: bool = True,
                     draw_pred: bool = True,
                     support_imgs: Optional[Sequence[np.ndarray]] = None) -> np.ndarray:
        """The stitched RGB canvas of one sample (see the class docstring)."""
        meta = data_sample.metainfo
        k = int(meta.get('num_keypoints', 0))
        skeleton = [tuple(int(v) for v in e) for e in meta.get('skeleton', [])]
        colours = keypoint_colours(k)
        panels = []
        paths = meta.get('support_img_paths', [])
        sup_kpts = np.asarray(meta.get('support_keypoints', np.zeros((0, k, 2))))
        sup_vis = np.asarray(meta.get('support_keypoints_visible', np.zeros((0, k))))
        sup_boxes = np.asarray(meta.get('support_bboxes', np.zeros((0, 4))))
        for i in range(len(sup_kpts)):
            img = support_imgs[i] if support_imgs is not None else mmcv.imread(
                paths[i], channel_order='rgb')
            panel, off, s = self._panel(img, sup_boxes[i] if len(sup_boxes) else None)
            self._draw_pose(panel, (sup_kpts[i] - off) * s, sup_vis[i] > 0, skeleton, colours)
            self._title(panel, f'support {i + 1}')
            panels.append(panel)

        gt = data_sample.get('gt_instances')
        bbox = np.asarray(gt.bboxes)[0] if gt is not None and 'bboxes' in gt else None
        panel, off, s = self._panel(query_img, bbox)
        title = 'query'
        gt_pts = pred_pts = None
        if draw_gt and gt is not None and 'keypoints' in gt:
            gt_xy = np.asarray(gt.keypoints)[0]
            gt_vis = np.asarray(gt.keypoints_visible)[0] > 0
            gt_pts = [
                None if not v else (int(round(p[0])), int(round(p[1])))
                for p, v in zip((gt_xy - off) * s, gt_vis)
            ]
        pred = data_sample.get('pred_instances')
        pred_xy = None
        if draw_pred and pred is not None and 'keypoints' in pred:
            pred_xy = np.asarray(to_numpy(pred.keypoints))[0].astype(np.float64)
            pred_ok = np.isfinite(pred_xy).all(-1)
            pred_px = (np.nan_to_num(pred_xy) - off) * s
            pred_pts = [
                None if not ok else (int(round(p[0])), int(round(p[1])))
                for p, ok in zip(pred_px, pred_ok)
            ]
            if gt_pts is not None and bbox is not None:
                title += '  ' + self.pair_pck_text(data_sample, query_img.shape)
        if gt_pts is not None:  # truth first, so the prediction stays on top
            for i, g in enumerate(gt_pts):
                if g is None:
                    continue
                if pred_pts is not None and pred_pts[i] is not None:
                    cv2.line(panel, g, pred_pts[i], self.gt_color, 1, cv2.LINE_AA)
                cv2.circle(panel, g, self.radius + 2, self.gt_color, 1, cv2.LINE_AA)
            title += '  (rings: truth)'
        if pred_xy is not None:
            self._draw_pose(panel, pred_px, pred_ok, skeleton, colours)
        self._title(panel, title)
        panels.append(panel)
        sep = np.full((self.panel_height, 4, 3), 255, np.uint8)
        out = []
        for p in panels:
            out += [p, sep]
        return np.concatenate(out[:-1], axis=1)

    @master_only
    def add_datasample(self,
                       name: str,
                       image: np.ndarray,
                       data_sample: PoseDataSample,
                       draw_gt: bool = True,
                       draw_pred: bool = True,
                       draw_heatmap: bool = False,
                       draw_bbox: bool = False,
                       show_kpt_idx: bool = False,
                       skeleton_style: str = 'mmpose',
                       show: bool = False,
                       wait_time: float = 0,
                       out_file: Optional[str] = None,
                       kpt_thr: float = 0.3,
                       step: int = 0) -> None:
        """Draw one episode pair; ``image`` is the query image (RGB)."""
        canvas = self.draw_episode(
            image, data_sample, draw_gt=draw_gt or self.overlay_gt, draw_pred=draw_pred)
        self.set_image(canvas)
        if show:
            self.show(canvas, win_name=name, wait_time=wait_time)
        if out_file is not None:
            mmcv.imwrite(canvas[..., ::-1], out_file)
        else:
            self.add_image(name, canvas, step)
        return canvas
