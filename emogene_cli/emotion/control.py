"""Emotion control for ``speak``: blends, an emotion track over time, all emotions at once.

Pure numpy + csv/json; nothing here loads a model. Everything ends in one per-frame
**weight matrix** ``[T, 8]`` float32 over :data:`~emogene_cli.emotions.EMOTIONS` at 25 fps
with the intensity folded in: row ``t`` is ``intensity_t × blend_t`` (blend weights summing
to 1), all zero means neutral. The landmark deformation model turns it into a displacement
(:meth:`~emogene_cli.models.ldm.LandmarkDeformationModel.mixed_displacement`).

Usage::

    blend = parse_blend("happy:0.7,surprised:0.3")        # {"happy": 0.7, "surprised": 0.3}
    w = constant_weights(blend, intensity=1.0, num_frames=200)          # [200, 8]
    rows = load_track("track.csv")                         # start,end,emotion,intensity rows
    rows, warnings = clip_track(rows, duration=8.0)
    w = track_weights(rows, num_frames=200, transition=0.3)             # eased, [200, 8]

Spec grammar (``--emotion`` and a track's ``emotion`` column): a name (aliases such as
``surprise`` accepted), or a blend ``name:weight,name:weight`` (weights ≥ 0, not all zero,
normalised to sum 1; a name without ``:weight`` counts 1), or ``all`` (``--emotion`` only).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..emotions import EMOTIONS, parse_emotion
from ..errors import EmogeneError, NotFoundError

FPS = 25.0
MAX_INTENSITY = 3.0
TRACK_COLUMNS = ("start", "end", "emotion", "intensity")
ALL = "all"


def _valid_list() -> str:
    return ", ".join(EMOTIONS)


def is_all(spec: str | None) -> bool:
    """True for the ``all`` spec (every emotion side by side)."""
    return (spec or "").strip().lower() == ALL


def parse_blend(spec: str, *, path: str | Path | None = "--emotion", where: str = "") -> dict[str, float]:
    """A name or blend spec -> ``{canonical emotion: weight}``, weights normalised to sum 1.

    ``"happy"`` -> ``{"happy": 1.0}``; ``"happy:0.7,surprise:0.3"`` -> ``{"happy": 0.7,
    "surprised": 0.3}``; ``"happy:2,sad:2"`` -> 0.5 each. A name listed twice adds up.
    ``neutral`` may take part in a blend (it dilutes the others).

    Args:
        spec: the text; path: what the error names (the option or the track file);
        where: a prefix for error messages (e.g. ``"line 3: "``).

    Raises:
        EmogeneError: empty spec, unknown emotion (listing the valid ones), a weight that is
        not a number, negative or not finite, or all weights zero.
    """
    text = (spec or "").strip()
    if not text:
        raise EmogeneError(f"{where}empty emotion; choose one of: {_valid_list()}", path=path)
    weights: dict[str, float] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise EmogeneError(f"{where}empty item in emotion blend '{text}' (write name:weight,name:weight)", path=path)
        name, sep, value = item.partition(":")
        try:
            emotion = parse_emotion(name)
        except EmogeneError:
            raise EmogeneError(f"{where}unknown emotion '{name.strip()}'; choose one of: {_valid_list()}", path=path) from None
        if sep:
            try:
                weight = float(value)
            except ValueError:
                raise EmogeneError(f"{where}weight '{value.strip()}' of {emotion} is not a number", path=path) from None
        else:
            weight = 1.0
        if not math.isfinite(weight):
            raise EmogeneError(f"{where}weight of {emotion} is not finite", path=path)
        if weight < 0:
            raise EmogeneError(f"{where}negative weight {weight:g} for {emotion} (weights must be >= 0)", path=path)
        weights[emotion] = weights.get(emotion, 0.0) + weight
    total = sum(weights.values())
    if total <= 0:
        raise EmogeneError(f"{where}all weights in emotion blend '{text}' are zero", path=path)
    return {name: w / total for name, w in weights.items() if w > 0}


def blend_vector(blend: dict[str, float]) -> np.ndarray:
    """``{emotion: weight}`` -> ``[8]`` float32 over :data:`EMOTIONS`."""
    v = np.zeros(len(EMOTIONS), np.float32)
    for name, w in blend.items():
        v[EMOTIONS.index(name)] += w
    return v


def describe_blend(blend: dict[str, float]) -> str:
    """``"happy"`` for a single emotion, ``"happy 0.70 + surprised 0.30"`` for a blend."""
    if len(blend) == 1:
        return next(iter(blend))
    return " + ".join(f"{n} {w:.2f}" for n, w in sorted(blend.items(), key=lambda kv: -kv[1]))


def constant_weights(blend: dict[str, float], intensity: float, num_frames: int) -> np.ndarray:
    """The same blend × intensity on every frame: ``[num_frames, 8]`` float32."""
    return np.tile(blend_vector(blend) * np.float32(intensity), (num_frames, 1)).astype(np.float32)


def one_hot_weights(emotion: str, intensity: float, num_frames: int) -> np.ndarray:
    """One emotion × intensity on every frame, ``[num_frames, 8]`` (all zero for neutral)."""
    return constant_weights({parse_emotion(emotion): 1.0}, intensity, num_frames)


# ---- emotion tracks ----------------------------------------------------------------------


@dataclass(frozen=True)
class TrackRow:
    """One span of an emotion track: ``[start, end)`` seconds, a blend and its intensity.

    ``source`` says where it came from (``"line 3"`` of a CSV, ``"record 2"`` of JSON).
    """

    start: float
    end: float
    blend: dict[str, float] = field(hash=False)
    intensity: float = 1.0
    source: str = ""
    spec: str = ""

    @property
    def label(self) -> str:
        """The emotion as written, normalised: ``happy`` or ``happy 0.70 + sad 0.30``."""
        return describe_blend(self.blend)


def _number(value: object, what: str, where: str, path: Path) -> float:
    if isinstance(value, bool) or value is None:
        raise EmogeneError(f"{where}: {what} is missing or not a number", path=path)
    try:
        x = float(value)  # numbers, and text such as " 1.5" from a CSV cell
    except (TypeError, ValueError):
        raise EmogeneError(f"{where}: {what} '{value}' is not a number", path=path) from None
    if not math.isfinite(x):
        raise EmogeneError(f"{where}: {what} is not finite", path=path)
    return x


def _make_row(record: dict, where: str, path: Path) -> TrackRow:
    missing = [c for c in TRACK_COLUMNS if record.get(c) in (None, "")]
    if missing:
        raise EmogeneError(f"{where}: missing {', '.join(missing)} (columns: {','.join(TRACK_COLUMNS)})", path=path)
    start = _number(record["start"], "start", where, path)
    end = _number(record["end"], "end", where, path)
    intensity = _number(record["intensity"], "intensity", where, path)
    if start < 0:
        raise EmogeneError(f"{where}: start {start:g} s is negative", path=path)
    if start >= end:
        raise EmogeneError(f"{where}: start {start:g} s is not before end {end:g} s", path=path)
    if not 0.0 <= intensity <= MAX_INTENSITY:
        raise EmogeneError(f"{where}: intensity {intensity:g} out of range (0 to {MAX_INTENSITY:g})", path=path)
    if not isinstance(record["emotion"], str):
        raise EmogeneError(f"{where}: emotion must be text (a name or name:weight,name:weight)", path=path)
    blend = parse_blend(record["emotion"], path=path, where=f"{where}: ")
    return TrackRow(start=start, end=end, blend=blend, intensity=intensity, source=where, spec=record["emotion"].strip())


def _read_csv(text: str, path: Path) -> list[TrackRow]:
    reader = csv.reader(io.StringIO(text))
    lines = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    if not lines:
        raise EmogeneError("emotion track is empty (expected a header start,end,emotion,intensity and rows)", path=path)
    _, header = lines[0]
    header = [h.strip().lower() for h in header]
    missing = [c for c in TRACK_COLUMNS if c not in header]
    if missing:
        raise EmogeneError(f"emotion track header lacks {', '.join(missing)} (expected start,end,emotion,intensity)", path=path)
    rows = []
    for line, cells in lines[1:]:
        if len(cells) != len(header):
            hint = "; quote a blend: \"happy:0.7,sad:0.3\"" if len(cells) > len(header) else ""
            raise EmogeneError(f"line {line}: {len(cells)} fields, the header has {len(header)}{hint}", path=path)
        rows.append(_make_row(dict(zip(header, cells)), f"line {line}", path))
    return rows


def _read_json(text: str, path: Path) -> list[TrackRow]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EmogeneError(f"emotion track is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", path=path) from None
    if not isinstance(data, list):
        raise EmogeneError("a JSON emotion track must be a list of records {start, end, emotion, intensity}", path=path)
    rows = []
    for i, record in enumerate(data, 1):
        if not isinstance(record, dict):
            raise EmogeneError(f"record {i}: not an object with start, end, emotion, intensity", path=path)
        rows.append(_make_row({str(k).strip().lower(): v for k, v in record.items()}, f"record {i}", path))
    return rows


def load_track(path: str | Path) -> list[TrackRow]:
    """Read an emotion track: CSV with a header ``start,end,emotion,intensity`` or JSON records.

    JSON is chosen by a ``.json`` suffix or content starting with ``[``/``{``; anything else
    is read as CSV. Times are seconds; ``emotion`` is a name or a blend (quoted in CSV when it
    has commas); ``intensity`` 0 to 3. Extra columns (notes) are ignored.

    Returns:
        The rows sorted by start; gaps between them are neutral.

    Raises:
        NotFoundError: no such file. EmogeneError: unreadable, malformed or empty file, a
        bad row (unknown emotion, bad weights, bad numbers, start not before end), overlapping rows.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFoundError("emotion track not found", path=path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise EmogeneError(f"cannot read emotion track ({exc.__class__.__name__})", path=path) from None
    if not text.strip():
        raise EmogeneError("emotion track is empty", path=path)
    as_json = path.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{")
    rows = _read_json(text, path) if as_json else _read_csv(text, path)
    if not rows:
        raise EmogeneError("emotion track has no rows", path=path)
    rows.sort(key=lambda r: (r.start, r.end))
    for a, b in zip(rows, rows[1:]):
        if b.start < a.end:
            raise EmogeneError(
                f"{a.source} ({a.start:g}-{a.end:g} s) and {b.source} ({b.start:g}-{b.end:g} s) overlap", path=path
            )
    return rows


def clip_track(rows: list[TrackRow], duration: float, *, tolerance: float = 0.5 / FPS) -> tuple[list[TrackRow], list[str]]:
    """Cut a track to ``duration`` seconds (the audio's length).

    Rows that start at or after the end are dropped, rows that run past it are shortened.
    Returns the rows and warnings (one when the track ran more than ``tolerance`` past the end).
    """
    kept: list[TrackRow] = []
    for r in rows:
        if r.start >= duration:
            continue
        kept.append(r if r.end <= duration else TrackRow(r.start, duration, r.blend, r.intensity, r.source, r.spec))
    warnings = []
    last = max(r.end for r in rows) if rows else 0.0
    if last > duration + tolerance:
        dropped = len(rows) - len(kept)
        extra = f", {dropped} row{'s' * (dropped != 1)} dropped" if dropped else ""
        warnings.append(f"the emotion track runs to {last:.2f} s but the audio is {duration:.2f} s long: cut to the audio{extra}")
    return kept, warnings


def with_gaps(rows: list[TrackRow], duration: float) -> list[TrackRow]:
    """``rows`` plus neutral rows (``source="gap"``, intensity 0) for the time they leave uncovered."""
    out: list[TrackRow] = []
    t = 0.0
    for r in rows:
        if r.start > t + 1e-9:
            out.append(TrackRow(t, r.start, {"neutral": 1.0}, 0.0, "gap", "neutral"))
        out.append(r)
        t = r.end
    if duration > t + 1e-9:
        out.append(TrackRow(t, duration, {"neutral": 1.0}, 0.0, "gap", "neutral"))
    return out


def smoothstep(x: np.ndarray) -> np.ndarray:
    """``3x² - 2x³`` on ``x`` clipped to [0, 1]: 0 -> 0, 1 -> 1, zero slope at both ends."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def max_frame_step(delta: float, transition: float, fps: float = FPS) -> float:
    """Largest frame-to-frame change of a weight that eases by ``delta`` over ``transition`` s.

    The smoothstep's steepest slope is 1.5 per unit of its argument, so a change of
    ``delta`` spread over ``transition × fps`` frames moves at most ``1.5 × delta / (transition × fps)``
    per frame (0.2 × delta at 0.3 s and 25 fps); infinite for a hard cut.
    """
    return math.inf if transition <= 0 else 1.5 * abs(delta) / (transition * fps)


def track_weights(
    rows: list[TrackRow], num_frames: int, *, transition: float = 0.3, intensity: float = 1.0, fps: float = FPS
) -> np.ndarray:
    """The per-frame weight matrix of a track: ``[num_frames, 8]`` float32 over :data:`EMOTIONS`.

    Frame ``t`` sits at ``t / fps`` seconds. The target is piecewise constant (a row's
    ``intensity × blend`` inside ``[start, end)``, zero elsewhere), and every change of it
    is eased by a smoothstep over ``transition`` seconds centred on the boundary, so the
    weights (and the displacement, which is linear in them) never jump between two frames.
    Eased changes add up linearly (the target is a sum of steps, each smoothed alone), so
    rows shorter than ``transition`` still give a continuous curve. Boundaries at or before
    0 s and at or after the last frame's end are not eased (the track holds its edge value).

    Args:
        rows: non-overlapping track rows (see :func:`load_track`, :func:`clip_track`).
        num_frames: T, frames at ``fps``; transition: seconds (0 = hard cuts);
        intensity: a global factor on every row's intensity (``--intensity``).
    """
    if transition < 0:
        raise EmogeneError(f"transition {transition:g} s is negative", path="--transition")
    t = np.arange(num_frames, dtype=np.float64) / fps
    duration = num_frames / fps

    def rise(boundary: float) -> np.ndarray:
        """0 before ``boundary``, 1 after, eased unless at the edges of the sequence."""
        if boundary <= 0:
            return np.ones_like(t)
        if boundary >= duration:
            return np.zeros_like(t)
        if transition <= 0:
            return (t >= boundary).astype(np.float64)
        return smoothstep((t - boundary) / transition + 0.5)

    w = np.zeros((num_frames, len(EMOTIONS)), np.float64)
    for r in rows:
        level = blend_vector(r.blend).astype(np.float64) * r.intensity * intensity
        w += (rise(r.start) - rise(r.end))[:, None] * level[None, :]
    return np.clip(w, 0.0, None).astype(np.float32)
