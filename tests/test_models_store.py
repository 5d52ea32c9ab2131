import numpy as np
import pytest
import torch

from emogene_cli.emotions import parse_emotion
from emogene_cli.errors import EmogeneError, MismatchError, NotFoundError
from emogene_cli.models.a2m import A2MConfig, AudioToMotionVAE
from emogene_cli.models.ldm import LandmarkDeformationModel, LDMConfig
from emogene_cli.motion.training import A2MTraining, motion_errors, predict_motion, train_a2m
from emogene_cli.store import load_artifact, load_model, save_artifact, save_model, validate_name


def test_emotion_names_and_aliases():
    assert parse_emotion("Happy") == "happy"
    assert parse_emotion("disgust") == "disgusted" and parse_emotion("surprise") == "surprised"
    with pytest.raises(EmogeneError, match="unknown emotion 'joyful'.*angry, contempt"):
        parse_emotion("joyful")


@pytest.mark.parametrize("name", ["", "a b", "../x", "x" * 65, "naïve"])
def test_invalid_names(name):
    with pytest.raises(EmogeneError, match="invalid identity name"):
        validate_name(name)


def test_artifact_round_trip_and_metadata(tmp_path):
    path = tmp_path / "a.safetensors"
    save_artifact(path, {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}, producer="test", params={"k": 1}, feature_kind="mel")
    art = load_artifact(path)
    np.testing.assert_array_equal(art.tensors["x"], np.arange(6).reshape(2, 3))
    assert art.params == {"k": 1} and art.feature_kind == "mel" and art.metadata["producer"] == "test"
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_corrupt_and_missing_artifacts(tmp_path):
    with pytest.raises(NotFoundError):
        load_artifact(tmp_path / "none.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 20)
    with pytest.raises(MismatchError, match="cannot read"):
        load_artifact(bad)


def test_model_save_load_and_class_check(tmp_path):
    ldm = LandmarkDeformationModel(LDMConfig(hidden=32))
    path = save_model(tmp_path / "ldm.safetensors", ldm, ldm.config, producer="test")
    again, _ = load_model(path, LandmarkDeformationModel, LDMConfig, what="ldm")
    x = torch.randn(4, 68, 3)
    e = torch.tensor([0, 4, 5, 7])
    torch.testing.assert_close(again(x, e), ldm(x, e))
    assert torch.all(again(x, e)[2] == 0)  # neutral is never deformed
    with pytest.raises(MismatchError, match="expected 'AudioToMotionVAE'"):
        load_model(path, AudioToMotionVAE, A2MConfig, what="a2m")


def test_a2m_learns_audio_driven_mouth_motion():
    """A synthetic clip whose mouth opening follows the loudness of one mel band."""
    rng = np.random.default_rng(0)
    T = 300
    env = np.clip(np.convolve(rng.normal(size=T), np.ones(5) / 5, "same"), 0, None)
    feats = rng.normal(scale=0.1, size=(2 * T, 8)).astype(np.float32)
    feats[:, 0] += np.repeat(env, 2)
    f0 = np.where(env > 0.1, 120.0, 0.0).astype(np.float32)
    motion = np.zeros((T, 68, 3), np.float32)
    motion[:, 66, 1] = 0.2 * env
    motion[:, 57, 1] = 0.15 * env
    cfg = A2MConfig.preset("tiny", audio_dim=8)
    model = train_a2m(feats, f0, motion, 270, cfg, A2MTraining(steps=300, window=32, batch=8), seed=0)
    pred = predict_motion(model, feats, f0, temperature=0.0)
    assert pred.shape == (T, 68, 3)
    err = motion_errors(pred[270:], motion[270:])
    assert err["mouth_open_corr"] > 0.7
    # sampling at temperature 0.2 stays close to the prior mean
    warm = predict_motion(model, feats, f0, temperature=0.2, seed=1)
    assert np.abs(warm - pred).mean() < 0.05
