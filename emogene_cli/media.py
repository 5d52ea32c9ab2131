"""Media I/O through ffmpeg (ffmpeg-python): probing, frame and audio decoding, H.264 writing.

The one reader and writer of video and audio in emogene. ffmpeg is the system ``ffmpeg`` if
on ``PATH``, else the static binary shipped by ``imageio-ffmpeg``. There may be no
``ffprobe``, so :func:`probe` parses ``ffmpeg -i``'s stream list instead.

Every decoding error becomes an :class:`~emogene_cli.errors.InputError` naming the file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

import ffmpeg
import numpy as np

from .errors import InputError, NotFoundError

FPS = 25
SAMPLE_RATE = 16000
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".heic", ".avif"})


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: ``$EMOGENE_FFMPEG``, ``ffmpeg`` on PATH, or imageio-ffmpeg's."""
    env = os.environ.get("EMOGENE_FFMPEG")
    if env:
        return env
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # pragma: no cover - depends on the machine
        raise NotFoundError("ffmpeg not found: install ffmpeg or `pip install imageio-ffmpeg`") from exc


@dataclass
class MediaInfo:
    """What :func:`probe` found in a media file. Sizes in pixels, duration in seconds."""

    path: Path
    duration: float
    has_video: bool
    has_audio: bool
    width: int = 0
    height: int = 0
    fps: float = 0.0
    audio_rate: int = 0
    container: str = ""  # ffmpeg's demuxer, e.g. "mov,mp4,m4a,3gp,3g2,mj2", "wav", "png_pipe"

    @property
    def is_image(self) -> bool:
        """A still image (read by one of ffmpeg's image demuxers, or an image file name without sound)."""
        if self.container == "image2" or self.container.endswith("_pipe"):
            return True
        return self.path.suffix.lower() in IMAGE_SUFFIXES and not self.has_audio


def _check_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise NotFoundError("file not found", path=path)
    if not path.is_file():
        raise InputError("not a file", path=path)
    if not os.access(path, os.R_OK):
        raise InputError("file is not readable (permission denied)", path=path)
    if path.stat().st_size == 0:
        raise InputError("empty file (0 bytes)", path=path)
    return path


def probe(path: str | Path) -> MediaInfo:
    """Read the streams of a media file with ``ffmpeg -i``.

    Raises:
        NotFoundError: the file does not exist.
        InputError: ffmpeg cannot read it as media.
    """
    path = _check_file(path)
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True, errors="replace")
    err = proc.stderr
    if "Stream #" not in err:
        last = err.strip().splitlines()[-1] if err.strip() else "unknown error"
        raise InputError(f"unreadable media file ({last.split(': ')[-1]})", path=path)
    info = MediaInfo(path=path, duration=0.0, has_video=False, has_audio=False)
    fmt = re.search(r"Input #0, (.+?), from ", err)
    if fmt:
        info.container = fmt.group(1)
    m = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", err)
    if m:
        info.duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    for line in err.splitlines():
        if "Stream #" in line and "Video:" in line and "attached pic" not in line and not info.has_video:
            info.has_video = True
            size = re.search(r", (\d{2,5})x(\d{2,5})", line)
            if size:
                info.width, info.height = int(size.group(1)), int(size.group(2))
            fps = re.search(r"([\d.]+) fps", line) or re.search(r"([\d.]+) tbr", line)
            if fps:
                info.fps = float(fps.group(1))
        elif "Stream #" in line and "Audio:" in line and not info.has_audio:
            info.has_audio = True
            rate = re.search(r"(\d+) Hz", line)
            if rate:
                info.audio_rate = int(rate.group(1))
    return info


