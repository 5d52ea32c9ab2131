"""Audio features computed in a second process while the caller does other work.

Loading a speech encoder (transformers' Whisper: about 4-5 s of imports and weights on a
2-core CPU) and pYIN (0.18 s per second of audio) hold one core for most of their time, while
MediaPipe tracking uses little more than one. ``preprocess`` starts the features in a second
process before it looks for the face and collects them after tracking: on obama_20s
(256x256, Whisper) 22-25 s became 17-19 s, with the same rows bit for bit.

    with AudioFeaturesInBackground(video, num_frames=T + 25, kind="whisper") as pending:
        ...                                   # track the face meanwhile
        audio, feats = pending.result()       # [N] float32 16 kHz, AudioFeatures of T + 25 frames

The child is a fresh interpreter (not a fork: the parent may hold torch's and MediaPipe's
threads; not multiprocessing's spawn, which re-runs the caller's script) in a session of its
own, so that a Ctrl-C reaches only the parent, whose interrupt handling ends it
(:meth:`AudioFeaturesInBackground.close`, also on any error in between): an interrupted or
failed run leaves no process behind.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EmogeneError
from .features import AudioFeatures

#: the child: a fresh interpreter that imports this module (not ``-m``: the package has imported it already)
_CHILD = "from emogene_cli.audio.background import _child_main; _child_main()"


def _child_main() -> None:
    """The child process: read the request (pickled) on stdin, write ``("ok", (audio, feats))`` or the error on stdout."""
    # stdout carries the answer only: what anything prints, from Python or C, goes to stderr
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        path, num_frames, options, threads = pickle.load(sys.stdin.buffer)
        import torch

        torch.set_num_threads(threads)
        from .features import compute_audio_features, load_audio

        audio = load_audio(path)
        answer: tuple[str, Any] = ("ok", (audio, compute_audio_features(audio, num_frames=num_frames, **options)))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent, which raises it
        answer = ("error", (exc, traceback.format_exc()))
    try:
        data = pickle.dumps(answer)
    except Exception:  # an exception that does not pickle: its text
        data = pickle.dumps(("error", (RuntimeError(repr(answer[1][0])), answer[1][1])))
    out.write(data)
    out.flush()


class AudioFeaturesInBackground:
    """:func:`~.features.compute_audio_features` of a media file's sound track, in a second process.

    Args:
        path: a video or audio file (its sound is read with :func:`~.features.load_audio`).
        num_frames: video frames ``T`` (25 fps) to cover: the features come back as ``[2T, D]``
            and f0 as ``[T]``; ask for a few more than you expect and trim them, which gives
            the same rows (each row depends on the audio only).
        kind, hubert, whisper, device, store_dir: as :func:`~.features.compute_audio_features`.
        threads: torch threads in the child (1 leaves the other core to the caller).

    :meth:`result` returns ``(audio [N] float32 16 kHz, AudioFeatures)`` or raises what the
    child raised (an :class:`~emogene_cli.errors.EmogeneError` as itself; anything else with the
    child's traceback as a note). Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | Path, *, num_frames: int, kind: str = "auto", hubert: str | None = None,
                 whisper: str | None = None, device: str = "cpu", store_dir: Path | None = None,
                 threads: int = 1) -> None:
        options = {"kind": kind, "hubert": hubert, "whisper": whisper, "device": device, "store_dir": store_dir}
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])  # emogene_cli's parent: also when run from a checkout
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        # its own session: a Ctrl-C in the terminal reaches the parent only, which ends this process (close)
        self._proc = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      env=env, start_new_session=True)
        try:
            self._proc.stdin.write(pickle.dumps((str(path), int(num_frames), options, int(threads))))
            self._proc.stdin.close()
        except OSError:  # the child is already gone: result() says so
            pass

    def result(self) -> tuple[np.ndarray, AudioFeatures]:
        """Wait for the child and return its ``(audio, features)``; raises what it raised.

        Raises:
            EmogeneError: the child's own, or one saying it ended without an answer (killed, out of memory).
        """
        try:
            data = self._proc.stdout.read()
            code = self._proc.wait()
        finally:
            self.close()
        if not data:
            raise EmogeneError(f"the audio-feature process ended without a result (exit code {code})")
        status, value = pickle.loads(data)
        if status == "ok":
            return value
        exc, child_traceback = value
        if not isinstance(exc, EmogeneError):
            exc.add_note(f"in the audio-feature process:\n{child_traceback}")
        raise exc

    def close(self) -> None:
        """End the child if it still runs and release its pipes (safe to call twice)."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._proc.stdout.close()

    def __enter__(self) -> "AudioFeaturesInBackground":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
