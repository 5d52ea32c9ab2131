"""emogene: audio-driven emotional 3-D talking heads (EmoGene, FG 2025) as a command-line tool.

The stages (preprocess, fitting, LDM training, speaking) are importable without the CLI;
see :mod:`emogene_cli.preprocess`, :mod:`emogene_cli.fit`, :mod:`emogene_cli.train_ldm` and
:mod:`emogene_cli.speak`.
"""

__version__ = "0.1.0"
