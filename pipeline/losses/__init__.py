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

Each computes in float32 also inside bf16 autocast (:func:`float32_loss`, which other losses use too).
"""

from pipeline.losses._precision import float32_loss
from pipeline.losses.cwcl import CWCLLoss, ContrastiveLoss, cwcl_weights
from pipeline.losses.m3co import M3CoLoss, Mix, draw_mix, m3co_term, mix, mix_targets
from pipeline.losses.multimodal import MultimodalInfoNCELoss
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
]
