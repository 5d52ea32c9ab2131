"""``evaluate_identity`` / ``emogene evaluate`` end to end on a tiny fitted may_5s identity.

One session fixture preprocesses may_5s at 128 pixels (log-mel features), fits the tiny
preset and saves an untrained landmark deformation model (the emotion measurement needs one,
not a good one), all into a temporary store.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from .conftest import DATA, MODELS, need_shared

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def fitted_may(tmp_path_factory):
    """A store holding the tiny-fitted identity ``may`` and an (untrained) LDM."""
    need_shared()
    import torch

    from emogene_cli.models.ldm import LandmarkDeformationModel, LDMConfig
    from emogene_cli.pipelines.fit import fit_identity
    from emogene_cli.pipelines.preprocess import preprocess_video
    from emogene_cli.store import Store, save_model

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMOGENE_MODEL_DIR", str(MODELS))
        store = Store(tmp_path_factory.mktemp("evalstore"))
        preprocess_video(DATA / "video" / "may_5s.mp4", store=store, name="may", size=128, audio_features="mel")
        fit_identity("may", store=store, preset="tiny", device="cpu")
        torch.manual_seed(0)
        ldm = LandmarkDeformationModel(LDMConfig())
        save_model(store.ldm_path, ldm, ldm.config, producer="test")
    return store


@pytest.fixture(scope="module")
def evaluated(fitted_may, tmp_path_factory):
    """One evaluation (two emotions, 1 s each) shared by the tests that read its outputs."""
    from emogene_cli.pipelines.evaluate import evaluate_identity

    out = tmp_path_factory.mktemp("evalout")
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMOGENE_MODEL_DIR", str(MODELS))
        result = evaluate_identity(
            "may", store=fitted_may, emotions=["happy", "sad"], seconds_per_emotion=1.0,
            reference=DATA / "talking" / "vox_woman_5s.mp4", reference_seconds=2.0,
            json_path=out / "eval.json", report_path=out / "eval.html", progress=lambda *a: calls.append(a),
        )
    return result, calls


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_evaluate_writes_every_figure(evaluated):
    result, calls = evaluated
    data = json.loads(result.json_path.read_text())  # strict JSON: no NaN / Infinity tokens
    assert data["identity"] == "may" and data["preset"] == "tiny" and data["resolution"] == 64
    assert data["heldout_frames"] == 13 and data["frames"] == 125
    for key in ("python", "torch", "numpy", "mediapipe", "emogene"):
        assert data["versions"][key]
    assert data["device"]["device"] == "cpu"

    rec = data["reconstruction"]
    assert 10 < rec["psnr"] < 60 and 10 < rec["psnr_face"] < 60
    assert 0 < rec["ssim"] <= 1 and 0 < rec["ssim_face"] <= 1
    assert rec["lpips"] is None or rec["lpips"] >= 0
    assert rec["lpips_note"]
    assert rec["face_found_real"] == 1.0 and rec["face_found_rendered"] > 0.5
    assert 0 <= rec["m_lmd"] < 10 and 0 <= rec["f_lmd"] < 10  # pixels at 64x64

    aud = data["audio_driven"]
    assert aud["frames"] == 13
    assert 0 <= aud["m_lmd"] < 10 and 0 <= aud["f_lmd"] < 10
    assert -1 <= aud["lipsync_corr"] <= 1 and abs(aud["lipsync_lag"]) <= 10
    assert abs(aud["lipsync_lag_real_video"]) <= 10 and data["settings"]["lipsync_max_lag_frames"] == 10

    lip = data["lipsync"]  # the person's audio-to-motion model on its own held-out stretch
    assert lip["model"] == "person" and lip["frames"] == 62 and lip["start_frame"] == 63  # 5 s clip: the last half
    assert -1 <= lip["mouth_open_corr"] <= 1 and abs(lip["mouth_open_best_lag"]) <= 10
    assert lip["mouth_open_best_corr"] >= lip["mouth_open_corr"]
    assert 0 <= lip["m_lmd"] < 50 and "256x256" in lip["m_lmd_units"]

    emo = data["emotion"]
    assert set(emo["per_emotion"]) == {"neutral", "happy", "sad"}
    assert emo["seconds_per_emotion"] == pytest.approx(1.0)
    for emotion in ("happy", "sad"):
        info = emo["per_emotion"][emotion]
        assert _finite(info["score"]) and -1 <= info["score"] <= 1
        assert all(_finite(v) for v in info["deltas"].values())
    assert set(emo["per_emotion"]["happy"]["deltas"]) >= {"mouthSmileLeft", "mouthSmileRight"}
    # which LDM, which actors are the yardstick (this test's LDM names none), and that it grades itself
    assert emo["ldm"].startswith("the store (train-ldm)")
    assert emo["reference_actors"] == [] and emo["leave_one_actor_out"] == []
    assert "the actors the LDM trained on" in emo["reference_note"]

    idle = data["idle"]
    assert idle["silent_frames"] >= 50  # 3 s of padded silence at 25 fps, minus voice-activity edges
    for key in ("velocity_mean", "velocity_std", "acceleration_mean", "acceleration_std"):
        assert _finite(idle[key]) and 0 <= idle[key] < 1
    assert {"load", "reconstruction", "audio_driven", "lipsync", "emotion", "idle", "report"} <= set(data["seconds"])
    assert {c[0] for c in calls} >= {"reconstruction", "audio-driven", "emotions"}


def test_reference_lipsync_compares_three_mouths(evaluated):
    """--reference: neutral and each emotion asked, rendered vs speaker / vs driving, driving vs speaker."""
    result, _ = evaluated
    ref = result.figures["reference_lipsync"]
    assert ref["frames"] == 50 and ref["reference"].endswith("vox_woman_5s.mp4")
    assert ref["face_found_reference"] > 0.9
    assert list(ref["per_emotion"]) == ["neutral", "happy", "sad"]
    for info in ref["per_emotion"].values():
        for key in ("rendered_vs_speaker", "rendered_vs_driving", "driving_vs_speaker"):
            d = info[key]
            assert set(d) == {"r_lag0", "r_best", "best_lag", "std_ratio", "frames"}
            assert abs(d["best_lag"]) <= 3 and d["frames"] > 0
            assert not _finite(d["r_lag0"]) or -1 <= d["r_lag0"] <= d["r_best"] + 1e-9 <= 1 + 1e-9
        # the same mouths measured in the image (head pose not removed) stay beside them
        assert set(info["image_plane"]) == {"rendered_vs_speaker", "rendered_vs_driving", "driving_vs_speaker"}
        assert info["image_plane"]["rendered_vs_driving"]["frames"] == info["rendered_vs_driving"]["frames"]
    off = ref["reference_offset"]  # the recording's own audio-video offset, judged on the neutral driving mouth
    assert set(off) >= {"frames", "ms", "r_lag0", "r_at_offset"} and abs(off["frames"]) <= 8
    assert off["ms"] == 40 * off["frames"] and "note" not in off  # 2 s: too short to warn
    on_disk = json.loads(result.json_path.read_text())
    assert on_disk["reference_lipsync"]["per_emotion"]["happy"]["driving_vs_speaker"]["frames"] > 0
    text = result.report_path.read_text()
    assert "lip sync end to end" in text and "the driving landmarks and the rendered mouth" in text
    assert "measured in the image (head pose not removed)" in text


def test_evaluate_report_is_self_contained_html(evaluated):
    result, _ = evaluated
    text = result.report_path.read_text()
    assert text.startswith("<!doctype html>")
    assert text.count("src='data:image/png;base64,") >= 6  # 3 grids/strips + at least 3 plots
    assert "http" not in text  # nothing fetched from elsewhere
    assert "predicted vs real mouth opening" in text


def test_frame_grid_layout():
    from emogene_cli.evaluation.report import PANEL, frame_grid

    frames = np.zeros((13, 64, 64, 3), np.uint8)
    lm = np.full((13, 68, 3), 32.0)
    grid = frame_grid(frames, frames, lm, lm, rows=4)
    assert grid.shape == (4 * PANEL, 3 * PANEL, 3) and grid.dtype == np.uint8
    assert grid[:, 2 * PANEL:].max() > 0  # the landmark panel has dots


def test_evaluate_command_and_its_errors(fitted_may, tmp_path, capsys, monkeypatch):
    from emogene_cli.cli import main

    monkeypatch.setenv("EMOGENE_MODEL_DIR", str(MODELS))
    monkeypatch.setenv("COLUMNS", "200")
    home = str(fitted_may.home)
    code = main(["--home", home, "evaluate", "may", "--emotions", "happy,contempt", "--seconds-per-emotion", "0.5",
                 "--emotion-actors", str(DATA / "crema_d"),
                 "--json", str(tmp_path / "e.json"), "--report", str(tmp_path / "e.html"), "--device", "cpu"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "m_lmd" in out.out and "19.7" in out.out and str(tmp_path / "e.json") in out.out
    assert (tmp_path / "e.json").is_file() and (tmp_path / "e.html").is_file()
    # graded by the CREMA-D actor, who has no contempt; this test LDM names no training actors
    emo = json.loads((tmp_path / "e.json").read_text())["emotion"]
    assert emo["reference_actors"] == ["1001"] and emo["training_actors"] == [] and not emo["reference_held_out"]
    assert "strength" in emo["per_emotion"]["happy"] and emo["measured"] == 1
    assert emo["per_emotion"]["contempt"]["not_measured"] == "the reference actors (1001) have no contempt clip"
    assert "measured against 1001" in " ".join(out.out.split())
    assert "strength is measured against 1001; the LDM does not name its training actors" in (tmp_path / "e.html").read_text()

    assert main(["--home", home, "evaluate", "may", "--reference", str(tmp_path / "none.mp4")]) == 2
    assert "none.mp4" in capsys.readouterr().err
    # a missing reference-actor folder fails at once, naming it, before anything is rendered
    assert main(["--home", home, "evaluate", "may", "--emotion-actors", str(tmp_path / "nomead")]) == 2
    err = capsys.readouterr().err
    assert "nomead" in err and "MEAD folder not found" in err and "Traceback" not in err
    assert main(["--home", home, "evaluate", "nobody"]) == 2
    assert "not preprocessed" in capsys.readouterr().err
    assert main(["--home", home, "evaluate", "may", "--emotions", "grumpy"]) == 2
    assert "unknown emotion" in capsys.readouterr().err


def test_emotion_measurement_sees_a_real_smile(model_env, tmp_path):
    """The blendshape measurement on real MEAD video: happy smiles more than neutral, even at 64 px."""
    import cv2

    from emogene_cli import media
    from emogene_cli.evaluation import metrics
    from emogene_cli.face.tracking import BLENDSHAPE_NAMES, redetect
    from emogene_cli.store import Store

    means = {}
    for emotion in ("neutral", "happy"):
        clip = sorted((DATA / "mead" / "M030" / "video" / "front" / emotion).glob("level_*/001.mp4"))[-1]
        frames = np.stack([cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in media.read_frames(clip)][::3])
        track = redetect(frames, Store(tmp_path / "store"))
        means[emotion] = track.blendshapes[track.found].mean(0)
    out = metrics.blendshape_deltas(means["happy"], means["neutral"], BLENDSHAPE_NAMES, "happy")
    assert out["score"] > 0.1
    assert out["deltas"]["mouthSmileLeft"] > 0.2 and out["deltas"]["mouthSmileRight"] > 0.2


@pytest.fixture(scope="module")
def preprocessed_only(fitted_may, tmp_path_factory):
    """A store with ``may`` preprocessed but not fitted, and a (briefly trained) generic audio-to-motion model."""
    import shutil

    from emogene_cli.models.a2m import A2MConfig
    from emogene_cli.motion.training import A2MTraining, Utterance, save_a2m, train_a2m_clips
    from emogene_cli.store import Store, load_artifact

    store = Store(tmp_path_factory.mktemp("prestore"))
    src = fitted_may.identity_dir("may")
    dst = store.identity_dir("may")
    dst.mkdir(parents=True)
    shutil.copy(src / "dataset.safetensors", dst / "dataset.safetensors")
    shutil.copytree(src / "frames", dst / "frames")
    t = load_artifact(store.dataset_path("may")).tensors
    model = train_a2m_clips([[Utterance(t["audio_features"], t["f0"], t["motion"])]], A2MConfig.preset("tiny", 80),
                            A2MTraining(steps=30, window=32, batch=4))
    save_a2m(store.generic_a2m_path, model, producer="train-a2m", params={}, feature_kind="mel")
    return store


def test_preprocessed_only_identity_gets_lipsync_from_the_generic_model(preprocessed_only, tmp_path, capsys, monkeypatch):
    import time

    from emogene_cli.cli import main
    from emogene_cli.pipelines.evaluate import evaluate_identity

    start = time.perf_counter()
    result = evaluate_identity("may", store=preprocessed_only, json_path=tmp_path / "e.json", report_path=tmp_path / "e.html")
    assert time.perf_counter() - start < 60  # a 5 s clip
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["fitted"] is False and "reconstruction" not in data and "emotion" not in data
    lip = data["lipsync"]
    assert lip["model"] == "generic" and lip["frames"] == 125 and lip["start_frame"] == 0
    assert -1 <= lip["mouth_open_corr"] <= 1 and abs(lip["mouth_open_best_lag"]) <= 10 and lip["m_lmd"] >= 0
    assert lip["clip_in_generic_training"] is False
    assert "predicted vs real mouth opening" in result.report_path.read_text()

    monkeypatch.setenv("COLUMNS", "200")
    assert main(["--home", str(preprocessed_only.home), "evaluate", "may", "--json", str(tmp_path / "f.json"),
                 "--report", str(tmp_path / "f.html")]) == 0
    out = capsys.readouterr().out
    assert "mouth_open_corr" in out and "no renderer" in out


def test_preprocessed_only_speak_landmarks_and_render_error(preprocessed_only, tmp_path, capsys):
    from emogene_cli import media
    from emogene_cli.cli import main

    home = str(preprocessed_only.home)
    wav = str(DATA / "speech" / "arctic_a0007_4s.wav")
    assert main(["--home", home, "speak", wav, "--emotion", "neutral", "--identity", "may"]) == 2
    err = capsys.readouterr().err
    assert "no renderer" in err and "fit-identity may" in err and "--landmarks-only" in err
    out = tmp_path / "lm.mp4"
    assert main(["--home", home, "speak", wav, "--emotion", "neutral", "--identity", "may", "--landmarks-only", "-o", str(out)]) == 0
    info = media.probe(out)
    assert info.has_audio and info.width == 128
    assert abs(len(list(media.read_frames(out))) - 100) <= 1  # 4 s at 25 fps
    assert "generic (the store (train-a2m)" in " ".join(capsys.readouterr().out.split())


def test_emotion_gain_calibration_on_a_fitted_identity(fitted_may, monkeypatch):
    """attach_calibration measures the tracker gain, then renders the identity's own frames
    through the whole chain and stores emotion gains in [1, GAIN_MAX] (neutral and emotions
    without a real change 1); a second call loads them without measuring."""
    import torch

    from emogene_cli.emotion import gain as eg
    from emogene_cli.emotion.gain import attach_calibration
    from emogene_cli.emotion.motion_to_emotion import load_ldm
    from emogene_cli.emotions import EMOTIONS
    from emogene_cli.face.tracking import BLENDSHAPE_NAMES
    from emogene_cli.render.speaker import load_speaker
    from emogene_cli.store import load_artifact

    monkeypatch.setenv("EMOGENE_MODEL_DIR", str(MODELS))
    monkeypatch.setattr(eg, "CALIBRATION_FRAMES", 3)
    ldm = load_ldm(fitted_may)
    with torch.no_grad():
        real = torch.zeros_like(ldm.real_blendshape_change)
        real[EMOTIONS.index("surprised"), BLENDSHAPE_NAMES.index("browInnerUp")] = 0.5
        real[EMOTIONS.index("happy"), BLENDSHAPE_NAMES.index("mouthSmileLeft")] = 0.5
        ldm.real_blendshape_change.copy_(real)
    told = []
    speaker = attach_calibration(load_speaker(fitted_may, "may"), fitted_may, ldm, on_measure=lambda: told.append(1))
    assert told == [1] and speaker.emotion_gain is not None
    stored = load_artifact(eg.emotion_gain_path(fitted_may, "may")).tensors
    gain, strength = stored["gain"], stored["strength"]
    assert np.allclose(speaker.emotion_gain, gain) and np.all(gain >= 1.0) and np.all(gain <= eg.GAIN_MAX)
    measured = [EMOTIONS.index("surprised"), EMOTIONS.index("happy")]
    assert np.isfinite(strength[0, measured]).all()
    others = np.setdiff1d(np.arange(len(EMOTIONS)), measured)
    assert np.all(gain[others] == 1.0) and np.isnan(strength[:, others]).all()
    again = attach_calibration(load_speaker(fitted_may, "may"), fitted_may, ldm, on_measure=lambda: pytest.fail("measured again"))
    assert np.allclose(again.emotion_gain, gain)


def test_fit_ends_by_calibrating_when_the_store_has_an_ldm(fitted_may, monkeypatch):
    """fit-identity's last step: with an LDM in the store, both gains are measured (or loaded) and their files returned."""
    from emogene_cli.emotion.gain import emotion_gain_path
    from emogene_cli.emotion.tracker_gain import tracker_gain_path
    from emogene_cli.pipelines.fit import _calibrate

    monkeypatch.setenv("EMOGENE_MODEL_DIR", str(MODELS))
    paths = _calibrate(fitted_may, "may", "cpu", None)
    assert paths == {"tracker gain": tracker_gain_path(fitted_may, "may"), "emotion gain": emotion_gain_path(fitted_may, "may")}
    assert all(p.is_file() for p in paths.values())
