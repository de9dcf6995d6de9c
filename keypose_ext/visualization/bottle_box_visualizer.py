"""Draw the true and the predicted 3D-box wireframes on one frame.

Over 300 lines because it draws three views per frame (image wireframes, a top view of the
lifted 3D boxes, the per-video IoU-over-frames plot) that share the lifted boxes.
"""
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple

import cv2
import mmcv
import numpy as np
from mmengine.dist import master_only
from mmpose.registry import VISUALIZERS
from mmpose.structures import PoseDataSample

from keypose_ext.objectron.box3d import (box_from_transformation, fit_box, lift_keypoints,
                                         project_points)
from keypose_ext.objectron.box_evaluation import is_evaluated
from keypose_ext.objectron.iou3d import box_iou_3d
from keypose_ext.utils.arrays import as_float64 as _np
from keypose_ext.utils.errors import UserValueError
from .keypose_local_visualizer import KeyposeLocalVisualizer


def _safe_name(text: str) -> str:
    return ''.join(c if c.isalnum() or c in '-_.' else '_' for c in str(text)) or 'video'


@VISUALIZERS.register_module()
class BottleBoxVisualizer(KeyposeLocalVisualizer):
    """Overlay ground-truth and predicted box wireframes on the same frame.

    For each instance the skeleton edges of the dataset metainfo (the 12 box
    edges for the bottle set) and a dot on keypoint 0 (the box centre) are
    drawn in ``gt_color`` for the truth and ``pred_color`` for the
    prediction, with a small legend in the top-left corner and, optionally,
    the centre depth in metres (above the true box, below the predicted one).

    mmpose's ``PoseVisualizationHook`` always calls ``add_datasample`` with
    ``draw_gt=False``; with ``overlay_gt=True`` (default) the truth is drawn
    anyway, so ``tools/test.py --show-dir`` frames show both boxes.

    When the data sample carries ``camera_intrinsics`` (3, 3) (packed from
    ``ObjectronMultiVideoDataset``) and the instances ``keypoints_depth``,
    the boxes drawn are the *lifted* ones: keypoints + depths back-projected
    into camera coordinates, fitted with Objectron's 9-DoF box fit (the box
    its 3D IoU measures) and projected again; the truth uses
    ``keypoints_3d`` when packed. A top view (camera x right, depth up) of
    both boxes goes in the bottom-left corner, the 3D IoU in the legend, and
    ``iou_<video_id>.png`` next to the written frames plots the IoU of every
    drawn frame of that video over its frame index (hollow grey: frames
    Objectron's evaluation leaves out). Use it in a config as::

        visualizer = dict(type='BottleBoxVisualizer',
                          vis_backends=[dict(type='LocalVisBackend')],
                          name='visualizer')

    Args:
        gt_color (tuple[int]): RGB colour of the true box.
        pred_color (tuple[int]): RGB colour of the predicted box.
        overlay_gt (bool): Draw the truth even when the caller passes
            ``draw_gt=False``.
        show_depth (bool): Write ``keypoints_depth`` of the centre (metres).
        line_width (int): Edge thickness in pixels.
        radius (int): Centre dot radius in pixels.
        bbox_color (tuple[int] | str): Colour of the crop box, drawn (1 px)
            when the caller passes ``draw_bbox=True`` as the hook does; white
            so it is not mistaken for either wireframe.
        lift_boxes (bool): Draw lifted 3D boxes, the top view and the IoU
            when intrinsics are known (see above).
        iou_plot (bool): Write the per-video IoU plot next to ``out_file``.
        **kwargs: Passed to :class:`KeyposeLocalVisualizer` (mmpose's ``PoseLocalVisualizer``).
    """

    def __init__(self,
                 name: str = 'visualizer',
                 gt_color: Tuple[int, int, int] = (0, 200, 0),
                 pred_color: Tuple[int, int, int] = (230, 0, 230),
                 overlay_gt: bool = True,
                 show_depth: bool = True,
                 line_width: int = 2,
                 radius: int = 4,
                 bbox_color=(255, 255, 255),
                 lift_boxes: bool = True,
                 iou_plot: bool = True,
                 **kwargs) -> None:
        super().__init__(
            name=name, line_width=line_width, radius=radius, bbox_color=bbox_color, **kwargs)
        for field, color in (('gt_color', gt_color), ('pred_color', pred_color)):
            if len(color) != 3 or not all(0 <= int(c) <= 255 for c in color):
                raise UserValueError(f'BottleBoxVisualizer: `{field}` must be an '
                                     f'RGB tuple of 0..255 ints, got {color!r}.')
        self.gt_color = tuple(int(c) for c in gt_color)
        self.pred_color = tuple(int(c) for c in pred_color)
        self.overlay_gt = overlay_gt
        self.show_depth = show_depth
        self.lift_boxes = lift_boxes
        self.iou_plot = iou_plot
        # video id -> {frame index: (3D IoU, counted by Objectron)}
        self.iou_history: Dict[str, Dict[int, Tuple[float, bool]]] = {}

    def _draw_boxes(self, instances, color: Tuple[int, int, int], score_key: str, kpt_thr: float,
                    label: str) -> None:
        """Draw every instance's wireframe onto the current image."""
        if 'keypoints' not in instances:
            return
        keypoints = _np(instances.keypoints)[..., :2]  # (N, K, 2)
        n, k = keypoints.shape[:2]
        if score_key in instances:
            scores = _np(instances[score_key]).reshape(n, k, -1)[..., 0]
        else:
            scores = np.ones((n, k))
        depth = (
            _np(instances.keypoints_depth).reshape(n, k)
            if 'keypoints_depth' in instances else None)
        for i in range(n):
            ok = (scores[i] >= kpt_thr) & np.isfinite(keypoints[i]).all(-1)
            for a, b in self.skeleton:
                if a >= k or b >= k:
                    raise UserValueError(f'BottleBoxVisualizer: skeleton link ({a}, {b}) '
                                         f'refers past the {k} keypoints of the {label} '
                                         'instances; check the dataset metainfo.')
                if not (ok[a] and ok[b]):
                    continue
                self.draw_lines(
                    np.array([keypoints[i, a, 0], keypoints[i, b, 0]], dtype=np.int64),
                    np.array([keypoints[i, a, 1], keypoints[i, b, 1]], dtype=np.int64),
                    colors=color,
                    line_widths=self.line_width)
            if ok[0]:
                self._draw_dot(keypoints[i, 0], color)
            if self.show_depth and depth is not None and ok[0] and \
                    np.isfinite(depth[i, 0]):
                self._draw_depth_text(keypoints[i][ok], depth[i, 0], color, label)

    def _draw_depth_text(self, pts: np.ndarray, depth: float, color: tuple, label: str) -> None:
        """Centre depth outside the wireframe: the truth above its box, the
        prediction below its box, so the two labels never overlap."""
        fs = self._font_size()
        x = float(np.clip(pts[:, 0].min(), 0, self.width - 1))
        if label == 'true':
            y, valign = pts[:, 1].min() - 4, 'bottom'
        else:
            y, valign = pts[:, 1].max() + 4, 'top'
        y = float(np.clip(y, fs, self.height - fs))
        self.draw_texts(
            f'{label} {depth:.2f} m',
            np.array([x, y]),
            font_sizes=fs,
            colors=color,
            vertical_alignments=valign,
            bboxes=[dict(facecolor='black', alpha=0.6, pad=0.5, edgecolor='none')])

    def _draw_dot(self, centre: np.ndarray, color: tuple) -> None:
        self.draw_circles(
            centre[None], radius=np.array([self.radius]), face_colors=color, edge_colors=color)

    def _font_size(self) -> int:
        return int(max(10, min(self.width, self.height) // 30))

    def _draw_legend(self, entries: Sequence[Tuple[str, tuple]]) -> None:
        """A short coloured segment and a name per drawn box kind."""
        fs = self._font_size()
        step = int(fs * 1.6)
        for row, (text, color) in enumerate(entries):
            y = 8 + row * step + fs // 2
            self.draw_lines(
                np.array([8, 8 + 2 * fs]),
                np.array([y, y]),
                colors=color,
                line_widths=max(2, self.line_width))
            self.draw_texts(
                text,
                np.array([12 + 2 * fs, y]),
                font_sizes=fs,
                colors=color,
                vertical_alignments='center',
                bboxes=[dict(facecolor='black', alpha=0.6, pad=0.5, edgecolor='none')])

    # ------------------------------------------------------- lifted boxes
    def _lift(self, data_sample: PoseDataSample) -> dict:
        """``{'true': (N, 9, 3), 'pred': (N, 9, 3)}`` lifted camera-frame
        points (what ``ObjectronBoxMetric`` scores), ``'true_box'`` /
        ``'pred_box'`` the boxes Objectron's 9-DoF fit makes of them (what is
        drawn), and ``'K'``; empty without intrinsics or depths."""
        k = data_sample.metainfo.get('camera_intrinsics')
        if k is None:
            return {}
        k = _np(k).reshape(3, 3)
        out = dict(K=k)
        for label, group in (('true', 'gt_instances'), ('pred', 'pred_instances')):
            inst = data_sample.get(group)
            if inst is None or 'keypoints' not in inst:
                continue
            kpts = _np(inst.keypoints)[..., :2]
            if label == 'true' and 'keypoints_3d' in inst:
                points = _np(inst.keypoints_3d).reshape(kpts.shape[:2] + (3, ))
            elif 'keypoints_depth' in inst:
                points = lift_keypoints(kpts, _np(inst.keypoints_depth).reshape(kpts.shape[:2]), k)
            else:
                continue
            if points.shape[1] != 9 or not np.isfinite(points).all():
                continue
            out[label] = points
            out[label + '_box'] = np.stack([box_from_transformation(*fit_box(p)) for p in points])
        return out if len(out) > 1 else {}

    @staticmethod
    def _as_drawn(instances, boxes: Optional[np.ndarray], k: Optional[np.ndarray]):
        """``instances`` with ``keypoints`` replaced by the projection of
        the lifted boxes (NaN behind the camera, so those edges are skipped)."""
        if boxes is None:
            return instances
        pixels = project_points(boxes, k)
        pixels[boxes[..., 2] <= 1e-6] = np.nan
        drawn = instances.clone()
        drawn.keypoints = pixels
        return drawn

    def _draw_top_view(self, boxes) -> None:
        """Both boxes seen from above (x right, depth up) in the bottom-left corner."""
        boxes = [(b[0], c) for b, c in boxes if b is not None]
        if not boxes:
            return
        size = int(max(48, min(self.width, self.height) * 0.3))
        x0, y1 = 4, self.height - 4
        self.draw_bboxes(
            np.array([[x0, y1 - size, x0 + size, y1]]),
            edge_colors='white',
            face_colors='black',
            alpha=0.6,
            line_widths=1)
        xz = np.concatenate([b[:, [0, 2]] for b, _ in boxes])
        centre = (xz.max(0) + xz.min(0)) / 2
        half = max(float(np.abs(xz - centre).max()) * 1.25, 1e-3)

        def to_panel(p):
            return (x0 + size / 2 + (p[..., 0] - centre[0]) / half * size / 2,
                    y1 - size / 2 - (p[..., 1] - centre[1]) / half * size / 2)

        for box, color in boxes:
            u, v = to_panel(box[:, [0, 2]])
            for a, b in self.skeleton:
                # int64: mmpose's opencv backend hands the values to cv2.line as is.
                self.draw_lines(
                    np.rint([u[a], u[b]]).astype(np.int64),
                    np.rint([v[a], v[b]]).astype(np.int64),
                    colors=color,
                    line_widths=1)

    def _update_iou_plot(self, data_sample: PoseDataSample, true_box: np.ndarray, iou: float,
                         k: np.ndarray, folder: str) -> None:
        """Record this frame's IoU and redraw ``iou_<video_id>.png`` in ``folder``."""
        meta = data_sample.metainfo
        video = str(meta.get('video_id', 'video'))
        frame = meta.get('frame_index')
        history = self.iou_history.setdefault(video, {})
        frame = len(history) if frame is None else int(frame)
        wh = np.array([meta['ori_shape'][1], meta['ori_shape'][0]], np.float64) \
            if 'ori_shape' in meta else np.array([2 * k[0, 2], 2 * k[1, 2]])
        centre = project_points(true_box[:1], k)[0] / wh
        counted = is_evaluated(float(meta.get('objectron_visibility', 1.0)), centre, true_box[0, 2])
        history[frame] = (float(iou), counted)
        mmcv.imwrite(self._plot(video, history), osp.join(folder, f'iou_{_safe_name(video)}.png'))

    @staticmethod
    def _plot(video: str, history: Dict[int, Tuple[float, bool]]) -> np.ndarray:
        """A 480 x 240 BGR line plot of 3D IoU over frame index."""
        w, h, left, right, top, bottom = 480, 240, 40, 10, 28, 26
        img = np.full((h, w, 3), 255, np.uint8)
        frames = sorted(history)
        lo, hi = frames[0], max(frames[-1], frames[0] + 1)

        def xy(frame, value):
            return (int(left + (frame - lo) / (hi - lo) * (w - left - right)),
                    int(h - bottom - value * (h - top - bottom)))

        for value in (0.0, 0.5, 1.0):  # grid: IoU 0, Objectron's 0.5, 1
            cv2.line(img, xy(lo, value), xy(hi, value), (210, 210, 210), 1)
            cv2.putText(img, f'{value:.1f}', (4, xy(lo, value)[1] + 4), cv2.FONT_HERSHEY_SIMPLEX,
                        0.35, (0, 0, 0), 1, cv2.LINE_AA)
        points = [xy(f, history[f][0]) for f in frames]
        if len(points) > 1:
            cv2.polylines(img, [np.array(points, np.int32)], False, (200, 0, 200), 1, cv2.LINE_AA)
        for f, p in zip(frames, points):
            counted = history[f][1]
            cv2.circle(img, p, 3, (200, 0, 200) if counted else (150, 150, 150),
                       -1 if counted else 1, cv2.LINE_AA)
        mean = np.mean([v for v, c in history.values()
                        if c]) if any(c for _, c in history.values()) else float('nan')
        cv2.putText(img, f'{video[:40]}: 3D IoU per frame (mean {mean:.3f})', (left, 18),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, f'frame {lo}..{hi}', (left, h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                    (0, 0, 0), 1, cv2.LINE_AA)
        return img

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
                       step: int = 0) -> np.ndarray:
        """Draw both wireframes on ``image`` (RGB) and save/show it.

        Same signature as :meth:`PoseLocalVisualizer.add_datasample`;
        ``draw_heatmap``, ``show_kpt_idx`` and ``skeleton_style`` are
        accepted for compatibility and ignored (a regression model has no
        heatmaps). Ground-truth keypoints with ``keypoints_visible <
        kpt_thr`` and predictions with ``keypoint_scores < kpt_thr`` are not
        connected.

        Returns:
            np.ndarray: The drawn RGB image.
        """
        if not self.skeleton:
            raise UserValueError('BottleBoxVisualizer: no skeleton links; call '
                                 'set_dataset_meta() with a metainfo that has `skeleton_info` '
                                 '(the runner does this from the dataset metainfo).')
        self.set_image(image.copy())
        lifted = self._lift(data_sample) if self.lift_boxes else {}
        legend = []
        if (draw_gt or self.overlay_gt) and 'gt_instances' in data_sample:
            gt = data_sample.gt_instances
            if draw_bbox and 'bboxes' in gt:
                self.draw_bboxes(
                    _np(gt.bboxes).reshape(-1, 4), edge_colors=self.bbox_color, line_widths=1)
            if 'keypoints' in gt:
                self._draw_boxes(
                    self._as_drawn(gt, lifted.get('true_box'), lifted.get('K')), self.gt_color,
                    'keypoints_visible', kpt_thr, 'true')
                legend.append(('true', self.gt_color))
        iou = None
        if draw_pred and 'pred_instances' in data_sample:
            pred = data_sample.pred_instances
            if 'keypoints' in pred:
                self._draw_boxes(
                    self._as_drawn(pred, lifted.get('pred_box'), lifted.get('K')), self.pred_color,
                    'keypoint_scores', kpt_thr, 'pred')
                text = 'pred'
                if lifted.get('true') is not None and lifted.get('pred') is not None:
                    iou = box_iou_3d(lifted['pred'][0], lifted['true'][0])
                    text = f'pred  3D IoU {iou:.2f}'
                legend.append((text, self.pred_color))
        if lifted:
            self._draw_top_view([(lifted.get('true_box'), self.gt_color),
                                 (lifted.get('pred_box'), self.pred_color)])
        self._draw_legend(legend)
        drawn_img = self.get_image()
        if iou is not None and self.iou_plot and out_file is not None:
            self._update_iou_plot(data_sample, lifted['true'][0], iou, lifted['K'],
                                  osp.dirname(out_file))

        if show:
            self.show(drawn_img, win_name=name, wait_time=wait_time)
        if out_file is not None:
            mmcv.imwrite(drawn_img[..., ::-1], out_file)
        else:
            self.add_image(name, drawn_img, step)
        return drawn_img
