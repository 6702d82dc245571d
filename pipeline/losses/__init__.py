"""Loss functions of COCONUT (Cappellazzo et al., continual contrastive spoken language understanding).

- :class:`RehearsalContrastiveLoss`: NSPT / SupCon / NTPT supervised contrastive loss on rehearsal anchors.
- :class:`MultimodalInfoNCELoss`: the audio-text InfoNCE "MM" loss on the current task's samples.
- :class:`SequenceKDLoss`: sequence-level KD, token CE towards stored teacher pseudo-transcripts.

Each computes in float32 also inside bf16 autocast (:func:`float32_loss`, which other losses use too).
"""

from pipeline.losses._precision import float32_loss
from pipeline.losses.multimodal import MultimodalInfoNCELoss
from pipeline.losses.seq_kd import SequenceKDLoss
from pipeline.losses.supcon import VARIANTS, RehearsalContrastiveLoss

__all__ = ["RehearsalContrastiveLoss", "MultimodalInfoNCELoss", "SequenceKDLoss", "VARIANTS", "float32_loss"]
