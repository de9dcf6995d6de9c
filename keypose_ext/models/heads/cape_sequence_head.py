"""CAPE head: the query's keypoints as a sequence, one keypoint per decoding step."""
import math
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpose.models.heads.base_head import BaseHead
from mmpose.models.utils import inverse_sigmoid
from mmpose.registry import MODELS
from torch import Tensor

KEYPOINT, END = 0, 1  # token classes


def coord_sine_embed(xy: Tensor, dims: int, max_freq: float = 64.0) -> Tensor:
    """Fourier features of normalised points: (..., 2) in [0, 1] -> (..., dims).

    Frequencies 1..``max_freq`` cycles per image, so nearby points (a pixel apart
    at 256 px) still get distinguishable embeddings.
    """
    n = dims // 4
    freqs = torch.exp(torch.linspace(0, math.log(max_freq), n, device=xy.device,
                                     dtype=xy.dtype)) * (2 * math.pi)
    ang = xy[..., :, None] * freqs  # (..., 2, n)
    return torch.cat([ang.sin(), ang.cos()], dim=-1).flatten(-2)


@MODELS.register_module()
class CapeSequenceHead(BaseHead):
    """Autoregressive keypoint-sequence decoder for category-agnostic pose.

    Step ``t`` (``0 <= t <= K``, K the category's keypoint count) predicts a token
    class (keypoint or end of sequence) and, for keypoint tokens, the query's
    keypoint ``t`` as (x, y) in the crop, normalised to [0, 1]. The decoder input
    of step ``t`` is

    - the support feature of keypoint ``t`` (bilinearly sampled from the support
      feature map at the support keypoint, averaged over the shots where it is
      visible) plus an embedding of its mean support location, both refined by a
      graph convolution over the category's skeleton (the pose graph); a learned
      end query at step ``K``;
    - plus the embedding of the previous step's coordinates: the ground truth in
      training (teacher forcing), the decoder's own prediction in inference.

    A causally masked transformer decoder attends over these tokens and over the
    query image's feature map. The graph convolution mixes support features only
    (never the previous-coordinate part), so a step cannot see later coordinates.
    With ``coord_reference='support'`` coordinates are a residual on the mean
    support location (inverse-sigmoid space): the support pose is the prior, the
    query image the correction. With ``'center'`` they are regressed from the
    crop centre, so every coordinate has to come from the decoder (the support
    location still enters through the token); the single-image debug config
    uses it, since there the support prior alone would already be the answer.

    Args:
        in_channels (int): Channels of the backbone feature map.
        embed_dims (int): Token width (multiple of 4 and of ``num_heads``).
        num_layers (int): Decoder layers.
        num_heads (int): Attention heads.
        ffn_dims (int): Feed-forward width.
        dropout (float): Dropout in the decoder and the graph layer.
        loss_ce_weight (float): Weight of the token-class cross-entropy.
        loss_coords_weight (float): Weight of the L1 coordinate loss.
        coord_reference (str): ``'support'`` or ``'center'``, see above.
        end_threshold (float): Inference stops a sequence early when the end
            token's probability exceeds this; remaining keypoints stay missing
            (NaN, score 0), never zeros that could score.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: int,
                 embed_dims: int = 256,
                 num_layers: int = 3,
                 num_heads: int = 8,
                 ffn_dims: int = 1024,
                 dropout: float = 0.1,
                 loss_ce_weight: float = 1.0,
                 loss_coords_weight: float = 1.0,
                 coord_reference: str = 'support',
                 end_threshold: float = 0.5,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg)
        if coord_reference not in ('support', 'center'):
            raise ValueError("CapeSequenceHead: coord_reference must be 'support' or "
                             f"'center', got {coord_reference!r}")
        self.coord_reference = coord_reference
        if embed_dims % 4 or embed_dims % num_heads:
            raise ValueError(f'CapeSequenceHead: embed_dims ({embed_dims}) must be a '
                             f'multiple of 4 and of num_heads ({num_heads})')
        d = embed_dims
        self.in_channels = in_channels
        self.embed_dims = d
        self.loss_ce_weight = loss_ce_weight
        self.loss_coords_weight = loss_coords_weight
        self.end_threshold = end_threshold

        self.input_proj = nn.Conv2d(in_channels, d, kernel_size=1)
        self.support_pos_proj = nn.Linear(d, d)
        self.missing_embed = nn.Parameter(torch.zeros(d))
        self.graph_proj = nn.Linear(d, d)
        self.graph_norm = nn.LayerNorm(d)
        self.graph_dropout = nn.Dropout(dropout)
        self.end_query = nn.Parameter(torch.randn(d) * 0.02)
        self.start_embed = nn.Parameter(torch.randn(d) * 0.02)
        self.unknown_prev_embed = nn.Parameter(torch.randn(d) * 0.02)
        self.prev_proj = nn.Linear(d, d)
        layer = nn.TransformerDecoderLayer(
            d, num_heads, ffn_dims, dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, num_layers, norm=nn.LayerNorm(d))
        self.cls_head = nn.Linear(d, 2)
        self.coord_head = nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True),
                                        nn.Linear(d, 2))
        # Start close to "the query pose equals the mean support pose" (small, not
        # zero, weights: zeros would cut the gradient of the layer before) and
        # with a prior of one end token per sequence rather than 50 %.
        nn.init.normal_(self.coord_head[-1].weight, std=1e-3)
        nn.init.zeros_(self.coord_head[-1].bias)
        with torch.no_grad():
            self.cls_head.bias.copy_(torch.tensor([0.0, -2.0]))

    # --------------------------------------------------------------- encoding
    def _memory(self, query_feat: Tensor) -> Tensor:
        """Query feature map (B, C, h, w) -> tokens with positions (B, h*w, d)."""
        x = self.input_proj(query_feat)
        b, d, h, w = x.shape
        ys = (torch.arange(h, device=x.device, dtype=x.dtype) + 0.5) / h
        xs = (torch.arange(w, device=x.device, dtype=x.dtype) + 0.5) / w
        grid = torch.stack(torch.meshgrid(xs, ys, indexing='xy'), dim=-1)  # (h, w, 2)
        pos = coord_sine_embed(grid.reshape(-1, 2), d)
        return x.flatten(2).transpose(1, 2) + pos[None]

    def _keypoint_queries(self, support_feat: Tensor, episode: Dict[str, Tensor]
                          ) -> Tuple[Tensor, Tensor]:
        """Graph-conditioned support keypoint tokens (B, Kmax, d) and their mean
        support locations (B, Kmax, 2)."""
        b, n, c, h, w = support_feat.shape
        xy = episode['support_keypoints']  # (B, N, Kmax, 2) in [0, 1]
        vis = episode['support_visible'].to(xy.dtype)  # (B, N, Kmax)
        kmax = xy.shape[2]
        fmap = self.input_proj(support_feat.flatten(0, 1))  # (B*N, d, h, w)
        grid = (xy.flatten(0, 1) * 2 - 1).unsqueeze(2)  # (B*N, Kmax, 1, 2)
        sampled = F.grid_sample(fmap, grid, mode='bilinear', align_corners=False)
        sampled = sampled.squeeze(-1).transpose(1, 2).reshape(b, n, kmax, -1)
        count = vis.sum(1)  # (B, Kmax)
        has = (count > 0)[..., None]
        feat = (sampled * vis[..., None]).sum(1) / count.clamp(min=1)[..., None]
        feat = torch.where(has, feat, self.missing_embed.expand_as(feat))
        ref = (xy * vis[..., None]).sum(1) / count.clamp(min=1)[..., None]
        ref = torch.where(has, ref, torch.full_like(ref, 0.5))
        x = feat + self.support_pos_proj(coord_sine_embed(ref, self.embed_dims))

        # one graph convolution over the skeleton: D^-1/2 (A + I) D^-1/2
        adj = episode['adjacency'].to(x.dtype)  # (B, Kmax, Kmax), self loops on
        deg = adj.sum(-1).clamp(min=1)
        norm_adj = adj / deg.sqrt()[..., :, None] / deg.sqrt()[..., None, :]
        x = self.graph_norm(x + self.graph_dropout(
            F.relu(norm_adj @ self.graph_proj(x))))
        return x, ref

    def _sequence_layout(self, kpt_queries: Tensor, ref: Tensor,
                         num_keypoints: Tensor):
        """Base tokens (B, T, d), references (B, T, 2), padding mask (B, T) and
        step indices, with T = Kmax + 1 (the end step of each sample at its K)."""
        b, kmax, d = kpt_queries.shape
        t = torch.arange(kmax + 1, device=kpt_queries.device)
        k = num_keypoints[:, None]
        pad_q = F.pad(kpt_queries, (0, 0, 0, 1))
        base = torch.where((t < k)[..., None], pad_q,
                           self.end_query.expand_as(pad_q) * (t == k)[..., None])
        if self.coord_reference == 'center':
            ref = torch.full_like(ref, 0.5)
        ref_t = F.pad(ref, (0, 0, 0, 1), value=0.5)
        return base, ref_t, t > k, t

    def _prev_embed(self, prev_xy: Tensor, prev_known: Tensor) -> Tensor:
        """Embedding of the previous step's coordinates, (B, T, d).

        ``prev_xy`` (B, T, 2) is already shifted: entry t holds the coordinates of
        step t - 1 (entry 0 is ignored: the start token).
        """
        emb = self.prev_proj(coord_sine_embed(prev_xy, self.embed_dims))
        emb = torch.where(prev_known[..., None], emb,
                          self.unknown_prev_embed.expand_as(emb))
        start = torch.zeros_like(prev_known)
        start[:, 0] = True
        return torch.where(start[..., None], self.start_embed.expand_as(emb), emb)

    def _decode(self, tokens: Tensor, memory: Tensor, pad: Tensor) -> Tensor:
        t = tokens.shape[1]
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool,
                                       device=tokens.device), 1)
        return self.decoder(tokens, memory, tgt_mask=causal,
                            tgt_key_padding_mask=pad)

    def _outputs(self, hidden: Tensor, ref: Tensor) -> Tuple[Tensor, Tensor]:
        logits = self.cls_head(hidden)
        coords = (inverse_sigmoid(ref) + self.coord_head(hidden)).sigmoid()
        return logits, coords

    # ---------------------------------------------------------------- forward
    def forward(self, feats: Tuple[Tensor, Tensor], episode: Dict[str, Tensor],
                prev_coords: Optional[Tensor] = None,
                prev_known: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Teacher-forced pass over the whole sequence.

        Args:
            feats: ``(query_feat (B, C, h, w), support_feat (B, N, C, h, w))``.
            episode: Padded episode tensors (see :meth:`CapeEstimator`):
                ``support_keypoints`` (B, N, Kmax, 2) in [0, 1],
                ``support_visible`` (B, N, Kmax) bool, ``adjacency``
                (B, Kmax, Kmax), ``num_keypoints`` (B,) long.
            prev_coords: (B, Kmax, 2) coordinates fed as "previous step"
                (ground truth in training). Step t receives ``prev_coords[:, t-1]``.
            prev_known: (B, Kmax) bool, False where a previous coordinate is
                unknown (unlabelled keypoint).

        Returns:
            tuple: class logits (B, Kmax + 1, 2) and coordinates (B, Kmax + 1, 2)
            in [0, 1]; step K of each sample is its end step.
        """
        query_feat, support_feat = feats
        memory = self._memory(query_feat)
        kq, ref = self._keypoint_queries(support_feat, episode)
        base, ref_t, pad, _ = self._sequence_layout(kq, ref, episode['num_keypoints'])
        b, kmax = kq.shape[:2]
        if prev_coords is None:
            prev_coords = kq.new_zeros(b, kmax, 2)
            prev_known = torch.zeros(b, kmax, dtype=torch.bool, device=kq.device)
        prev_xy = F.pad(prev_coords, (0, 0, 1, 0))
        known = F.pad(prev_known.bool(), (1, 0))
        hidden = self._decode(base + self._prev_embed(prev_xy, known), memory, pad)
        return self._outputs(hidden, ref_t)

    def loss(self, feats: Tuple[Tensor, Tensor], episode: Dict[str, Tensor],
             train_cfg: dict = {}) -> Dict[str, Tensor]:
        """Teacher-forced losses.

        ``episode`` additionally holds ``targets`` (B, Kmax, 2) in [0, 1] and
        ``target_weights`` (B, Kmax) (1 where the query keypoint is labelled and
        inside the crop).

        Returns:
            dict: ``loss_ce`` (token class over every real step, end step
            included) and ``loss_coords`` (L1 over labelled keypoints).
        """
        targets, weights = episode['targets'], episode['target_weights']
        logits, coords = self.forward(feats, episode, targets, weights > 0)
        k = episode['num_keypoints'][:, None]
        t = torch.arange(logits.shape[1], device=logits.device)
        valid = t <= k
        cls_target = (t == k).long().expand_as(valid)
        loss_ce = F.cross_entropy(logits[valid], cls_target[valid])
        w = F.pad(weights, (0, 1)).to(coords.dtype)
        tgt = F.pad(targets, (0, 0, 0, 1))
        l1 = (coords - tgt).abs().sum(-1)
        loss_coords = (l1 * w).sum() / w.sum().clamp(min=1)
        return dict(loss_ce=loss_ce * self.loss_ce_weight,
                    loss_coords=loss_coords * self.loss_coords_weight)

    @torch.no_grad()
    def predict(self, feats: Tuple[Tensor, Tensor], episode: Dict[str, Tensor],
                test_cfg: dict = {}) -> Dict[str, Tensor]:
        """True autoregressive decoding; never reads any query annotation.

        Step t runs the decoder on steps 0..t, step t's previous coordinates
        being the prediction of step t - 1. A sample stops at its keypoint count
        K or when step t's end probability exceeds ``end_threshold``; keypoints
        after an early end are missing (NaN coordinates, score 0).

        Returns:
            dict: ``coords`` (B, Kmax, 2) in [0, 1] (NaN where not decoded),
            ``scores`` (B, Kmax) keypoint-token probabilities (0 where not
            decoded), ``end_probs`` (B, Kmax) and ``num_decoded`` (B,).
        """
        query_feat, support_feat = feats
        memory = self._memory(query_feat)
        kq, ref = self._keypoint_queries(support_feat, episode)
        num_kpts = episode['num_keypoints']
        base, ref_t, pad, _ = self._sequence_layout(kq, ref, num_kpts)
        b, kmax = kq.shape[:2]
        end_threshold = test_cfg.get('end_threshold', self.end_threshold)
        coords = kq.new_full((b, kmax, 2), float('nan'))
        scores = kq.new_zeros(b, kmax)
        end_probs = kq.new_zeros(b, kmax)
        prev_xy = kq.new_zeros(b, kmax + 1, 2)
        known = torch.zeros(b, kmax + 1, dtype=torch.bool, device=kq.device)
        done = torch.zeros(b, dtype=torch.bool, device=kq.device)
        for t in range(kmax):
            active = (t < num_kpts) & ~done
            if not active.any():
                break
            tokens = base[:, :t + 1] + self._prev_embed(prev_xy[:, :t + 1],
                                                        known[:, :t + 1])
            hidden = self._decode(tokens, memory, pad[:, :t + 1])[:, t]
            logits, xy = self._outputs(hidden, ref_t[:, t])
            p_end = logits.softmax(-1)[:, END]
            stop = active & (p_end > end_threshold)
            emit = active & ~stop
            coords[emit, t] = xy[emit]
            scores[emit, t] = 1 - p_end[emit]
            end_probs[active, t] = p_end[active]
            done |= stop
            prev_xy[:, t + 1] = xy
            known[:, t + 1] = True
        num_decoded = (~torch.isnan(coords[..., 0])).sum(1)
        return dict(coords=coords, scores=scores, end_probs=end_probs,
                    num_decoded=num_decoded)


def skeleton_adjacency(skeletons: Sequence[Sequence[Sequence[int]]],
                       num_keypoints: Sequence[int], kmax: int,
                       device=None) -> Tensor:
    """Symmetric 0/1 adjacency with self loops on real keypoints, (B, Kmax, Kmax)."""
    adj = torch.zeros(len(skeletons), kmax, kmax, device=device)
    for i, (edges, k) in enumerate(zip(skeletons, num_keypoints)):
        idx = torch.arange(int(k), device=device)
        adj[i, idx, idx] = 1
        if len(edges):
            e = torch.as_tensor(edges, dtype=torch.long, device=device).reshape(-1, 2)
            adj[i, e[:, 0], e[:, 1]] = 1
            adj[i, e[:, 1], e[:, 0]] = 1
    return adj
