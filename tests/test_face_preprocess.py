"""Face tracking, model-file resolution and the preprocess stage.

The pure steps (crop choice, head/torso split, background plate, gap filling) run on synthetic
arrays with known answers; MediaPipe and the end-to-end stage run on ``../shared`` data and are
skipped where it is absent.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from emogene_cli import media, modelfiles
from emogene_cli.dataset import load_identity
from emogene_cli.errors import EmogeneError, InputError, NotFoundError
from emogene_cli.face.crop import choose_crop_box
from emogene_cli.face.masks import LABEL_BACKGROUND, LABEL_HEAD, LABEL_TORSO, background_plate, crop_valid_mask, split_head_torso
from emogene_cli.face.tracking import BLENDSHAPE_NAMES, FaceTracker, PersonSegmenter, fill_missing, track_frames
from emogene_cli.modelfiles import resolve_model_file
from emogene_cli.pipelines.preprocess import preprocess_video
from emogene_cli.store import Store

SHARED = Path(__file__).resolve().parents[2] / "shared"
MODELS = SHARED / "models"
MAY = SHARED / "data" / "video" / "may_5s.mp4"

needs_shared = pytest.mark.skipif(
    not (MODELS / "face_landmarker.task").is_file() or not MAY.is_file(),
    reason="../shared models and test videos are not available",
)


@pytest.fixture
def model_dir(monkeypatch):
    monkeypatch.setenv("EMOGENE_MODEL_DIR", str(MODELS))
    return MODELS


def _ffmpeg(*args: str) -> None:
    subprocess.run([media.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


# ---------------------------------------------------------------------------------- pure steps


def test_crop_box_is_centred_below_the_face_and_scaled():
    # face 100 x 120 px around (450, 260) in a 1920x1080 frame, a little head motion
    boxes = np.array([[400, 200, 500, 320], [404, 202, 504, 322], [396, 198, 496, 318]])
    x, y, side, side2 = choose_crop_box(boxes, (1920, 1080))
    assert side == side2
    assert abs(side - (2.2 * 120 + 8)) <= 1  # 2.2 x the largest extent + the centres' spread
    assert abs(x + side / 2 - 450) <= 1
    assert abs(y + side / 2 - (260 + 0.25 * 120)) <= 1


def test_crop_box_prefers_inside_the_frame():
    # face near the top-left corner: shifted inside instead of padded
    x, y, side, _ = choose_crop_box(np.array([[10, 5, 110, 125]]), (640, 480))
    assert (x, y) == (0, 0) and side < 480
    # close-up: 2.2x would exceed the frame but the whole frame still holds the head
    x, y, side, _ = choose_crop_box(np.array([[150, 120, 360, 400]]), (512, 512))
    assert (x, y, side) == (0, 0, 512)
    # face filling the frame: the box must pad, covering the frame with the least padding
    x, y, side, _ = choose_crop_box(np.array([[20, 10, 480, 500]]), (512, 512))
    assert side > 512 and x <= 0 <= 512 <= x + side and y <= 0 <= 512 <= y + side


def test_crop_valid_mask_marks_padding():
    valid = crop_valid_mask((-50, 0, 200, 200), (400, 100), 100)  # left quarter and bottom half padded
    assert not valid[:, :25].any() and valid[:50, 25:].all() and not valid[50:].any()


def _synthetic_face(cx: float = 64, top: float = 22, chin: float = 78, half: float = 20) -> np.ndarray:
    """478 landmarks on an ellipse-filled face: forehead (10) at ``top``, chin (152) at ``chin``."""
    rng = np.random.default_rng(0)
    ang = rng.uniform(0, 2 * np.pi, 478)
    rad = np.sqrt(rng.uniform(0, 1, 478))
    cy, ry = (top + chin) / 2, (chin - top) / 2
    lms = np.stack([cx + half * rad * np.cos(ang), cy + ry * rad * np.sin(ang), np.zeros(478)], -1)
    lms[10] = (cx, top, 0)
    lms[152] = (cx, chin, 0)
    return lms.astype(np.float32)


def _synthetic_person(size: int = 128) -> np.ndarray:
    person = np.zeros((size, size), bool)
    cv2.ellipse(person.view(np.uint8), (64, 46), (26, 36), 0, 0, 360, 1, -1)  # head with hair
    person[78:92, 54:75] = True  # neck
    person[84:, 14:114] = True  # shoulders and chest
    return person


def test_head_torso_split_on_a_synthetic_person():
    person, lms = _synthetic_person(), _synthetic_face()
    labels = split_head_torso(person, lms)
    assert labels.dtype == np.uint8 and labels.shape == person.shape
    assert labels[0, 0] == LABEL_BACKGROUND and labels[127, 2] == LABEL_BACKGROUND
    assert labels[14, 64] == LABEL_HEAD  # hair above the forehead
    assert labels[46, 40] == LABEL_HEAD  # side of the head, outside the landmark hull
    assert labels[81, 64] == LABEL_HEAD  # neck just under the chin
    assert labels[86, 20] == LABEL_TORSO  # shoulder level with the neck line, outside the band
    assert labels[110, 64] == LABEL_TORSO  # chest
    assert set(np.unique(labels[person])) <= {LABEL_TORSO, LABEL_HEAD}
    assert (labels[~person] == LABEL_BACKGROUND).all()


def test_head_torso_split_follows_the_face_direction():
    # a face lying on its side (image transposed) gives the transposed labels
    person, lms = _synthetic_person(), _synthetic_face()
    upright = split_head_torso(person, lms)
    sideways = split_head_torso(person.T.copy(), lms[:, [1, 0, 2]])
    assert (sideways == upright.T).mean() > 0.995


def test_head_torso_split_equals_its_formula_over_the_grid():
    """The separable computation gives the labels of the formula written out pixel by pixel (float64)."""
    rng = np.random.default_rng(3)
    person = np.ones((96, 96), bool)
    for _ in range(40):
        lms = _synthetic_face().astype(np.float64)
        angle = rng.uniform(-0.8, 0.8)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        lms[:, :2] = (lms[:, :2] - 64) @ rot.T * rng.uniform(0.5, 0.9) + 48 + rng.uniform(-8, 8, 2)
        xy = lms[:, :2]
        chin, top = xy[152], xy[10]
        up = (top - chin) / np.linalg.norm(top - chin)
        across = np.array([-up[1], up[0]])
        centre = xy.mean(0)
        half_width = np.abs((xy - centre) @ across).max()
        yy, xx = np.mgrid[0:96, 0:96].astype(np.float64)
        height = ((xx - chin[0]) * up[0] + (yy - chin[1]) * up[1]) / np.linalg.norm(top - chin)
        offset = np.abs((xx - centre[0]) * across[0] + (yy - centre[1]) * across[1]) / half_width
        band = (height > -0.1) & (offset <= 0.65 + (1.6 - 0.65) * np.clip(height / 0.25, 0.0, 1.0))
        hull = np.zeros((96, 96), np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull(np.round(xy).astype(np.int32)), 1)
        want = np.where(band | hull.astype(bool), LABEL_HEAD, LABEL_TORSO)
        np.testing.assert_array_equal(split_head_torso(person, lms), want)


def test_background_plate_recovers_background_and_inpaints_always_covered():
    rng = np.random.default_rng(1)
    h = w = 48
    yy, xx = np.mgrid[0:h, 0:w]
    background = np.stack([xx * 4, yy * 4, np.full((h, w), 90)], -1).astype(np.uint8)  # smooth gradient
    frames, masks = [], []
    for k in range(15):
        frame = background.copy()
        mask = np.zeros((h, w), bool)
        x0 = 2 + 2 * k  # a square moving left to right
        frame[10:20, x0 : x0 + 10] = rng.integers(0, 255, 3)
        mask[10:20, x0 : x0 + 10] = True
        frame[30:40, 20:30] = 255  # a block covered in every frame
        mask[30:40, 20:30] = True
        frames.append(frame)
        masks.append(mask)
    plate = background_plate(np.stack(frames), np.stack(masks))
    seen = np.ones((h, w), bool)
    seen[30:40, 20:30] = False
    assert np.array_equal(plate[seen], background[seen])
    hole_err = np.abs(plate[~seen].astype(int) - background[~seen].astype(int)).mean()
    assert hole_err < 12  # inpainted from the surrounding gradient, not left white or black
    # dilation widens what counts as covered but keeps the result
    plate2 = background_plate(np.stack(frames), np.stack(masks), dilate_px=2)
    assert np.abs(plate2[seen].astype(int) - background[seen].astype(int)).mean() < 3


def test_fill_missing_interpolates_and_extends():
    values = np.array([[0.0], [0.0], [2.0], [0.0], [6.0], [0.0]])
    found = np.array([False, True, False, True, False, False])
    values[1], values[3] = 2.0, 6.0
    out = fill_missing(values, found)
    assert out[:, 0].tolist() == [2.0, 2.0, 4.0, 6.0, 6.0, 6.0]


# ---------------------------------------------------------------------------------- model files


def test_resolve_model_file_order(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "face_landmarker.task").write_bytes(b"x")
    store = Store(tmp_path / "home")
    assert resolve_model_file("face_landmarker.task", folder, store) == folder / "face_landmarker.task"
    with pytest.raises(NotFoundError, match="not found"):
        resolve_model_file("face_landmarker.task", tmp_path / "nowhere", store)
    monkeypatch.setenv("EMOGENE_MODEL_DIR", str(folder))
    assert resolve_model_file("face_landmarker.task", None, store) == folder / "face_landmarker.task"

    monkeypatch.delenv("EMOGENE_MODEL_DIR")
    store.third_party_dir.mkdir(parents=True)
    (store.third_party_dir / "face_landmarker.task").write_bytes(b"y")
    assert resolve_model_file("face_landmarker.task", None, store) == store.third_party_dir / "face_landmarker.task"

    def offline(url, timeout=10.0):
        raise OSError("offline")

    monkeypatch.setattr(modelfiles, "_download", offline)
    with pytest.raises(NotFoundError, match="EMOGENE_MODEL_DIR") as err:
        resolve_model_file("selfie_segmentation.tflite", None, store)
    assert "selfie_segmentation.tflite" in str(err.value) and "\n" not in str(err.value)


def test_resolve_model_file_downloads_once(tmp_path, monkeypatch):
    monkeypatch.delenv("EMOGENE_MODEL_DIR", raising=False)
    calls = []

    def fake(url, timeout=10.0):
        calls.append(url)
        return b"model bytes"

    monkeypatch.setattr(modelfiles, "_download", fake)
    store = Store(tmp_path)
    path = resolve_model_file("selfie_segmentation.tflite", None, store)
    assert path == store.third_party_dir / "selfie_segmentation.tflite" and path.read_bytes() == b"model bytes"
    assert resolve_model_file("selfie_segmentation.tflite", None, store) == path
    assert len(calls) == 1 and calls[0].endswith("selfie_segmenter.tflite")


# ---------------------------------------------------------------------------------- MediaPipe


@needs_shared
def test_face_tracker_and_segmenter_on_a_real_frame(model_dir):
    frame = next(media.read_frames(MAY))
    h, w = frame.shape[:2]
    with FaceTracker() as tracker:
        face = tracker.detect(frame, 0)
    assert face is not None
    assert face.landmarks.shape == (478, 3) and face.landmarks.dtype == np.float32
    assert face.blendshapes.shape == (len(BLENDSHAPE_NAMES),) == (52,)
    assert face.transform.shape == (4, 4)
    xy = face.landmarks[:, :2]
    assert (xy >= 0).all() and (xy[:, 0] < w).all() and (xy[:, 1] < h).all()
    assert xy[152, 1] > xy[10, 1]  # chin below forehead, in pixels
    with PersonSegmenter() as seg:
        prob = seg.segment(frame, 0)
    assert prob.shape == (h, w) and prob.dtype == np.float32
    assert 0 <= prob.min() and prob.max() <= 1
    cx, cy = xy.mean(0).astype(int)
    assert prob[cy, cx] > 0.5  # the face is part of the person


@needs_shared
def test_track_frames_on_a_clip(model_dir):
    frames = [f for _, f in zip(range(10), media.read_frames(MAY))]
    frames[4] = np.zeros_like(frames[4])  # a black frame: no face, filled from its neighbours
    done = []
    track = track_frames(frames, progress=done.append)
    assert track.landmarks.shape == (10, 478, 3) and track.blendshapes.shape == (10, 52)
    assert track.transforms.shape == (10, 4, 4) and done == list(range(1, 11))
    assert track.found.tolist() == [True] * 4 + [False] + [True] * 5
    np.testing.assert_allclose(track.landmarks[4], (track.landmarks[3] + track.landmarks[5]) / 2, atol=1e-3)


# ---------------------------------------------------------------------------------- the stage


@pytest.fixture(scope="module")
def may_identity(tmp_path_factory):
    if not (MODELS / "face_landmarker.task").is_file() or not MAY.is_file():
        pytest.skip("../shared models and test videos are not available")
    store = Store(tmp_path_factory.mktemp("store"))
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMOGENE_MODEL_DIR", str(MODELS))
        result = preprocess_video(
            MAY, store=store, name="may", size=128, audio_features="mel", progress=lambda *a: calls.append(a)
        )
    return store, result, calls


def test_preprocess_may_end_to_end(may_identity):
    store, result, calls = may_identity
    T = result.frames
    assert 120 <= T <= 130 and result.seconds == pytest.approx(T / 25)
    assert result.face_found_fraction > 0.9 and result.feature_kind == "mel" and result.size == 128
    assert len(result.crop_box) == 4 and result.crop_box[2] == result.crop_box[3]
    for key in ("dataset", "images", "masks", "background"):
        assert result.paths[key].exists(), key
    assert len(list(result.paths["images"].glob("*.jpg"))) == T
    assert len(list(result.paths["masks"].glob("*.png"))) == T
    assert {c[0] for c in calls} >= {"finding the face", "tracking the face", "background plate"}
    assert all(0 <= done <= total for _, done, total in calls)
    assert not [p for p in store.identity_dir("may").iterdir() if p.name.startswith(".")]  # no leftovers

    data = load_identity(store, "may")
    assert data.landmarks.shape == (T, 478, 3) and data.canonical.shape == (T, 478, 3)
    assert data.motion.shape == (T, 68, 3) and data.poses.shape == (T, 4, 4)
    assert data.blendshapes.shape == (T, 52) and data.mp_transform.shape == (T, 4, 4)
    assert data.audio_features.shape[0] == 2 * T and data.f0.shape == (T,)
    assert data.audio.ndim == 1 and abs(len(data.audio) / 16000 - 5.0) < 0.2
    assert data.images.shape == (T, 128, 128, 3) and data.labels.shape == (T, 128, 128)
    assert data.background.shape == (128, 128, 3) and data.iod > 0 and data.feature_kind == "mel"
    assert set(np.unique(data.labels)) <= {0, 1, 2} and (data.labels == LABEL_HEAD).any()
    # the head label sits where the landmarks are, in every frame
    nose = np.round(data.landmarks[:, 1, :2]).astype(int)
    assert ((nose >= 0) & (nose < 128)).all()
    assert (data.labels[np.arange(T), nose[:, 1], nose[:, 0]] == LABEL_HEAD).all()
    # the landmarks fit the stored images: posed mean shape reproduces them closely
    from emogene_cli.geometry import transform_points

    err = np.abs(transform_points(data.poses, data.mean_shape[None]) - data.landmarks)[..., :2].mean()
    assert err < 2.0

    half = load_identity(store, "may", size=64)
    assert half.images.shape == (T, 64, 64, 3) and half.labels.shape == (T, 64, 64) and half.size == 64
    np.testing.assert_allclose(half.landmarks, data.landmarks * 0.5, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(half.poses[:, :3, :], data.poses[:, :3, :] * 0.5, rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(half.motion, data.motion)
    assert set(np.unique(half.labels)) <= {0, 1, 2}


def test_load_identity_of_unknown_name(tmp_path):
    with pytest.raises(NotFoundError, match="was not preprocessed"):
        load_identity(Store(tmp_path), "nobody")


@pytest.fixture(scope="module")
def bad_videos(tmp_path_factory):
    if not MAY.is_file():
        pytest.skip("../shared test videos are not available")
    d = tmp_path_factory.mktemp("bad")
    text = d / "notes.mp4"
    text.write_text("this is not a video\n")
    silent = d / "silent.mp4"
    _ffmpeg("-i", str(MAY), "-t", "3", "-an", "-c:v", "copy", str(silent))
    noface = d / "noface.mp4"
    _ffmpeg(
        "-f", "lavfi", "-i", "color=c=gray:s=128x128:d=3:r=25", "-f", "lavfi", "-i", "sine=d=3",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(noface),
    )
    short = d / "short.mp4"
    _ffmpeg("-i", str(MAY), "-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(short))
    half = d / "halfface.mp4"  # 2.5 s of May, then 2.5 s of grey, with sound throughout
    _ffmpeg(
        "-i", str(MAY), "-f", "lavfi", "-i", "color=c=gray:s=512x512:d=2.5:r=25", "-f", "lavfi", "-i", "sine=d=2.5",
        "-filter_complex",
        "[0:v]trim=0:2.5,setpts=PTS-STARTPTS,fps=25,format=yuv420p,setsar=1[v0];"
        "[0:a]atrim=0:2.5,asetpts=PTS-STARTPTS,aformat=sample_rates=44100:channel_layouts=mono[a0];"
        "[1:v]format=yuv420p,setsar=1[v1];[2:a]aformat=sample_rates=44100:channel_layouts=mono[a1];"
        "[v0][a0][v1][a1]concat=n=2:v=1:a=1[v][a]",
        "-map", "[v]", "-map", "[a]", "-c:v", "libx264", "-c:a", "aac", str(half),
    )
    return {
        "missing": d / "missing.mp4", "text": text, "silent": silent, "noface": noface, "short": short, "half": half,
    }


@pytest.mark.parametrize(
    "case, error, phrase",
    [
        ("missing", NotFoundError, "file not found"),
        ("text", InputError, "unreadable media"),
        ("silent", InputError, "no audio track"),
        ("noface", InputError, "no face found"),
        ("short", InputError, "clip too short"),
        ("half", InputError, r"face was found in only 5\d% of frames \(need 90%\)"),
    ],
)
def test_preprocess_rejects_bad_input(bad_videos, model_dir, tmp_path, case, error, phrase):
    video = bad_videos[case]
    store = Store(tmp_path)
    with pytest.raises(error, match=phrase) as err:
        preprocess_video(video, store=store, size=64, audio_features="mel")
    assert str(video) in str(err.value)
    assert store.identities() == [] and not store.identity_dir(video.stem).exists()


def test_failed_rerun_keeps_the_earlier_dataset(may_identity, bad_videos, model_dir):
    store, result, _ = may_identity
    before = store.dataset_path("may").read_bytes()
    with pytest.raises(InputError):
        preprocess_video(bad_videos["half"], store=store, name="may", size=64, audio_features="mel")
    assert store.dataset_path("may").read_bytes() == before
    assert len(list(result.paths["images"].glob("*.jpg"))) == result.frames
    assert not [p for p in store.identity_dir("may").iterdir() if p.name.startswith(".")]


def test_each_mask_is_written_from_its_own_frame(model_dir, tmp_path, monkeypatch):
    """The masks are written in small chunks on two threads: each file still holds its own frame's split."""
    import emogene_cli.pipelines.preprocess as pre

    def tag(landmarks):  # a value that changes from frame to frame with the face's position
        return np.uint8(int(round(float(landmarks[:, :2].sum()) * 100)) % 251 + 3)

    def tagged(person, landmarks):
        labels = split_head_torso(person, landmarks)
        labels[0, 0] = tag(landmarks)
        return labels

    monkeypatch.setattr(pre, "split_head_torso", tagged)
    monkeypatch.setattr(pre, "MASK_CHUNK", 7)
    store = Store(tmp_path)
    result = preprocess_video(MAY, store=store, name="may", size=64, audio_features="mel")
    landmarks = load_identity(store, "may").landmarks
    got = [cv2.imread(str(result.paths["masks"] / f"{t:05d}.png"), cv2.IMREAD_UNCHANGED)[0, 0] for t in range(result.frames)]
    want = [tag(landmarks[t]) for t in range(result.frames)]
    assert got == want and len(set(want)) > result.frames // 2  # the tags tell the frames apart