def require_video(path: str | Path, *, audio_hint: str = "") -> MediaInfo:
    """:func:`probe` a file that must be a video; an image or an audio file is named as such.

    Args:
        path: the file.
        audio_hint: appended to the error when the file is audio only (what to do with it).

    Raises:
        NotFoundError: the file does not exist.
        InputError: unreadable; a still image ("is an image, not a video"); audio without
            video ("is an audio file, not a video"); no video stream.
    """
    info = probe(path)
    if info.is_image:
        raise InputError("is an image, not a video: a video of the person talking is needed (mp4, mov, mkv, ...)", path=path)
    if not info.has_video or not info.width:
        if info.has_audio:
            raise InputError("is an audio file, not a video (no video stream)" + (f"; {audio_hint}" if audio_hint else ""), path=path)
        raise InputError("no video stream", path=path)
    return info


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the audio track of any file ffmpeg reads, as mono float32 at ``sample_rate`` Hz.

    Any input rate or channel count is resampled / down-mixed (ffmpeg's resampler).

    Returns:
        ``[N]`` float32 in [-1, 1].

    Raises:
        NotFoundError / InputError: missing or unreadable file, or no audio track.
    """
    info = probe(path)
    if info.is_image:
        raise InputError("is an image, not audio: speech audio is needed (wav, mp3, m4a, or a video with sound)", path=path)
    if not info.has_audio:
        raise InputError("no audio track", path=path)
    try:
        out, _ = (
            ffmpeg.input(str(path))
            .output("pipe:", format="f32le", acodec="pcm_f32le", ac=1, ar=sample_rate)
            .global_args("-nostdin", "-loglevel", "error")
            .run(cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True)
        )
    except ffmpeg.Error as exc:
        msg = exc.stderr.decode(errors="replace").strip().splitlines()
        raise InputError(f"cannot decode audio ({msg[-1] if msg else 'ffmpeg failed'})", path=path) from exc
    audio = np.frombuffer(out, dtype=np.float32).copy()
    if audio.size == 0:
        raise InputError("audio track is empty", path=path)
    return audio


def read_frames(
    path: str | Path,
    *,
    fps: float = FPS,
    crop: tuple[int, int, int, int] | None = None,
    size: int | None = None,
) -> Iterator[np.ndarray]:
    """Decode video frames resampled to ``fps``, optionally cropped and resized.

    Args:
        path: a video file.
        fps: output frame rate (frames are dropped or repeated by ffmpeg's ``fps`` filter).
        crop: ``(x, y, w, h)`` in source pixels, applied before resizing; the box may extend
            past the frame; the outside is padded with black pixels.
        size: output side length in pixels (square output), or None for the crop/source size.

    Yields:
        ``[H, W, 3]`` uint8 RGB frames.
    """
    info = require_video(path)
    stream = ffmpeg.input(str(path)).filter("fps", fps=fps)
    w, h = info.width, info.height
    if crop is not None:
        x, y, cw, ch = (int(v) for v in crop)
        # crop/pad in RGB: in the source's subsampled yuv420p they round odd offsets and sizes
        stream = stream.filter("format", "rgb24")
        # pad first so that a box reaching past the frame stays valid
        pad_l, pad_t = max(0, -x), max(0, -y)
        pad_r, pad_b = max(0, x + cw - w), max(0, y + ch - h)
        if pad_l or pad_t or pad_r or pad_b:
            stream = stream.filter("pad", w + pad_l + pad_r, h + pad_t + pad_b, pad_l, pad_t)
        stream = stream.filter("crop", cw, ch, x + pad_l, y + pad_t)
        w, h = cw, ch
    if size is not None:
        stream = stream.filter("scale", size, size, flags="area")
        w = h = size
    proc = (
        stream.output("pipe:", format="rawvideo", pix_fmt="rgb24")
        .global_args("-nostdin", "-loglevel", "error")
        .run_async(cmd=ffmpeg_exe(), pipe_stdout=True, pipe_stderr=True)
    )
    frame_bytes = w * h * 3
    try:
        while True:
            buf = proc.stdout.read(frame_bytes)
            if len(buf) < frame_bytes:
                break
            yield np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        code = proc.wait()
    if code != 0:
        raise InputError(f"cannot decode video ({err.strip().splitlines()[-1] if err.strip() else 'ffmpeg failed'})", path=path)


class VideoWriter:
    """Write RGB frames to an H.264 mp4 (yuv420p, ``fps``), optionally muxing an audio file as AAC.

    The file appears at ``path`` only when :meth:`close` succeeds (written to a temporary
    file in the same folder, then renamed). Use as a context manager::

        with VideoWriter("out.mp4", 256, 256, audio="speech.wav") as w:
            for frame in frames:          # [256, 256, 3] uint8
                w.write(frame)
    """

    def __init__(self, path: str | Path, width: int, height: int, *, fps: float = FPS, audio: str | Path | None = None, crf: int = 20) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".mp4", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.width, self.height = width, height
        self.frames = 0
        video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", framerate=fps)
        streams = [video]
        kwargs = dict(vcodec="libx264", pix_fmt="yuv420p", crf=crf, preset="medium", r=fps, movflags="+faststart")
        if audio is not None:
            streams.append(ffmpeg.input(str(audio)).audio)
            kwargs.update(acodec="aac", audio_bitrate="128k", ar=48000, ac=1)
        self.proc = (
            ffmpeg.output(*streams, str(self.tmp), **kwargs)
            .global_args("-nostdin", "-loglevel", "error", "-y")
            .run_async(cmd=ffmpeg_exe(), pipe_stdin=True, pipe_stderr=True)
        )

    def write(self, frame: np.ndarray) -> None:
        """Append one ``[H, W, 3]`` uint8 RGB frame."""
        if frame.shape != (self.height, self.width, 3):
            raise ValueError(f"frame shape {frame.shape} != {(self.height, self.width, 3)}")
        self.proc.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
        self.frames += 1

    def close(self) -> Path:
        """Finish encoding and move the file into place. Returns the final path."""
        self.proc.stdin.close()
        err = self.proc.stderr.read().decode(errors="replace")
        code = self.proc.wait()
        if code != 0:
            self.tmp.unlink(missing_ok=True)
            raise InputError(f"ffmpeg failed to write video ({err.strip()[-300:]})", path=self.path)
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Stop encoding and delete the temporary file."""
        try:
            self.proc.stdin.close()
        except Exception:
            pass
        self.proc.kill()
        self.proc.wait()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write mono float32 audio as a 16-bit PCM wav through ffmpeg (used to mux trimmed audio)."""
    path = Path(path)
    pcm = np.clip(np.asarray(audio, dtype=np.float32), -1, 1)
    (
        ffmpeg.input("pipe:", format="f32le", ac=1, ar=sample_rate)
        .output(str(path), acodec="pcm_s16le")
        .global_args("-nostdin", "-loglevel", "error", "-y")
        .run(cmd=ffmpeg_exe(), input=pcm.tobytes(), capture_stdout=True, capture_stderr=True)
    )
    return path


def write_frames(path: str | Path, frames: Iterable[np.ndarray], *, fps: float = FPS, audio: str | Path | None = None) -> Path:
    """Convenience wrapper of :class:`VideoWriter` for an iterable of equally sized frames."""
    it = iter(frames)
    first = next(it)
    with VideoWriter(path, first.shape[1], first.shape[0], fps=fps, audio=audio) as writer:
        writer.write(first)
        for frame in it:
            writer.write(frame)
    return Path(path)
