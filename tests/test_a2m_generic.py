"""The generic audio-to-motion model: people, splits, speaker normalisation, augmentation, training.

The training test uses three synthetic speakers whose "voices" differ (pitch, a formant,
loudness) and whose mouth opening follows the loudness envelope of what they say: trained on
two, the model must predict the third one's mouth from its audio alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emogene_cli import audio as audio_mod
from emogene_cli.errors import InputError, MismatchError
from emogene_cli.models.a2m import A2MConfig, AudioToMotionVAE
from emogene_cli.motion.corpus import (
    AugmentConfig, ClipData, FeatureExtractor, TalkingClip, add_variants_arrays, augment_clip, people_folds, person_from_stem,
    scan_talking, split_people,
)
from emogene_cli.motion.training import (
    A2MTraining, Utterance, a2m_heldout, load_a2m, predict_motion, save_a2m, speaker_normalise, train_a2m_clips,
)
from emogene_cli.store import Store, save_artifact, save_model

from .conftest import DATA, MODELS

SR = 16000


# ---- who is who, and the split --------------------------------------------------------


@pytest.mark.parametrize("stem, person", [
    ("obama_clip2_30s", "obama"), ("noem_18s", "noem"), ("ocasio_cortez_8s", "ocasio_cortez"),
    ("retalking_face3", "retalking_face3"), ("li_clip1_10s", "li"), ("clip1", "clip1"),
])
def test_person_from_file_name(stem, person):
    assert person_from_stem(stem) == person


def test_scan_uses_subfolders_as_people(tmp_path):
    for rel in ("id001/a.mp4", "id001/b/c.mp4", "id002/x.MP4", "loose_clip1_5s.mp4", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    clips = scan_talking([tmp_path])
    assert sorted((c.person, c.path.name) for c in clips) == [
        ("id001", "a.mp4"), ("id001", "c.mp4"), ("id002", "x.MP4"), ("loose", "loose_clip1_5s.mp4")]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no video found"):
        scan_talking([empty])


@pytest.mark.parametrize("seed", range(20))
def test_leave_identity_out_split_never_shares_a_person(seed):
    rng = np.random.default_rng(seed)
    people = [f"p{k}" for k in rng.integers(0, rng.integers(2, 14), size=40)]
    n_val = int(rng.integers(1, len(set(people))))
    train, val = split_people(people, n_val, seed=seed)
    assert not set(train) & set(val)
    assert set(train) | set(val) == set(people) and len(val) == n_val and train
    # the same seed, the same split; names given explicitly are honoured
    assert split_people(people, n_val, seed=seed) == (train, val)
    assert split_people(people, val, seed=123)[1] == val


@pytest.mark.parametrize("n_people, folds", [(2, 2), (5, 2), (13, 6), (7, 7)])
def test_cross_validation_folds_hold_out_every_person_exactly_once(n_people, folds):
    people = [f"p{k % n_people}" for k in range(3 * n_people)]
    groups = people_folds(people, folds, seed=3)
    assert len(groups) == folds and all(groups)
    flat = [p for g in groups for p in g]
    assert sorted(flat) == sorted(set(people))  # each person in exactly one fold
    assert max(map(len, groups)) - min(map(len, groups)) <= 1
    assert people_folds(people, folds, seed=3) == groups
    for bad in (1, n_people + 1):
        with pytest.raises(InputError, match="--folds must be between 2"):
            people_folds(people, bad)


def test_split_errors():
    with pytest.raises(InputError, match="unknown people ghost"):
        split_people(["a", "b"], ["ghost"])
    with pytest.raises(InputError, match="no person left"):
        split_people(["a", "b"], ["a", "b"])


# ---- speaker normalisation and augmentation ---------------------------------------------


def test_speaker_normalise_removes_loudness_and_pitch_level():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(200, 8)).astype(np.float32)
    f0 = np.where(rng.random(100) > 0.3, rng.uniform(100, 140, 100), 0).astype(np.float32)
    a, p = speaker_normalise(feats, f0)
    np.testing.assert_allclose(a.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(a.std(0), 1, atol=1e-3)
    assert np.median(p[p > 0]) == pytest.approx(1.0) and np.all(p[f0 == 0] == 0)
    # a louder (log-mel offset, gain) and higher (pitch x 1.5) version of the same speech: same inputs
    b, q = speaker_normalise(2.0 * feats + 3.0, 1.5 * f0)
    np.testing.assert_allclose(a, b, atol=1e-4)
    np.testing.assert_allclose(p, q, atol=1e-6)


def test_mel_warp_one_is_the_stored_feature_and_warp_moves_formants_up():
    import librosa

    t = np.arange(SR * 2) / SR
    y = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    T = audio_mod.frames_for(y)
    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=1024, hop_length=320, win_length=800, n_mels=80, fmin=55, fmax=7600)
    old = np.log(mel + 1e-6).T
    old = ((old - old.mean(0)) / (old.std(0) + 1e-5)).astype(np.float32)[: 2 * T]
    np.testing.assert_allclose(audio_mod.mel_features(y, T), old, atol=1e-4)
    raw = lambda w: np.argmax(audio_mod.mel_features(y + 1e-3 * np.random.default_rng(0).normal(size=len(y)).astype(np.float32), T, warp=w).mean(0))  # noqa: E731
    assert raw(1.15) > raw(1.0) > raw(0.87)


def test_augmented_copy_keeps_the_words_and_changes_the_voice():
    rng = np.random.default_rng(1)
    y, env, f0 = synthetic_voice(rng, seconds=4.0, f0_hz=120.0, formant=700.0, gain=0.3)
    T = len(f0)
    motion = mouth_motion(env)
    extractor = FeatureExtractor("mel")
    cfg = AugmentConfig(variants=1, pitch_semitones=3.0, speed=0.1)
    v = augment_clip(y, f0, motion, extractor, np.random.default_rng(5), cfg)
    speed = v.params["speed"]
    n = int(round(T / speed))
    assert v.features.shape == (2 * n, 80) and v.f0.shape == (n,) and v.motion.shape == (n, 68, 3)
    ratio = np.median(v.f0[v.f0 > 0]) / np.median(f0[f0 > 0])
    assert ratio == pytest.approx(speed * 2 ** (v.params["pitch_semitones"] / 12), rel=1e-3)
    # the mouth still opens where the (time-scaled) speech is loud
    opening = v.motion[:, 66, 1]
    loud = v.features[:, :40].mean(1).reshape(n, 2).mean(1)
    assert np.corrcoef(opening, loud)[0, 1] > 0.5
    again = add_variants_arrays(y, f0, motion, extractor, cfg, 7)
    np.testing.assert_array_equal(again[0].features, add_variants_arrays(y, f0, motion, extractor, cfg, 7)[0].features)


# ---- training across speakers ---------------------------------------------------------


def synthetic_voice(rng: np.random.Generator, seconds: float, f0_hz: float, formant: float, gain: float):
    """``(audio [N], envelope [T], f0 [T])``: harmonics of ``f0_hz`` through one resonance, loudness = a random envelope."""
    from scipy.signal import lfilter

    T = int(seconds * 25)
    # syllable-like envelope: smoothed random bursts with pauses
    env = np.clip(np.convolve(rng.normal(size=T), np.hanning(7) / np.hanning(7).sum(), "same") * 2.5, 0, None)
    env[rng.random(T) < 0.08] = 0
    env = np.convolve(env, np.ones(3) / 3, "same")
    n = T * 640
    t = np.arange(n) / SR
    vib = f0_hz * (1 + 0.03 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(vib) / SR
    src = sum(np.sin(k * phase) / k for k in range(1, 25))
    r, w = 0.97, 2 * np.pi * formant / SR  # one formant resonance
    voiced = lfilter([1.0], [1.0, -2 * r * np.cos(w), r * r], src)
    voiced = voiced / (np.abs(voiced).max() + 1e-9)
    amp = np.interp(t, (np.arange(T) + 0.5) / 25, env)
    y = gain * amp * voiced + 1e-4 * rng.normal(size=n)
    f0 = np.where(env > 0.05, f0_hz, 0.0).astype(np.float32)
    return y.astype(np.float32), env.astype(np.float32), f0


def mouth_motion(env: np.ndarray) -> np.ndarray:
    """Motion ``[T, 68, 3]`` whose lower lip (and chin) drop with ``env``: the mouth opens as the speech is loud."""
    m = np.zeros((len(env), 68, 3), np.float32)
    m[:, [65, 66, 67], 1] = 0.25 * env[:, None]
    m[:, [55, 56, 57, 58, 59], 1] = 0.2 * env[:, None]
    m[:, 8, 1] = 0.1 * env
    return m


def test_generic_model_learns_a_voice_it_never_heard():
    """Two synthetic speakers in, a third (other pitch, formant and loudness) out: r > 0.5."""
    rng = np.random.default_rng(0)
    extractor = FeatureExtractor("mel")
    speakers = {"low": (95.0, 600.0, 0.5), "mid": (150.0, 900.0, 0.2), "high": (230.0, 1300.0, 0.05)}
    clips = {}
    for name, (f0_hz, formant, gain) in speakers.items():
        y, env, f0 = synthetic_voice(rng, 12.0, f0_hz, formant, gain)
        clips[name] = (y, f0, mouth_motion(env), env)
    train = []
    for name in ("low", "mid"):
        y, f0, motion, _ = clips[name]
        feats = extractor.features(y, len(f0))
        utts = [Utterance(feats, f0, motion)]
        utts += [Utterance(v.features, v.f0, v.motion) for v in add_variants_arrays(y, f0, motion, extractor, AugmentConfig(variants=2), 0)]
        train.append(utts)
    model = train_a2m_clips(train, A2MConfig.preset("tiny", 80), A2MTraining(steps=250, window=32, batch=8, lr=2e-3), seed=0)
    y, f0, motion, env = clips["high"]
    pred = predict_motion(model, extractor.features(y, len(f0)), f0, temperature=0.0)
    opening = pred[:, 66, 1] - pred[:, 62, 1]
    r = np.corrcoef(opening, motion[:, 66, 1])[0, 1]
    assert r > 0.5, r


def test_mouth_sync_loss_is_one_minus_the_concordance_of_the_inner_lip_gap():
    import torch

    from emogene_cli.models.a2m import mouth_sync_loss

    rng = np.random.default_rng(0)
    target = torch.from_numpy(rng.normal(scale=0.01, size=(4, 32, 68, 3))).float()
    assert float(mouth_sync_loss(target, target)) == pytest.approx(0.0, abs=1e-5)
    shifted = target.clone()  # another rest posture in every window: each window is centred, the same sync
    shifted[:, :, 66, 1] += torch.tensor([0.3, -0.2, 0.1, 0.5])[:, None]
    assert float(mouth_sync_loss(shifted, target)) == pytest.approx(0.0, abs=1e-5)
    wider = target * 2.0  # in step, but twice as wide: 1 - 2 * 2 / (4 + 1)
    assert float(mouth_sync_loss(wider, target)) == pytest.approx(0.2, abs=1e-5)
    assert float(mouth_sync_loss(-target, target)) == pytest.approx(2.0, abs=1e-5)
    late = torch.roll(target, 1, dims=1)  # a frame late: a real loss
    assert 0.5 < float(mouth_sync_loss(late, target)) < 1.5
    moved = target.clone()  # only the inner lips' vertical gap counts
    moved[:, :, :62] = 0.0
    moved[:, :, 62:67, 0] = 0.0
    assert float(mouth_sync_loss(moved, target)) == pytest.approx(0.0, abs=1e-5)
    pred = torch.from_numpy(rng.normal(scale=0.01, size=target.shape)).float().requires_grad_(True)
    mouth_sync_loss(pred, target).backward()
    grad = pred.grad.clone()
    assert grad[:, :, [62, 66], 1].abs().sum() > 0
    grad[:, :, [62, 66], 1] = 0.0
    assert grad.abs().sum() == 0


def test_training_with_the_sync_loss_uses_it():
    import torch

    rng = np.random.default_rng(0)
    feats = rng.normal(size=(200, 8)).astype(np.float32)
    utt = Utterance(feats, np.full(100, 120, np.float32), rng.normal(scale=0.01, size=(100, 68, 3)).astype(np.float32))
    model = AudioToMotionVAE(A2MConfig.preset("tiny", 8))
    args = torch.from_numpy(feats[None]), torch.full((1, 100), 120.0), torch.from_numpy(utt.motion[None])
    assert "sync" in model(*args, sync=True) and "sync" not in model(*args)
    cfg = A2MConfig.preset("tiny", 8)
    plain = train_a2m_clips([[utt]], cfg, A2MTraining(steps=5, window=16, batch=4), seed=0)
    again = train_a2m_clips([[utt]], cfg, A2MTraining(steps=5, window=16, batch=4), seed=0)
    synced = train_a2m_clips([[utt]], cfg, A2MTraining(steps=5, window=16, batch=4, sync_weight=1.0), seed=0)
    same = [torch.equal(a, b) for a, b in zip(plain.state_dict().values(), again.state_dict().values())]
    moved = [torch.equal(a, b) for a, b in zip(plain.state_dict().values(), synced.state_dict().values())]
    assert all(same) and not all(moved)  # training is repeatable, and the loss changes what it learns


def test_a_checkpoint_from_before_a_new_setting_resumes_with_its_default(tmp_path):
    import json

    from safetensors.numpy import load_file, save_file
    from safetensors import safe_open

    rng = np.random.default_rng(0)
    utt = Utterance(rng.normal(size=(200, 8)).astype(np.float32), np.full(100, 120, np.float32),
                    rng.normal(scale=0.01, size=(100, 68, 3)).astype(np.float32))
    ckpt = tmp_path / "ckpt.safetensors"
    settings = A2MTraining(steps=20, window=16, batch=4, checkpoint_every=10)
    train_a2m_clips([[utt]], A2MConfig.preset("tiny", 8), settings, checkpoint=ckpt)
    with safe_open(str(ckpt), "np") as f:
        meta = dict(f.metadata())
    state = json.loads(meta["state"])
    del state["info"]["training"]["sync_weight"]  # as written before the setting existed
    meta["state"] = json.dumps(state)
    save_file(load_file(str(ckpt)), str(ckpt), metadata=meta)
    seen = []
    train_a2m_clips([[utt]], A2MConfig.preset("tiny", 8), settings, checkpoint=ckpt, resume=True,
                    progress=lambda label, step, total, **kw: seen.append(step))
    assert seen == []  # finished and accepted, not refused as "other settings"
    with pytest.raises(MismatchError, match="training"):
        train_a2m_clips([[utt]], A2MConfig.preset("tiny", 8), A2MTraining(steps=20, window=16, batch=4, checkpoint_every=10, sync_weight=3.0),
                        checkpoint=ckpt, resume=True)


def test_training_resumes_from_a_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(200, 8)).astype(np.float32)
    utt = Utterance(feats, np.full(100, 120, np.float32), rng.normal(scale=0.01, size=(100, 68, 3)).astype(np.float32))
    ckpt = tmp_path / "ckpt.safetensors"
    cfg = A2MConfig.preset("tiny", 8)

    class Stop(Exception):
        pass

    def stop_at_15(label, step, total, **kw):  # reported every 10 steps: stops after step 20
        if step > 15:
            raise Stop

    with pytest.raises(Stop):
        train_a2m_clips([[utt]], cfg, A2MTraining(steps=30, window=16, batch=4, checkpoint_every=10), checkpoint=ckpt, progress=stop_at_15)
    assert ckpt.is_file()
    seen = []
    train_a2m_clips([[utt]], cfg, A2MTraining(steps=30, window=16, batch=4, checkpoint_every=10), checkpoint=ckpt, resume=True,
                    progress=lambda label, step, total, **kw: seen.append(step))
    assert seen[0] == 21 and seen[-1] == 30  # continued from the checkpoint of step 20, not from 0
    again = []  # a finished run's checkpoint: --resume returns the model without training
    train_a2m_clips([[utt]], cfg, A2MTraining(steps=30, window=16, batch=4, checkpoint_every=10), checkpoint=ckpt, resume=True,
                    progress=lambda label, step, total, **kw: again.append(step))
    assert again == []


# ---- model files ----------------------------------------------------------------------


def test_old_model_files_load_with_their_old_behaviour(tmp_path):
    """A person model saved before speaker normalisation (no input_norm, no a2m_version) keeps raw inputs."""
    old_cfg = A2MConfig(audio_dim=8, hidden=32, latent=8, blocks=1)
    model = AudioToMotionVAE(old_cfg)
    path = save_model(tmp_path / "old.safetensors", model, old_cfg, producer="fit-identity", feature_kind="mel")
    loaded, _ = load_a2m(path)
    assert loaded.config.input_norm == "none"
    rng = np.random.default_rng(0)
    feats, f0 = rng.normal(size=(40, 8)).astype(np.float32), np.full(20, 120.0, np.float32)
    np.testing.assert_allclose(predict_motion(loaded, feats, f0, temperature=0.0), predict_motion(model, feats, f0, temperature=0.0))
    new = AudioToMotionVAE(A2MConfig.preset("tiny", 8))
    path = save_a2m(tmp_path / "new.safetensors", new, producer="test", params={}, feature_kind="mel")
    again, art = load_a2m(path)
    assert again.config.input_norm == "utterance" and art.metadata["a2m_version"] == "2"
    with pytest.raises(MismatchError, match="audio features"):
        load_a2m(path, feature_kind="hubert:x")
    future = tmp_path / "future.safetensors"
    save_artifact(future, new.state_dict(), producer="test", extra={"a2m_version": "9", "model_class": "AudioToMotionVAE"})
    with pytest.raises(MismatchError, match="version 9"):
        load_a2m(future)


def test_heldout_stretch_is_at_least_five_seconds_where_the_clip_allows():
    assert a2m_heldout(500) == 125  # 20 s clip: 5 s held out
    assert a2m_heldout(3000) == 300  # 2 min: 10 %
    assert a2m_heldout(125) == 62  # 5 s clip: half


# ---- real video ----------------------------------------------------------------------


def test_30fps_video_gives_25fps_motion_of_the_right_length(tmp_path, model_env):
    """A 3 s cut of a real 30 fps clip: 75 frames of motion, 150 feature rows; cached the second time."""
    from emogene_cli.media import ffmpeg_exe, probe
    from emogene_cli.motion.corpus import TalkingClip, load_clip

    src = DATA / "talking" / "li_clip3_7s.mp4"
    cut = tmp_path / "li_clip9_3s.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(src), "-t", "3", "-c:v", "libx264", "-c:a", "aac", str(cut)], check=True)
    assert probe(cut).fps == pytest.approx(30, abs=0.1)
    store = Store(tmp_path / "home")
    clip = TalkingClip(cut, person_from_stem(cut.stem))
    first = load_clip(clip, store, FeatureExtractor("mel"))
    assert clip.person == "li"
    assert abs(first.frames - 75) <= 1
    assert first.motion.shape == (first.frames, 68, 3) and first.features.shape == (2 * first.frames, 80)
    assert first.f0.shape == (first.frames,) and first.found.all()
    assert first.cached == {"landmarks": False, "features": False}
    second = load_clip(clip, store, FeatureExtractor("mel"))
    assert second.cached == {"landmarks": True, "features": True}
    np.testing.assert_array_equal(first.motion, second.motion)


def test_finetune_without_a_generic_model_is_a_one_line_error(tmp_path):
    """fit-identity --a2m finetune on a store without models/a2m.safetensors names train-a2m, before any work."""
    home = tmp_path / "home"
    save_artifact(Store(home).dataset_path("stub"), {"x": np.zeros(1, np.float32)}, producer="preprocess", feature_kind="mel")
    env = dict(os.environ, EMOGENE_MODEL_DIR=str(MODELS), HF_HUB_OFFLINE="1", COLUMNS="200")
    env.pop("EMOGENE_HOME", None)
    proc = subprocess.run([sys.executable, "-m", "emogene_cli", "--home", str(home), "fit-identity", "stub", "--a2m", "finetune"],
                          capture_output=True, text=True, env=env, timeout=120, cwd=str(Path(__file__).resolve().parents[1]))
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "train-a2m" in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def _clip_data(name: str, person: str, feats: np.ndarray, f0: np.ndarray, motion: np.ndarray, audio: np.ndarray):
    from emogene_cli.motion.corpus import ClipData, TalkingClip

    T = len(motion)
    return ClipData(clip=TalkingClip(Path(f"/nowhere/{name}.mp4"), person), motion=motion, features=feats, f0=f0, audio=audio,
                    mean68=np.zeros((68, 3), np.float32), iod=1.0, poses=np.tile(np.eye(4, dtype=np.float32), (T, 1, 1)),
                    landmarks68=np.zeros((T, 68, 3), np.float32), found=np.ones(T, bool), px_scale=1.0, feature_kind="mel")


def test_sync_offsets_find_a_clip_whose_mouth_moves_early_and_shift_clip_realigns_it():
    from emogene_cli.motion.corpus import shift_clip
    from emogene_cli.motion.generic import sync_offsets

    rng = np.random.default_rng(3)
    extractor = FeatureExtractor("mel")
    clips = []
    for k, (f0_hz, formant, gain) in enumerate([(100.0, 650.0, 0.4), (140.0, 850.0, 0.2), (200.0, 1100.0, 0.1), (120.0, 750.0, 0.3)]):
        y, env, f0 = synthetic_voice(rng, 10.0, f0_hz, formant, gain)
        motion = mouth_motion(env)
        if k == 2:  # this recording's video runs 3 frames ahead of its sound
            motion = np.concatenate([motion[3:], np.repeat(motion[-1:], 3, 0)])
        clips.append(_clip_data(f"c{k}", f"p{k}", extractor.features(y, len(f0)), f0, motion, y))
    found = sync_offsets(clips)
    assert found[clips[2].clip.key]["offset"] == 3
    assert all(found[c.clip.key]["offset"] == 0 for i, c in enumerate(clips) if i != 2), found
    moved = shift_clip(clips[2], 3)
    assert moved.frames == clips[2].frames - 3 and moved.features.shape[0] == 2 * moved.frames and len(moved.f0) == moved.frames
    assert len(moved.audio) == moved.frames * 640 and moved.offset == 3
    np.testing.assert_array_equal(moved.motion, clips[2].motion[:-3])
    np.testing.assert_array_equal(moved.features, clips[2].features[6:])
    assert shift_clip(clips[0], 0) is clips[0]


def synthetic_clip(name: str, rng: np.random.Generator, f0_hz: float, formant: float, gain: float,
                   seconds: float = 12.0) -> ClipData:
    """A :class:`ClipData` of one synthetic speaker whose mouth opens with the loudness of the speech."""
    y, env, f0 = synthetic_voice(rng, seconds, f0_hz, formant, gain)
    motion = mouth_motion(env)
    T = len(env)
    mean68 = np.zeros((68, 3), np.float32)
    mean68[:, 0] = np.linspace(-50, 50, 68)
    return ClipData(
        clip=TalkingClip(Path(f"/nowhere/{name}.mp4"), name), motion=motion,
        features=FeatureExtractor("mel").features(y, T), f0=f0, audio=y.astype(np.float32), mean68=mean68, iod=60.0,
        poses=np.repeat(np.eye(4, dtype=np.float32)[None], T, 0), landmarks68=mean68[None] + motion * 60.0,
        found=np.ones(T, bool), px_scale=1.0, feature_kind="mel", cached={"landmarks": False, "features": False},
    )


def test_cross_validation_scores_every_person_with_a_model_that_never_heard_them(tmp_path, monkeypatch):
    from emogene_cli.motion import generic as generic_a2m
    from emogene_cli.motion.generic import GenericPreset, cross_validate

    trained_on = []
    fit = generic_a2m._fit_generic

    def recording_fit(train, *args, **kwargs):
        trained_on.append({d.person for d in train})
        return fit(train, *args, **kwargs)

    monkeypatch.setattr(generic_a2m, "_fit_generic", recording_fit)
    rng = np.random.default_rng(0)
    speakers = {"low": (95.0, 600.0, 0.5), "mid": (150.0, 900.0, 0.2), "high": (230.0, 1300.0, 0.05)}
    data = [synthetic_clip(name, rng, *v) for name, v in speakers.items()]
    groups = people_folds([d.person for d in data], 3, seed=0)
    cv = cross_validate(data, groups, GenericPreset.get("tiny"), 100, store=Store(tmp_path), extractor=FeatureExtractor("mel"),
                        augment=AugmentConfig(variants=0), sync_align=False)
    assert cv["folds"] == 3 and set(cv["people"]) == set(speakers)
    assert [people & set(g) for people, g in zip(trained_on, groups)] == [set()] * 3  # never trained on its fold
    rs = [v["mouth_open_corr"] for v in cv["people"].values()]
    assert min(rs) > 0.3, cv["people"]  # each voice was unheard by the model that scored it
    assert cv["mean_r"] == pytest.approx(np.mean(rs)) and cv["min_r"] == pytest.approx(min(rs))
    assert all(v["frames"] == 300 for v in cv["people"].values())


def test_cross_validation_also_scores_each_person_resynced_by_a_judge_that_is_not_the_model(tmp_path):
    from emogene_cli.motion.generic import GenericPreset, cross_validate

    rng = np.random.default_rng(3)
    voices = {"ann": (100.0, 650.0, 0.4), "bob": (140.0, 850.0, 0.2), "cid": (200.0, 1100.0, 0.1), "dan": (120.0, 750.0, 0.3)}
    data = []
    for name, v in voices.items():
        c = synthetic_clip(name, rng, *v)
        if name == "cid":  # this recording's video runs 4 frames ahead of its sound
            c.motion = np.concatenate([c.motion[4:], np.repeat(c.motion[-1:], 4, 0)])
        data.append(c)
    groups = people_folds([d.person for d in data], 2, seed=0)
    cv = cross_validate(data, groups, GenericPreset.get("tiny"), 100, store=Store(tmp_path), extractor=FeatureExtractor("mel"),
                        augment=AugmentConfig(variants=0))
    cid = cv["people"]["cid"]
    assert cid["sync_offset"] == 4 and cid["mouth_open_best_lag"] == 4, cid
    assert cid["mouth_open_corr_resynced"] > cid["mouth_open_corr"] + 0.2, cid
    for name in ("ann", "bob", "dan"):  # in sync: the same recording scored twice
        assert cv["people"][name]["sync_offset"] == 0
        assert cv["people"][name]["mouth_open_corr_resynced"] == pytest.approx(cv["people"][name]["mouth_open_corr"])
    resynced = [v["mouth_open_corr_resynced"] for v in cv["people"].values()]
    assert cv["mean_r_resynced"] == pytest.approx(np.mean(resynced))
    assert cv["below_035"] == sum(v["mouth_open_corr"] < 0.35 for v in cv["people"].values())


def test_train_a2m_prints_the_cross_validation_per_person_and_its_mean(monkeypatch):
    from rich.console import Console

    from emogene_cli.commands import train_a2m as command

    rec = Console(record=True, width=200)
    monkeypatch.setattr(command, "console", rec)
    row = {"frames": 250, "clips": 1, "mouth_open_best_lag": -2, "mouth_open_best_corr": 0.7, "m_lmd": 1.25}
    cv = {"folds": 2, "people": {"ann": {**row, "mouth_open_corr": 0.4}, "bob": {**row, "mouth_open_corr": 0.6}},
          "mean_r": 0.5, "median_r": 0.5, "min_r": 0.4, "mean_best_r": 0.7, "mean_m_lmd": 1.25}
    command._print_cross_validation(cv)  # a model file written before the resynced scores: no such column
    assert "over 2 people: mouth-opening r mean 0.50" in rec.export_text() and "resynced" not in rec.export_text(clear=True)
    cv["people"]["ann"].update(mouth_open_corr_resynced=0.65, sync_offset=3)
    cv["people"]["bob"].update(mouth_open_corr_resynced=0.6, sync_offset=0)
    cv.update(mean_r_resynced=0.625, median_r_resynced=0.625, below_035=0, below_035_resynced=0)
    command._print_cross_validation(cv)
    text = rec.export_text()
    assert "2-fold leave-identity-out" in text and "-2 (0.70)" in text
    assert [line.split()[:4] for line in text.splitlines() if line.startswith(("│ ann", "│ bob"))] == [
        ["│", "ann", "│", "10.0"], ["│", "bob", "│", "10.0"]]
    assert "over 2 people: mouth-opening r mean 0.50, median 0.50, lowest 0.40" in text
    assert "0.65 (+3)" in text and "resynced recordings" in text and "r mean 0.62, median 0.62" in text


def test_an_interrupted_cross_validation_keeps_the_saved_model(tmp_path, monkeypatch):
    from emogene_cli.motion import generic as generic_a2m

    rng = np.random.default_rng(1)
    voices = {"ann": (110.0, 700.0, 0.3), "bob": (150.0, 900.0, 0.2), "cid": (210.0, 1200.0, 0.1)}
    clips = {name: synthetic_clip(name, rng, *v, seconds=4.0) for name, v in voices.items()}
    monkeypatch.setattr(generic_a2m, "scan_talking", lambda inputs: [c.clip for c in clips.values()])
    monkeypatch.setattr(generic_a2m, "load_clip", lambda clip, store, extractor: clips[clip.person])

    def interrupted(*args, **kwargs):
        assert store.generic_a2m_path.is_file()  # saved before the folds start
        raise KeyboardInterrupt

    monkeypatch.setattr(generic_a2m, "cross_validate", interrupted)
    store = Store(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        generic_a2m.train_generic_a2m([tmp_path], store=store, preset="tiny", epochs=1, val_people=1, folds=3,
                                      augment=AugmentConfig(variants=0), audio_features="mel", baseline=False)
    assert load_a2m(store.generic_a2m_path, feature_kind="mel") is not None
    with pytest.raises(InputError, match="--folds must be between 2"):  # before any training
        generic_a2m.train_generic_a2m([tmp_path], store=Store(tmp_path / "b"), preset="tiny", epochs=1, folds=4,
                                      augment=AugmentConfig(variants=0), audio_features="mel", baseline=False)
    assert not Store(tmp_path / "b").generic_a2m_path.exists()
