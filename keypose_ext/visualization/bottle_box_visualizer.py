"""Draw the true and the predicted 3D-box wireframes on one frame."""
from typing import Optional, Sequence, Tuple

import mmcv
import numpy as np
from mmengine.dist import master_only
from mmpose.registry import VISUALIZERS
from mmpose.structures import PoseDataSample

from .keypose_local_visualizer import KeyposeLocalVisualizer


def _np(x) -> np.ndarray:
    if hasattr(x, 'detach'):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


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
    anyway, so ``tools/test.py --show-dir`` frames show both boxes. Use it in
    a config as::

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
                 **kwargs) -> None:
        super().__init__(
            name=name,
            line_width=line_width,
            radius=radius,
            bbox_color=bbox_color,
            **kwargs)
        for field, color in (('gt_color', gt_color),
                             ('pred_color', pred_color)):
            if len(color) != 3 or not all(0 <= int(c) <= 255 for c in color):
                raise ValueError(f'BottleBoxVisualizer: `{field}` must be an '
                                 f'RGB tuple of 0..255 ints, got {color!r}.')
        self.gt_color = tuple(int(c) for c in gt_color)
        self.pred_color = tuple(int(c) for c in pred_color)
        self.overlay_gt = overlay_gt
        self.show_depth = show_depth

    def _draw_boxes(self, instances, color: Tuple[int, int, int],
                    score_key: str, kpt_thr: float, label: str) -> None:
        """Draw every instance's wireframe onto the current image."""
        if 'keypoints' not in instances:
            return
        keypoints = _np(instances.keypoints)[..., :2]  # (N, K, 2)
        n, k = keypoints.shape[:2]
        if score_key in instances:
            scores = _np(instances[score_key]).reshape(n, k, -1)[..., 0]
        else:
            scores = np.ones((n, k))
        depth = (_np(instances.keypoints_depth).reshape(n, k)
                 if 'keypoints_depth' in instances else None)
        for i in range(n):
            ok = (scores[i] >= kpt_thr) & np.isfinite(keypoints[i]).all(-1)
            for a, b in self.skeleton:
                if a >= k or b >= k:
                    raise ValueError(
                        f'BottleBoxVisualizer: skeleton link ({a}, {b}) '
                        f'refers past the {k} keypoints of the {label} '
                        'instances; check the dataset metainfo.')
                if not (ok[a] and ok[b]):
                    continue
                self.draw_lines(
                    np.array([keypoints[i, a, 0], keypoints[i, b, 0]],
                             dtype=np.int64),
                    np.array([keypoints[i, a, 1], keypoints[i, b, 1]],
                             dtype=np.int64),
                    colors=color,
                    line_widths=self.line_width)
            if ok[0]:
                self._draw_dot(keypoints[i, 0], color)
            if self.show_depth and depth is not None and ok[0] and \
                    np.isfinite(depth[i, 0]):
                self._draw_depth_text(keypoints[i][ok], depth[i, 0], color,
                                      label)

    def _draw_depth_text(self, pts: np.ndarray, depth: float, color: tuple,
                         label: str) -> None:
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
            bboxes=[dict(facecolor='black', alpha=0.6, pad=0.5,
                         edgecolor='none')])

    def _draw_dot(self, centre: np.ndarray, color: tuple) -> None:
        self.draw_circles(centre[None], radius=np.array([self.radius]),
                          face_colors=color, edge_colors=color)

    def _font_size(self) -> int:
        return int(max(10, min(self.width, self.height) // 30))

    def _draw_legend(self, entries: Sequence[Tuple[str, tuple]]) -> None:
        """A short coloured segment and a name per drawn box kind."""
        fs = self._font_size()
        step = int(fs * 1.6)
        for row, (text, color) in enumerate(entries):
            y = 8 + row * step + fs // 2
            self.draw_lines(
                np.array([8, 8 + 2 * fs]), np.array([y, y]),
                colors=color, line_widths=max(2, self.line_width))
            self.draw_texts(
                text,
                np.array([12 + 2 * fs, y]),
                font_sizes=fs,
                colors=color,
                vertical_alignments='center',
                bboxes=[dict(facecolor='black', alpha=0.6, pad=0.5,
                             edgecolor='none')])

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
            raise ValueError(
                'BottleBoxVisualizer: no skeleton links; call '
                'set_dataset_meta() with a metainfo that has `skeleton_info` '
                '(the runner does this from the dataset metainfo).')
        self.set_image(image.copy())
        legend = []
        if (draw_gt or self.overlay_gt) and 'gt_instances' in data_sample:
            gt = data_sample.gt_instances
            if draw_bbox and 'bboxes' in gt:
                self.draw_bboxes(
                    _np(gt.bboxes).reshape(-1, 4),
                    edge_colors=self.bbox_color,
                    line_widths=1)
            if 'keypoints' in gt:
                self._draw_boxes(gt, self.gt_color, 'keypoints_visible',
                                 kpt_thr, 'true')
                legend.append(('true', self.gt_color))
        if draw_pred and 'pred_instances' in data_sample:
            pred = data_sample.pred_instances
            if 'keypoints' in pred:
                self._draw_boxes(pred, self.pred_color, 'keypoint_scores',
                                 kpt_thr, 'pred')
                legend.append(('pred', self.pred_color))
        self._draw_legend(legend)
        drawn_img = self.get_image()

        if show:
            self.show(drawn_img, win_name=name, wait_time=wait_time)
        if out_file is not None:
            mmcv.imwrite(drawn_img[..., ::-1], out_file)
        else:
            self.add_image(name, drawn_img, step)
        return drawn_img
