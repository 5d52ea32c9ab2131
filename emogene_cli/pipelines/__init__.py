"""The stages a command runs, each reading top to bottom as its part of the EmoGene figure.

- :mod:`.preprocess`: a talking video -> the identity dataset (crop, landmarks, masks,
  background plate, audio features).
- :mod:`.fit`: the identity dataset -> its renderer and audio-to-motion model.
- :mod:`.speak`: speech + emotion -> video (features -> audio-to-motion -> motion-to-emotion
  -> post-processing -> head poses -> renderer -> mux).
- :mod:`.evaluate`: a fitted identity -> figures (reconstruction, lip sync, emotion, idle
  poses) and an HTML report; its emotion part is :mod:`.evaluate_emotion`, its lip sync against
  another person's video :mod:`.reference`.
- :mod:`.emotion_loao`: each actor of the emotion data left out in turn, every emotion of an
  identity rendered and graded by that actor (``train-ldm --render``).

The stage modules are imported by name (``from emogene_cli.pipelines.speak import speak``);
this package re-exports nothing, so that a stage's module and its main function can share a
name. Training the shared models (``train-ldm``, ``train-a2m``) is one call into
:mod:`emogene_cli.emotion` and :mod:`emogene_cli.motion`, made by the commands directly
(``train-ldm --render`` adds :mod:`.emotion_loao`).
"""
