"""The embedded corpus: synthetic spoken commands in the exact Fluent Speech Commands layout.

- :mod:`~pipeline.data.synth.engine`: espeak-ng through ctypes (:func:`espeak_paths`,
  :func:`list_variants`, the pristine per-speaker engine :class:`Espeak`, :func:`check_engine`);
- :mod:`~pipeline.data.synth.speakers`: the seeded plan, who says what (:class:`Speaker`,
  :class:`UtterancePlan`, :func:`plan_speakers`, :func:`plan_utterances`, the random streams);
- :mod:`~pipeline.data.synth.effects`: one utterance's acoustics (:func:`draw_acoustics`,
  :func:`resample`, room, microphone, coloured noise, :func:`render_utterance`);
- :mod:`~pipeline.data.synth.writer`: the corpus on disk (:func:`synthesize_corpus`: worker
  processes, WAV and CSV files, atomic replacement).
"""

from pipeline.data.synth.writer import synthesize_corpus

__all__ = ["synthesize_corpus"]
