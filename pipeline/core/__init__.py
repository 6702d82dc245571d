"""The framework-neutral core every track stands on.

- :mod:`pipeline.core.params`: strict typed params; each track registers its own sections.
- :mod:`pipeline.core.runtime`: device choice, bf16 autocast, determinism flags, threads, RNG capture.
- :mod:`pipeline.core.checkpoint`: safetensors + tensors-only state (``weights_only=True``) + JSON,
  content fingerprints.
- :mod:`pipeline.core.atomic`: the one way a stage replaces an output folder.
- :mod:`pipeline.core.trainer`: a plain epoch loop with resume after ``kill -9`` (non-Avalanche stages).
- :mod:`pipeline.core.distributed`: ranks, model wrapping, samplers, metric reduction (single-process for now).

Nothing here imports Avalanche or a method track.
"""
