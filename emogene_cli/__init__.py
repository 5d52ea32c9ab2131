"""emogene: audio-driven emotional 3-D talking heads (EmoGene, FG 2025) as a command-line tool.

The code is laid out as the EmoGene figure (``shared/DESIGN.md``); imports run one way,
top to bottom, and ``tests/test_layout.py`` keeps it so:

``cli``, ``commands/``
    the Typer layer: parse, call a pipeline, report.
``pipelines/``
    the stages a command runs: :mod:`~.pipelines.preprocess`, :mod:`~.pipelines.fit`,
    :mod:`~.pipelines.speak`, :mod:`~.pipelines.evaluate`; each reads top to bottom as its
    part of the figure and is importable without the CLI.
the parts, one package each
    :mod:`.audio` (loading, features, voice activity), :mod:`.face` (MediaPipe tracking,
    crop, masks and plate), :mod:`.motion` (audio-to-motion: corpus, training, lip sync,
    post-processing, idle poses), :mod:`.render` (fitting the renderer, the loaded
    identity, frames), :mod:`.emotion` (control, LDM training, motion-to-emotion,
    calibrations), :mod:`.evaluation` (metrics with known answers, the report).
``models/``
    the torch modules only: audio-to-motion VAE, LDM, renderer.
the ground floor
    :mod:`.store` (artifacts), :mod:`.dataset` (the identity dataset every stage reads),
    :mod:`.media`, :mod:`.modelfiles`, :mod:`.errors`, :mod:`.interrupt`, and the two data
    contracts the models share with the parts: :mod:`.geometry` (landmark index sets, head
    poses, the canonical frame) and :mod:`.emotions` (the emotion vocabulary).

Among the parts, ``audio``, ``face`` and ``evaluation`` stand alone; ``motion`` uses them;
``render`` uses ``audio``, ``evaluation`` and ``motion`` (a loaded identity carries its
audio-to-motion model); ``emotion`` uses ``face``, ``evaluation``, ``motion`` and ``render``
(its calibrations render and re-track).
"""

__version__ = "0.1.0"
