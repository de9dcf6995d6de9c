"""CAPE head: the query's keypoints as a sequence, one keypoint per decoding step.

Longer than most modules (~500 lines, a third of them docstrings) because its parts
share one token layout and cannot be read apart: the episode's support encoding, the
teacher-forced pass, the autoregressive decoding and the losses.
"""
import math
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.structures import InstanceData
from mmpose.models.heads.base_head import BaseHead
from mmpose.models.utils import inverse_sigmoid
from mmpose.registry import KEYPOINT_CODECS, MODELS
from mmpose.utils.tensor_utils import to_numpy
from mmpose.utils.typing import ConfigType, InstanceList, OptConfigType, SampleList
from torch import Tensor

from ...utils.errors import UserValueError

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
    Coordinates are a residual (in inverse-sigmoid space) on a reference point
    per keypoint, chosen by ``coord_reference``:

    - ``'similarity'``: the soft-argmax over the query feature map of the cosine
      similarity with the keypoint's support feature (a matching proposal, as in
      CapeFormer); it gets its own L1 loss, ``loss_proposal``. Category-agnostic
      by construction, the default of the configs.
    - ``'support'``: the mean support location (the support pose as prior).
    - ``'center'``: the crop centre, so every coordinate comes from the decoder's
      residual. This does *not* keep the support pose out of the answer: each
      token embeds its support keypoint location, so with support = query
      (single-image mode) the answer is in the tokens whatever the reference.

    MMPose's head contract: :meth:`loss` and :meth:`predict` take the backbone
    features and the batch's ``PoseDataSample`` list. What they read is what
    ``PackCapeInputs`` encodes with :class:`~keypose_ext.codecs.CapeSequenceCodec`:
    the supports' ``support_keypoint_labels`` (N, K, 2) / ``support_keypoint_weights``
    (N, K), ``num_keypoints`` and ``skeleton`` from the metainfo, and for the loss
    only, the query's ``gt_instance_labels.keypoint_labels`` (1, K, 2) /
    ``keypoint_weights`` (1, K). :meth:`collate_episode` pads them to the batch's
    largest keypoint count (one batch may mix categories). :meth:`predict` returns
    an ``InstanceList`` of crop-pixel keypoints (the ``decoder`` codec), which
    ``TopdownPoseEstimator.add_pred_to_datasample`` maps to the image.

    Args:
        in_channels (int): Channels of the backbone feature map.
        embed_dims (int): Token width (multiple of 4 and of ``num_heads``).
        num_layers (int): Decoder layers.
        num_heads (int): Attention heads.
        ffn_dims (int): Feed-forward width.
        dropout (float): Dropout in the decoder and the graph layer.
        loss_ce_weight (float): Weight of the token-class cross-entropy.
        loss_coords_weight (float): Weight of the L1 coordinate loss.
        loss_proposal_weight (float): Weight of the L1 loss of the similarity
            proposals (``coord_reference='similarity'`` only).
        coord_reference (str): ``'similarity'``, ``'support'`` or ``'center'``.
        end_threshold (float): Inference stops a sequence early when the end
            token's probability exceeds this; remaining keypoints stay missing
            (NaN, score 0), never zeros that could score. ``test_cfg`` may
            override it.
        decoder (dict, optional): The codec, ``dict(type='CapeSequenceCodec',
            input_size=...)``. Default: one for each sample's ``input_size``.
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
                 loss_proposal_weight: float = 1.0,
                 coord_reference: str = 'similarity',
                 end_threshold: float = 0.5,
                 decoder: OptConfigType = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg)
        if coord_reference not in ('similarity', 'support', 'center'):
            raise UserValueError("CapeSequenceHead: coord_reference must be 'similarity', "
                                 f"'support' or 'center', got {coord_reference!r}")
        self.coord_reference = coord_reference
        if embed_dims % 4 or embed_dims % num_heads:
            raise UserValueError(f'CapeSequenceHead: embed_dims ({embed_dims}) must be a '
                                 f'multiple of 4 and of num_heads ({num_heads})')
        d = embed_dims
        self.in_channels = in_channels
        self.embed_dims = d
        self.loss_ce_weight = loss_ce_weight
        self.loss_coords_weight = loss_coords_weight
        self.loss_proposal_weight = loss_proposal_weight
        self.end_threshold = end_threshold
        self.decoder_cfg = decoder
        self.decoder = KEYPOINT_CODECS.build(decoder) if decoder is not None else None

        self.input_proj = nn.Conv2d(in_channels, d, kernel_size=1)
        if coord_reference == 'similarity':
            # log of the inverse softmax temperature of the cosine similarity;
            # both sides share input_proj, so equal features match from the start
            self.match_logit_scale = nn.Parameter(torch.tensor(math.log(20.0)))
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
        self.transformer = nn.TransformerDecoder(layer, num_layers, norm=nn.LayerNorm(d))
        self.cls_head = nn.Linear(d, 2)
        self.coord_head = nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, 2))
        # Start close to "the query keypoint is at the reference" (small, not
        # zero, weights: zeros would cut the gradient of the layer before) and
        # with a prior of one end token per sequence rather than 50 %.
        nn.init.normal_(self.coord_head[-1].weight, std=1e-3)
        nn.init.zeros_(self.coord_head[-1].bias)
        with torch.no_grad():
            self.cls_head.bias.copy_(torch.tensor([0.0, -2.0]))
        self._register_load_state_dict_pre_hook(self._rename_old_decoder_keys)

    @staticmethod
    def _rename_old_decoder_keys(state_dict, prefix, *args, **kwargs):
        """Checkpoints before ``decoder`` became the codec (MMPose's name) keep
        the transformer under ``decoder.``; the codec has no weights."""
        for key in [k for k in state_dict if k.startswith(prefix + 'decoder.')]:
            state_dict[prefix + 'transformer.' + key[len(prefix + 'decoder.'):]] = \
                state_dict.pop(key)

    # --------------------------------------------------------------- encoding
    @staticmethod
    def _grid(h: int, w: int, like: Tensor) -> Tensor:
        """Normalised centres of an (h, w) feature map's cells, (h * w, 2)."""
        ys = (torch.arange(h, device=like.device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=like.device, dtype=torch.float32) + 0.5) / w
        return torch.stack(torch.meshgrid(xs, ys, indexing='xy'), -1).reshape(-1, 2)

    def _encode(self, feats: Tuple[Tensor, Tensor], episode: Dict[str, Tensor]):
        """Everything the decoding steps share.

        Returns:
            tuple: ``memory`` (B, h*w, d) query tokens with positions;
            ``kq`` (B, Kmax, d) graph-conditioned support keypoint tokens;
            ``ref`` (B, Kmax, 2) reference points; ``proposal`` (B, Kmax, 2) the
            similarity proposals or None; ``seen`` (B, Kmax) bool, keypoints
            visible in at least one support.
        """
        query_feat, support_feat = feats
        qmap = self.input_proj(query_feat)  # (B, d, h, w)
        b, d, h, w = qmap.shape
        grid = self._grid(h, w, qmap)
        qtok = qmap.flatten(2).transpose(1, 2)  # (B, h*w, d)
        memory = qtok + coord_sine_embed(grid, d).to(qtok.dtype)[None]

        # support keypoint features, averaged over the shots that see the point
        n = support_feat.shape[1]
        xy = episode['support_keypoints']  # (B, N, Kmax, 2) in [0, 1]
        vis = episode['support_visible'].to(xy.dtype)  # (B, N, Kmax)
        kmax = xy.shape[2]
        smap = self.input_proj(support_feat.flatten(0, 1))  # (B*N, d, h', w')
        sgrid = (xy.flatten(0, 1) * 2 - 1).unsqueeze(2).to(smap.dtype)
        sampled = F.grid_sample(smap, sgrid, mode='bilinear', align_corners=False)
        sampled = sampled.squeeze(-1).transpose(1, 2).reshape(b, n, kmax, -1)
        count = vis.sum(1)  # (B, Kmax)
        has = (count > 0)[..., None]
        feat = (sampled * vis[..., None]).sum(1) / count.clamp(min=1)[..., None]
        feat = torch.where(has, feat, self.missing_embed.to(feat.dtype).expand_as(feat))
        sup_ref = (xy * vis[..., None]).sum(1) / count.clamp(min=1)[..., None]
        sup_ref = torch.where(has, sup_ref, torch.full_like(sup_ref, 0.5))
        x = feat + self.support_pos_proj(coord_sine_embed(sup_ref, d))

        # one graph convolution over the skeleton: D^-1/2 (A + I) D^-1/2
        adj = episode['adjacency'].to(x.dtype)  # (B, Kmax, Kmax), self loops on
        deg = adj.sum(-1).clamp(min=1)
        norm_adj = adj / deg.sqrt()[..., :, None] / deg.sqrt()[..., None, :]
        kq = self.graph_norm(x + self.graph_dropout(F.relu(norm_adj @ self.graph_proj(x))))

        proposal = None
        if self.coord_reference == 'similarity':
            # only keypoints some support sees have a feature to match
            key = F.normalize(torch.where(has, feat, torch.ones_like(feat)).float(), dim=-1)
            sim = key @ F.normalize(qtok.float(), dim=-1).transpose(1, 2)
            prob = (sim * self.match_logit_scale.exp()).softmax(-1)  # (B, Kmax, hw)
            proposal = prob @ grid  # soft-argmax, (B, Kmax, 2)
            ref = torch.where(has, proposal, torch.full_like(proposal, 0.5))
        elif self.coord_reference == 'support':
            ref = sup_ref
        else:
            ref = torch.full_like(sup_ref, 0.5)
        return memory, kq, ref.float(), proposal, has[..., 0]

    def _sequence_layout(self, kpt_queries: Tensor, ref: Tensor, num_keypoints: Tensor):
        """Base tokens (B, T, d), references (B, T, 2) and padding mask (B, T),
        with T = Kmax + 1 (the end step of each sample at its K)."""
        b, kmax, d = kpt_queries.shape
        t = torch.arange(kmax + 1, device=kpt_queries.device)
        k = num_keypoints[:, None]
        pad_q = F.pad(kpt_queries, (0, 0, 0, 1))
        end = self.end_query.to(pad_q.dtype).expand_as(pad_q)
        base = torch.where((t < k)[..., None], pad_q, end * (t == k)[..., None])
        ref_t = F.pad(ref, (0, 0, 0, 1), value=0.5)
        return base, ref_t, t > k

    def _prev_embed(self, prev_xy: Tensor, prev_known: Tensor) -> Tensor:
        """Embedding of the previous step's coordinates, (B, T, d).

        ``prev_xy`` (B, T, 2) is already shifted: entry t holds the coordinates of
        step t - 1 (entry 0 is ignored: the start token).
        """
        emb = self.prev_proj(coord_sine_embed(prev_xy, self.embed_dims))
        emb = torch.where(prev_known[..., None], emb, self.unknown_prev_embed.expand_as(emb))
        start = torch.zeros_like(prev_known)
        start[:, 0] = True
        return torch.where(start[..., None], self.start_embed.expand_as(emb), emb)

    def _decode(self, tokens: Tensor, memory: Tensor, pad: Tensor) -> Tensor:
        t = tokens.shape[1]
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=tokens.device), 1)
        return self.transformer(tokens, memory, tgt_mask=causal, tgt_key_padding_mask=pad)

    def _outputs(self, hidden: Tensor, ref: Tensor) -> Tuple[Tensor, Tensor]:
        logits = self.cls_head(hidden)
        coords = (inverse_sigmoid(ref) + self.coord_head(hidden)).sigmoid()
        return logits, coords

    # ---------------------------------------------------------------- forward
    def forward(self,
                feats: Tuple[Tensor, Tensor],
                episode: Dict[str, Tensor],
                prev_coords: Optional[Tensor] = None,
                prev_known: Optional[Tensor] = None,
                return_proposal: bool = False) -> Tuple[Tensor, ...]:
        """Teacher-forced pass over the whole sequence.

        Args:
            feats: ``(query_feat (B, C, h, w), support_feat (B, N, C, h, w))``.
            episode: Padded episode tensors (:meth:`collate_episode`):
                ``support_keypoints`` (B, N, Kmax, 2) in [0, 1],
                ``support_visible`` (B, N, Kmax) bool, ``adjacency``
                (B, Kmax, Kmax), ``num_keypoints`` (B,) long.
            prev_coords: (B, Kmax, 2) coordinates fed as "previous step"
                (ground truth in training). Step t receives ``prev_coords[:, t-1]``.
            prev_known: (B, Kmax) bool, False where a previous coordinate is
                unknown (unlabelled keypoint).
            return_proposal: Also return the similarity proposals (B, Kmax, 2)
                (None unless ``coord_reference='similarity'``) and the (B, Kmax)
                mask of keypoints seen by a support.

        Returns:
            tuple: class logits (B, Kmax + 1, 2) and coordinates (B, Kmax + 1, 2)
            in [0, 1]; step K of each sample is its end step.
        """
        memory, kq, ref, proposal, seen = self._encode(feats, episode)
        base, ref_t, pad = self._sequence_layout(kq, ref, episode['num_keypoints'])
        b, kmax = kq.shape[:2]
        if prev_coords is None:
            prev_coords = kq.new_zeros(b, kmax, 2)
            prev_known = torch.zeros(b, kmax, dtype=torch.bool, device=kq.device)
        prev_xy = F.pad(prev_coords, (0, 0, 1, 0))
        known = F.pad(prev_known.bool(), (1, 0))
        hidden = self._decode(base + self._prev_embed(prev_xy, known), memory, pad)
        logits, coords = self._outputs(hidden, ref_t)
        if return_proposal:
            return logits, coords, proposal, seen
        return logits, coords

    # -------------------------------------------------------------- episodes
    def collate_episode(self,
                        batch_data_samples: SampleList,
                        num_shots: int,
                        device,
                        with_targets: bool = False) -> Dict[str, Tensor]:
        """Pad the encoded episodes of a batch to its largest keypoint count.

        Args:
            batch_data_samples: ``PoseDataSample`` list from ``PackCapeInputs``.
            num_shots (int): Support crops per sample (the feature maps').
            device: Device of the tensors.
            with_targets (bool): Also read the query targets (the loss only).

        Returns:
            dict: ``support_keypoints`` (B, N, Kmax, 2) in [0, 1],
            ``support_visible`` (B, N, Kmax) bool, ``num_keypoints`` (B,) long,
            ``adjacency`` (B, Kmax, Kmax); with targets also ``targets``
            (B, Kmax, 2) and ``target_weights`` (B, Kmax).
        """
        metas = [ds.metainfo for ds in batch_data_samples]
        missing = [
            k for k in ('num_keypoints', 'support_keypoint_labels', 'support_keypoint_weights')
            if k not in metas[0]
        ]
        if missing:
            raise UserValueError(f'CapeSequenceHead: the data samples lack {missing}; pack '
                                 'each episode with PackCapeInputs')
        ks = [int(m['num_keypoints']) for m in metas]
        b, kmax = len(ks), max(ks)
        sup_xy = torch.zeros(b, num_shots, kmax, 2)
        sup_vis = torch.zeros(b, num_shots, kmax, dtype=torch.bool)
        for i, m in enumerate(metas):
            xy = torch.as_tensor(np.asarray(m['support_keypoint_labels'], np.float32))
            if xy.shape[0] != num_shots:
                raise UserValueError(
                    f'CapeSequenceHead: sample {i} has {xy.shape[0]} support keypoint '
                    f'sets but {num_shots} support images')
            sup_xy[i, :, :ks[i]] = xy
            sup_vis[i, :, :ks[i]] = torch.as_tensor(np.asarray(m['support_keypoint_weights'])) > 0
        episode = dict(
            support_keypoints=sup_xy.to(device),
            support_visible=sup_vis.to(device),
            num_keypoints=torch.tensor(ks, dtype=torch.long, device=device),
            adjacency=skeleton_adjacency([m.get('skeleton', []) for m in metas],
                                         ks,
                                         kmax,
                                         device=device))
        if with_targets:
            tgt = torch.zeros(b, kmax, 2, device=device)
            wgt = torch.zeros(b, kmax, device=device)
            for i, ds in enumerate(batch_data_samples):
                labels = ds.gt_instance_labels
                tgt[i, :ks[i]] = labels.keypoint_labels[0].to(device, torch.float32)
                wgt[i, :ks[i]] = labels.keypoint_weights[0].to(device, torch.float32)
            episode.update(targets=tgt, target_weights=wgt)
        return episode

    # ------------------------------------------------------------------ loss
    def loss(self,
             feats: Tuple[Tensor, Tensor],
             batch_data_samples: SampleList,
             train_cfg: ConfigType = {}) -> Dict[str, Tensor]:
        """Teacher-forced losses.

        The targets are the query's ``gt_instance_labels`` (``keypoint_labels`` in
        [0, 1], ``keypoint_weights``: 1 where labelled and inside the crop).

        Returns:
            dict: ``loss_ce`` (token class over every real step, end step
            included), ``loss_coords`` (L1 over labelled keypoints) and, with
            the similarity reference, ``loss_proposal`` (L1 of the proposals).
        """
        episode = self.collate_episode(
            batch_data_samples, feats[1].shape[1], feats[0].device, with_targets=True)
        targets, weights = episode['targets'], episode['target_weights']
        logits, coords, proposal, seen = self.forward(
            feats, episode, targets, weights > 0, return_proposal=True)
        k = episode['num_keypoints'][:, None]
        t = torch.arange(logits.shape[1], device=logits.device)
        valid = t <= k
        cls_target = (t == k).long().expand_as(valid)
        loss_ce = F.cross_entropy(logits[valid], cls_target[valid])
        w = F.pad(weights, (0, 1)).to(coords.dtype)
        tgt = F.pad(targets, (0, 0, 0, 1))
        l1 = (coords - tgt).abs().sum(-1)
        loss_coords = (l1 * w).sum() / w.sum().clamp(min=1)
        losses = dict(
            loss_ce=loss_ce * self.loss_ce_weight,
            loss_coords=loss_coords * self.loss_coords_weight)
        if proposal is not None:
            w_k = weights.to(proposal.dtype) * seen.to(proposal.dtype)
            l1p = (proposal - targets).abs().sum(-1)
            losses['loss_proposal'] = (l1p * w_k).sum() / w_k.sum().clamp(
                min=1) * self.loss_proposal_weight
        return losses

    # --------------------------------------------------------------- predict
    @torch.no_grad()
    def decode_sequence(self,
                        feats: Tuple[Tensor, Tensor],
                        episode: Dict[str, Tensor],
                        end_threshold: Optional[float] = None) -> Dict[str, Tensor]:
        """True autoregressive decoding; reads no query annotation.

        Step t runs the decoder on steps 0..t, step t's previous coordinates
        being the prediction of step t - 1. A sample stops at its keypoint count
        K or when step t's end probability exceeds ``end_threshold``; keypoints
        after an early end are missing (NaN coordinates, score 0).

        Returns:
            dict: ``coords`` (B, Kmax, 2) in [0, 1] (NaN where not decoded),
            ``scores`` (B, Kmax) keypoint-token probabilities (0 where not
            decoded), ``end_probs`` (B, Kmax) and ``num_decoded`` (B,).
        """
        if end_threshold is None:
            end_threshold = self.end_threshold
        memory, kq, ref, _, _ = self._encode(feats, episode)
        num_kpts = episode['num_keypoints']
        base, ref_t, pad = self._sequence_layout(kq, ref, num_kpts)
        b, kmax = kq.shape[:2]
        # float32 outputs whatever autocast computes the layers in
        f32 = dict(dtype=torch.float32, device=kq.device)
        coords = torch.full((b, kmax, 2), float('nan'), **f32)
        scores = torch.zeros(b, kmax, **f32)
        end_probs = torch.zeros(b, kmax, **f32)
        prev_xy = torch.zeros(b, kmax + 1, 2, **f32)
        known = torch.zeros(b, kmax + 1, dtype=torch.bool, device=kq.device)
        done = torch.zeros(b, dtype=torch.bool, device=kq.device)
        for t in range(kmax):
            active = (t < num_kpts) & ~done
            if not active.any():
                break
            tokens = base[:, :t + 1] + self._prev_embed(prev_xy[:, :t + 1], known[:, :t + 1])
            hidden = self._decode(tokens, memory, pad[:, :t + 1])[:, t]
            logits, xy = self._outputs(hidden, ref_t[:, t])
            xy = xy.float()
            p_end = logits.float().softmax(-1)[:, END]
            stop = active & (p_end > end_threshold)
            emit = active & ~stop
            coords[emit, t] = xy[emit]
            scores[emit, t] = 1 - p_end[emit]
            end_probs[active, t] = p_end[active]
            done |= stop
            prev_xy[:, t + 1] = xy
            known[:, t + 1] = True
        num_decoded = (~torch.isnan(coords[..., 0])).sum(1)
        return dict(coords=coords, scores=scores, end_probs=end_probs, num_decoded=num_decoded)

    def _decoder_for(self, input_size):
        input_size = tuple(int(v) for v in input_size)
        if self.decoder_cfg is None:
            if getattr(self.decoder, 'input_size', None) != input_size:
                self.decoder = KEYPOINT_CODECS.build(
                    dict(type='CapeSequenceCodec', input_size=input_size))
        elif tuple(self.decoder.input_size) != input_size:
            raise UserValueError(
                f'CapeSequenceHead: decoder input_size {self.decoder.input_size} differs '
                f'from the crops\' {input_size} (TopdownAffine); use one input_size')
        return self.decoder

    def predict(self,
                feats: Tuple[Tensor, Tensor],
                batch_data_samples: SampleList,
                test_cfg: ConfigType = {}) -> InstanceList:
        """Decode each sample's query keypoints (never reads the query's annotations).

        Returns:
            list[InstanceData]: one per sample, ``keypoints`` (1, K, 2) in crop
            pixels (NaN after an early end token) and ``keypoint_scores`` (1, K).
            ``TopdownPoseEstimator.add_pred_to_datasample`` maps them to the image.
        """
        if test_cfg.get('flip_test', False):
            raise UserValueError('CapeSequenceHead does not support flip test (a mirrored '
                                 'query needs mirrored supports); set '
                                 'model.test_cfg.flip_test=False')
        episode = self.collate_episode(batch_data_samples, feats[1].shape[1], feats[0].device)
        out = self.decode_sequence(feats, episode, test_cfg.get('end_threshold',
                                                                self.end_threshold))
        coords, scores = to_numpy(out['coords']), to_numpy(out['scores'])
        preds = []
        for i, ds in enumerate(batch_data_samples):
            k = int(ds.metainfo['num_keypoints'])
            keypoints, _ = self._decoder_for(ds.metainfo['input_size']).decode(coords[i:i + 1, :k])
            preds.append(
                InstanceData(keypoints=keypoints, keypoint_scores=scores[i:i + 1, :k].copy()))
        return preds


def skeleton_adjacency(skeletons: Sequence[Sequence[Sequence[int]]],
                       num_keypoints: Sequence[int],
                       kmax: int,
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
