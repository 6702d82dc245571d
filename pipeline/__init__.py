"""Multimodal continual and cross-modal contrastive learning: a DVC-staged research pipeline."""

__version__ = "0.1.0"
