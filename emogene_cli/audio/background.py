"""Audio features computed in a second process while the caller does other work.

Loading a speech encoder (transformers' Whisper: about 4-5 s of imports and weights on a
2-core CPU) and pYIN (0.18 s per second of audio) hold one core for most of their time, while
MediaPipe tracking uses little more than one. ``preprocess`` starts the features in a second
process before it looks for the face and collects them after tracking: on obama_20s
(256x256, Whisper) 22-25 s became 17-20 s, with the same rows bit for bit.

    with AudioFeaturesInBackground(video, num_frames=T + 25, kind="whisper") as pending:
        ...                                   # track the face meanwhile
        audio, feats = pending.result()       # [N] float32 16 kHz, AudioFeatures of T + 25 frames

``speak`` does the same with the part of the features that needs librosa only, pYIN's f0 and
the voice activity (:class:`PitchInBackground`): librosa's imports and pYIN (about 2 s for a
short clip) run while the parent imports transformers and runs the Whisper encoder, which
need no librosa.

    with PitchInBackground(audio, num_frames=T) as pending:
        ...                                   # the speech encoder meanwhile
        f0, active = pending.result()         # [T] Hz (0 unvoiced), [T] bool

The child is a fresh interpreter (not a fork: the parent may hold torch's and MediaPipe's
threads; not multiprocessing's spawn, which re-runs the caller's script) in a session of its
own, so that a Ctrl-C reaches only the parent, whose interrupt handling ends it
(:meth:`AudioFeaturesInBackground.close`, also on any error in between). The child also
watches its stdin, which the parent holds open: when the parent dies in any way (killed,
crashed, its terminal closed), the pipe closes and the child exits at once.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, Self

import numpy as np

from ..errors import EmogeneError
from .features import AudioFeatures


def _child_command() -> list[str]:
    """The child's command line: this interpreter importing this package from where the parent found it.

    ``-c`` would put the working directory first on ``sys.path``; the package's own root goes
    there instead, so that a folder holding other code cannot shadow it.
    """
    root = str(Path(__file__).resolve().parents[2])
    code = (f"import sys; sys.path[0] = {root!r}; "
            "from emogene_cli.audio.background import _child_main; _child_main()")
    return [sys.executable, "-c", code]


def _exit_when_parent_goes(stream: Any) -> None:
    """Read ``stream`` (the parent's end of stdin) until it closes, then end this process."""
    try:
        while stream.read(4096):
            pass
    finally:
        os._exit(1)


def _portable(exc: BaseException, child_traceback: str) -> tuple[BaseException, str]:
    """``exc`` if it survives a pickle round trip, else a RuntimeError with its type and text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc, child_traceback
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}"), child_traceback


def _features_job(path: str, num_frames: int, options: dict, threads: int) -> tuple[np.ndarray, AudioFeatures]:
    """The child's side of :class:`AudioFeaturesInBackground`."""
    import torch

    torch.set_num_threads(threads)
    from .features import compute_audio_features, load_audio

    audio = load_audio(path)
    return audio, compute_audio_features(audio, num_frames=num_frames, **options)


def _pitch_job(audio: np.ndarray, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The child's side of :class:`PitchInBackground` (librosa only: torch is never imported)."""
    from .activity import voice_activity
    from .features import pitch

    return pitch(audio, num_frames), voice_activity(audio, num_frames)


_JOBS = {"features": _features_job, "pitch": _pitch_job}


def _child_main() -> None:
    """The child process: read the request (one pickle: a job name and its arguments) on stdin,
    write the answer (one pickle) on stdout.

    The answer is ``("ok", result)`` or ``("error", (exception, traceback text))``.
    """
    # stdout carries the answer only: what anything prints, from Python or C, goes to stderr
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        job, args = pickle.load(sys.stdin.buffer)
        threading.Thread(target=_exit_when_parent_goes, args=(sys.stdin.buffer,), daemon=True).start()
        answer: tuple[str, Any] = ("ok", _JOBS[job](*args))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent, which raises it
        answer = ("error", _portable(exc, traceback.format_exc()))
    try:
        pickle.dump(answer, out)
        out.flush()
    except OSError:  # the parent is gone
        pass
    os._exit(0)  # not through interpreter shutdown: the watching thread still blocks on stdin


def _raise_child_error(exc: BaseException, child_traceback: str, what: str = "audio-feature") -> None:
    """Raise what the child raised: a user error as itself, anything else with the child's traceback attached."""
    if isinstance(exc, EmogeneError):
        raise exc
    raise RuntimeError(f"the {what} process failed: {type(exc).__name__}: {exc}\n{child_traceback}") from exc


class _InBackground:
    """One job of :data:`_JOBS` in a second process; see the subclasses."""

    what = "audio-feature"

    def __init__(self, path: Path | None, job: str, args: tuple) -> None:
        self.path = path
        # its own session: a Ctrl-C in the terminal reaches the parent only, which ends this process (close)
        self._proc = subprocess.Popen(_child_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      start_new_session=True)
        try:
            request = pickle.dumps((job, args), protocol=pickle.HIGHEST_PROTOCOL)
            # a request larger than the pipe's buffer (the pitch job sends the audio: 0.5 MB for 8 s)
            # is written by a thread, so that the caller goes on while the child starts and reads it;
            # stdin stays open afterwards: the child exits when it closes (close(), or this process ending)
            self._writer = threading.Thread(target=self._send, args=(request,), name="emogene-request", daemon=True)
            self._writer.start()
        except BaseException:
            self._writer = None
            self.close()
            raise

    def _send(self, request: bytes) -> None:
        try:
            self._proc.stdin.write(request)
            self._proc.stdin.flush()
        except (OSError, ValueError):  # the child is gone (result() says so), or close() came first
            pass

    def result(self) -> Any:
        """Wait for the child and return its result; raises what it raised.

        Raises:
            EmogeneError: the child's own, or one naming the file when the child ended without
                a readable answer (killed, out of memory).
            RuntimeError: any other error of the child, with its traceback.
        """
        try:
            status, value = pickle.load(self._proc.stdout)
        except (EOFError, pickle.UnpicklingError, OSError, ValueError) as exc:
            code = self._proc.wait()
            raise EmogeneError(f"the {self.what} process ended without a result (exit code {code}; {type(exc).__name__})",
                               path=self.path) from None
        finally:
            self.close()
        if status == "ok":
            return value
        _raise_child_error(*value, what=self.what)

    def close(self) -> None:
        """End the child if it still runs and release its pipes (safe to call twice).

        The child is killed first: a request still being written then fails at once, and its
        thread ends before the pipe is closed under it.
        """
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        if self._writer is not None:
            self._writer.join()
        for stream in (self._proc.stdin, self._proc.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AudioFeaturesInBackground(_InBackground):
    """:func:`~.features.compute_audio_features` of a media file's sound track, in a second process.

    Args:
        path: a video or audio file (its sound is read with :func:`~.features.load_audio`).
        num_frames: video frames ``T`` (25 fps) to cover: the features come back as ``[2T, D]``
            and f0 as ``[T]``; ask for a few more than you expect and trim them, which gives
            the same rows (each row depends on the audio only).
        kind, hubert, whisper, device, store_dir: as :func:`~.features.compute_audio_features`.
        threads: torch threads in the child (default: all cores but one, at least one; the
            caller keeps a core for its own work).

    :meth:`result` returns ``(audio [N] float32 16 kHz, AudioFeatures)`` or raises what the
    child raised: an :class:`~emogene_cli.errors.EmogeneError` as itself, anything else as a
    RuntimeError carrying the child's traceback. Use it as a context manager, or call
    :meth:`close`.
    """

    def __init__(self, path: str | Path, *, num_frames: int, kind: str = "auto", hubert: str | None = None,
                 whisper: str | None = None, device: str = "cpu", store_dir: Path | None = None,
                 threads: int | None = None) -> None:
        threads = max(1, (os.cpu_count() or 2) - 1) if threads is None else threads
        options = {"kind": kind, "hubert": hubert, "whisper": whisper, "device": device, "store_dir": store_dir}
        super().__init__(Path(path), "features", (str(path), int(num_frames), options, int(threads)))

    def result(self) -> tuple[np.ndarray, AudioFeatures]:
        """``(audio [N] float32 16 kHz, AudioFeatures)``; raises what the child raised (see :meth:`_InBackground.result`)."""
        return super().result()


class PitchInBackground(_InBackground):
    """pYIN's f0 (:func:`~.features.pitch`) and the voice activity (:func:`~.activity.voice_activity`)
    of ``audio`` in a second process, which imports librosa but not torch.

    Args:
        audio: ``[N]`` float32 16 kHz mono.
        num_frames: video frames ``T`` (25 fps).
        path: the file the audio came from, named in an error.

    :meth:`result` returns ``(f0 [T] float32 Hz (0 = unvoiced), active [T] bool)``, the same
    arrays as the two functions called here, or raises what the child raised (see
    :class:`AudioFeaturesInBackground`).
    """

    what = "pitch"

    def __init__(self, audio: np.ndarray, *, num_frames: int, path: str | Path | None = None) -> None:
        super().__init__(Path(path) if path is not None else None, "pitch",
                         (np.ascontiguousarray(audio, dtype=np.float32), int(num_frames)))

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(f0 [T], active [T])``; raises what the child raised (see :meth:`_InBackground.result`)."""
        return super().result()