def test_a_failing_mask_keeps_the_earlier_dataset(may_identity, model_dir, monkeypatch):
    """An error on a mask-writing thread ends preprocess with it, and the earlier dataset stays whole."""
    import emogene_cli.pipelines.preprocess as pre

    store, result, _ = may_identity
    before = store.dataset_path("may").read_bytes()
    calls = []

    def failing(person, landmarks):
        calls.append(1)  # from two threads: list.append is atomic
        if len(calls) >= 40:
            raise RuntimeError("a mask failed")
        return split_head_torso(person, landmarks)

    monkeypatch.setattr(pre, "split_head_torso", failing)
    with pytest.raises(RuntimeError, match="a mask failed"):
        preprocess_video(MAY, store=store, name="may", size=64, audio_features="mel")
    assert store.dataset_path("may").read_bytes() == before
    assert len(list(result.paths["masks"].glob("*.png"))) == result.frames
    assert not [p for p in store.identity_dir("may").iterdir() if p.name.startswith(".")]


def test_preprocess_needs_a_valid_name(tmp_path):
    """A file name with nothing usable as a name asks for --name; others are made into one."""
    from emogene_cli.store import name_from_file

    odd = tmp_path / "日本語.mp4"
    odd.write_bytes(b"")
    with pytest.raises(EmogeneError, match="--name"):
        preprocess_video(odd, store=Store(tmp_path / "home"))
    assert name_from_file("my clip") == "my_clip"
    assert name_from_file("Ñoño en el móvil (2).final") == "Nono_en_el_movil_2_final"
    assert name_from_file("日本語") is None
    assert len(name_from_file("x" * 100)) == 64
