"""The torch modules, and nothing above them: each saved and loaded as safetensors.

- :mod:`.a2m`: the audio-to-motion VAE (GeneFace++'s audio-to-landmark model).
- :mod:`.ldm`: EmoGene's landmark deformation model.
- :mod:`.renderer`: the person's talking-head NeRF (head and torso), split nerfstudio-style.

Models import only the ground floor (:mod:`emogene_cli.geometry`, :mod:`emogene_cli.emotions`,
:mod:`emogene_cli.store`, :mod:`emogene_cli.errors`); training and inference around them live
in the parts (:mod:`emogene_cli.motion`, :mod:`emogene_cli.emotion`, :mod:`emogene_cli.render`).
"""
