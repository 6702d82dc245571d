"""Loss functions of the tracks.

COCONUT (Cappellazzo et al., continual contrastive spoken language understanding):

- :class:`RehearsalContrastiveLoss`: NSPT / SupCon / NTPT supervised contrastive loss on rehearsal anchors.
- :class:`MultimodalInfoNCELoss`: the audio-text InfoNCE "MM" loss on the current task's samples.
- :class:`SequenceKDLoss`: sequence-level KD, token CE towards stored teacher pseudo-transcripts.

Cross-modal transfer to a frozen tower (CWCL, Srinivasa et al., NeurIPS 2023):

- :class:`CWCLLoss`: continuously weighted contrastive loss, targets ``w_ij = (1 + cos(q_i, q_j)) / 2`` from
  the frozen modality (:func:`cwcl_weights`) towards the frozen side, one-hot InfoNCE back; summed.
- :class:`ContrastiveLoss`: its CL baseline, symmetric one-hot InfoNCE with the frozen tower (LiT), summed.

Multimodal mixup contrastive learning (M3CoL, Kumar, Singhal et al., TMLR 2025):

- :class:`M3CoLoss`: M3Co, each modality mixed with its own :class:`Mix` draw (:func:`draw_mix`, :func:`mix`,
  :func:`mix_targets`) and contrasted with the other's clean embeddings (:func:`m3co_term`); summed.
- :class:`SoftCLIPLoss`: InfoNCE with soft targets from the target modality's own similarities
  (:func:`soft_clip_term`), both ways summed; M3CoL's loss after the first third of training.

GenView (Li et al., ECCV 2024) on a SimCLR baseline (Chen et al., ICML 2020):

- :class:`NTXentLoss`: SimCLR's NT-Xent over the 2N views, optionally weighting each pair (detached weights);
  :func:`ntxent_pair_losses` gives the per-pair losses.
- :class:`GenViewLoss`: NT-Xent weighted by :func:`quality_weights` (``N softmax(gamma (s_f - s_b))``, from
  :func:`soft_foreground` maps and :func:`pooled` features); :func:`foreground_ratio` (one-component PCA of
  frozen feature-map tokens) and :func:`noise_bin` (GenView's adaptive noise levels).

Each computes in float32 also inside bf16 autocast (:func:`float32_loss`, which other losses use too).
"""

from pipeline.losses._precision import float32_loss
from pipeline.losses.cwcl import CWCLLoss, ContrastiveLoss, cwcl_weights
from pipeline.losses.genview import GenViewLoss, foreground_ratio, noise_bin, pooled, quality_weights, soft_foreground
from pipeline.losses.m3co import M3CoLoss, Mix, draw_mix, m3co_term, mix, mix_targets
from pipeline.losses.multimodal import MultimodalInfoNCELoss
from pipeline.losses.ntxent import NTXentLoss, ntxent_pair_losses
from pipeline.losses.seq_kd import SequenceKDLoss
from pipeline.losses.softclip import SoftCLIPLoss, soft_clip_term
from pipeline.losses.supcon import VARIANTS, RehearsalContrastiveLoss

__all__ = [
    "RehearsalContrastiveLoss",
    "MultimodalInfoNCELoss",
    "SequenceKDLoss",
    "VARIANTS",
    "float32_loss",
    "CWCLLoss",
    "ContrastiveLoss",
    "cwcl_weights",
    "M3CoLoss",
    "Mix",
    "draw_mix",
    "mix",
    "mix_targets",
    "m3co_term",
    "SoftCLIPLoss",
    "soft_clip_term",
    "NTXentLoss",
    "ntxent_pair_losses",
    "GenViewLoss",
    "quality_weights",
    "soft_foreground",
    "pooled",
    "foreground_ratio",
    "noise_bin",
]
