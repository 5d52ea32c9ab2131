"""The landmark deformation model across actors: several data folders, and the leave-one-actor-out
measure that grades each model only on an actor it never trained on."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from emogene_cli.emotions import EMOTIONS
from emogene_cli.face import BLENDSHAPE_NAMES
from emogene_cli.errors import InputError
from emogene_cli.emotion.training import PairSet, leave_one_actor_out, scan_actors

from .conftest import DATA, need_shared, run_cli


def _pairs(shapes: dict[str, np.ndarray], frames: int = 80, seed: int = 0) -> PairSet:
    """Synthetic pairs: each actor's displacement for emotion k is ``shapes[actor][k]`` plus noise."""
    rng = np.random.default_rng(seed)
    parts = {"neutral": [], "displacement": [], "emotion": [], "actor": []}
    for actor, per_emotion in shapes.items():
        for k in range(len(EMOTIONS)):
            if EMOTIONS[k] == "neutral":
                continue
            parts["neutral"].append(rng.normal(0, 0.05, (frames, 68, 3)))
            parts["displacement"].append(per_emotion[k] + rng.normal(0, 0.005, (frames, 68, 3)))
            parts["emotion"].append(np.full(frames, k))
            parts["actor"].append(np.full(frames, actor))
    n = sum(len(a) for a in parts["emotion"])
    return PairSet(neutral=np.concatenate(parts["neutral"]).astype(np.float32),
                   displacement=np.concatenate(parts["displacement"]).astype(np.float32),
                   emotion=np.concatenate(parts["emotion"]), is_val=np.zeros(n, bool), actor=np.concatenate(parts["actor"]))


def test_leave_one_actor_out_sees_shared_and_actor_specific_emotions():
    rng = np.random.default_rng(1)
    common = rng.normal(0, 0.03, (len(EMOTIONS), 68, 3)).astype(np.float32)
    # A and B show every emotion the same way; C shows each the opposite way
    data = _pairs({"A": common, "B": common, "C": -common})
    held = {h.actor: h for h in leave_one_actor_out(data, epochs=40)}
    assert set(held) == {"A", "B", "C"}
    emotions = [e for e in EMOTIONS if e != "neutral"]
    # without A, the model learned B's and C's opposite shapes: they cancel, so A is barely reproduced;
    # without C, the model learned A's and B's shapes, the opposite of C's
    assert all(held["C"].strength[e] < -0.5 for e in emotions), held["C"].strength
    assert all(held["C"].read_as[e] != e for e in emotions)
    assert all(abs(held["A"].strength[e]) < 0.6 for e in emotions), held["A"].strength
    # actors that agree reproduce each other
    same = leave_one_actor_out(_pairs({"A": common, "B": common, "C": common}, seed=2), epochs=40)
    for h in same:
        assert all(0.7 < h.strength[e] < 1.3 and h.read_as[e] == e for e in emotions), (h.actor, h.strength, h.read_as)
    assert leave_one_actor_out(_pairs({"A": common}), epochs=2) == []


def test_scan_actors_reads_several_folders_and_rejects_a_repeated_actor(tmp_path):
    need_shared()
    clips = scan_actors([DATA / "mead", DATA / "crema_d"])
    assert {c.actor for c in clips} == {"M030", "W009", "1001"}
    with pytest.raises(InputError, match="M030 is also in"):
        scan_actors([DATA / "mead", DATA / "mead"])


def test_train_ldm_on_two_data_sets_prints_and_stores_the_leave_one_out_table(chain, tmp_path):
    """train-ldm MEAD CREMA-D: three actors, a table with a column per left-out actor, stored with the model."""
    from emogene_cli.store import Store, load_artifact

    chain_home, _, _ = chain
    home = tmp_path / "home"
    shutil.copytree(Store(chain_home).mead_cache_dir, Store(home).mead_cache_dir)  # MEAD's landmarks, already tracked
    proc = run_cli("train-ldm", str(DATA / "mead"), str(DATA / "crema_d"), "--epochs", "60", home=home)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Leave one actor out" in proc.stdout
    for actor in ("1001", "M030", "W009"):
        assert f"without {actor}" in proc.stdout
    meta = load_artifact(Store(home).ldm_path).metadata
    assert json.loads(meta["params"])["actors"] == ["1001", "M030", "W009"]
    table = json.loads(meta["leave_one_actor_out"])
    assert [h["actor"] for h in table] == ["1001", "M030", "W009"]
    assert set(table[0]["strength"]) == {"angry", "disgusted", "fear", "happy", "sad"}  # CREMA-D's five
    assert all(np.isfinite(v) for h in table for v in h["strength"].values())
    assert "contempt" in table[1]["strength"] and table[1]["read_as"]["contempt"] in EMOTIONS


def test_an_ldm_trained_without_an_actor_is_measured_against_that_actor_only(chain, tmp_path):
    """train-ldm --leave-out 1001, then evaluate's reference from the same folders is 1001 alone:
    the training actors are never the yardstick; a folder of training actors only is refused."""
    from emogene_cli.emotion import load_ldm
    from emogene_cli.pipelines.evaluate_emotion import emotion_reference
    from emogene_cli.store import Store, load_artifact

    from .conftest import assert_clean_error

    chain_home, _, _ = chain
    home = tmp_path / "home"
    shutil.copytree(Store(chain_home).mead_cache_dir, Store(home).mead_cache_dir)
    bad = run_cli("train-ldm", str(DATA / "mead"), "--leave-out", "1001", "--epochs", "2", home=home)
    assert_clean_error(bad, "no actor 1001 to leave out", "M030, W009")
    proc = run_cli("train-ldm", str(DATA / "mead"), str(DATA / "crema_d"), "--leave-out", "1001", "--epochs", "20", home=home)
    assert proc.returncode == 0, proc.stderr[-2000:]
    store = Store(home)
    params = json.loads(load_artifact(store.ldm_path).metadata["params"])
    assert params["actors"] == ["M030", "W009"] and params["left_out"] == ["1001"]

    real, info = emotion_reference(store, load_ldm(store), [DATA / "mead", DATA / "crema_d"])
    assert info["reference_actors"] == ["1001"] and info["training_actors"] == ["M030", "W009"]
    assert info["reference_held_out"] and "1001, actors the LDM did not train on" in info["reference_note"]
    assert set(real) == {"angry", "disgusted", "fear", "happy", "sad"}  # CREMA-D's five
    assert real["happy"][BLENDSHAPE_NAMES.index("mouthSmileLeft")] > 0.2  # 1001 smiles when happy
    # without a reference folder the training actors are the yardstick, and the note says so
    real_train, info_train = emotion_reference(store, load_ldm(store), None)
    assert info_train["reference_actors"] == ["M030", "W009"] and not info_train["reference_held_out"]
    assert "contempt" in real_train and "the actors the LDM trained on" in info_train["reference_note"]
    with pytest.raises(InputError, match="every actor here trained the LDM in use"):
        emotion_reference(store, load_ldm(store), [DATA / "mead"])
    # an LDM that does not name its actors: the reference is taken, and the note says it may not be held out
    from emogene_cli.models.ldm import LandmarkDeformationModel, LDMConfig
    from emogene_cli.store import save_model

    save_model(store.ldm_path, LandmarkDeformationModel(LDMConfig()), LDMConfig(), producer="test")
    _, unnamed = emotion_reference(store, load_ldm(store), [DATA / "crema_d"])
    assert unnamed["reference_actors"] == ["1001"] and not unnamed["reference_held_out"]
    assert "whether they are held out is not known" in unnamed["reference_note"]


def test_real_blendshape_change_averages_each_actors_own_change():
    from emogene_cli.emotion.training import MeadClip, actor_blendshape_changes, real_blendshape_change

    def clip(actor, emotion):
        return MeadClip(actor, emotion, 1 if emotion == "neutral" else 3, "001", DATA / f"{actor}_{emotion}.mp4")

    rng = np.random.default_rng(0)
    scores = {clip(a, e): rng.uniform(0, 1, (10, 52)) for a in ("A", "B") for e in ("neutral", "happy")}
    scores[clip("B", "sad")] = rng.uniform(0, 1, (7, 52))
    per_actor = actor_blendshape_changes(scores)
    assert set(per_actor["A"]) == {"happy"} and set(per_actor["B"]) == {"happy", "sad"}
    np.testing.assert_allclose(per_actor["B"]["sad"], scores[clip("B", "sad")].mean(0) - scores[clip("B", "neutral")].mean(0))
    table = real_blendshape_change(scores)
    np.testing.assert_allclose(table[EMOTIONS.index("happy")], (per_actor["A"]["happy"] + per_actor["B"]["happy"]) / 2, rtol=1e-6)
    np.testing.assert_allclose(table[EMOTIONS.index("sad")], per_actor["B"]["sad"], rtol=1e-6)  # only B has it
    assert not table[EMOTIONS.index("neutral")].any() and not table[EMOTIONS.index("contempt")].any()


def test_train_ldm_render_grades_each_left_out_actor_on_rendered_frames(chain, tmp_path):
    """train-ldm MEAD --render may: per actor, the model trained on the other one renders every
    emotion of may, graded by the actor left out; the table is printed and stored with the model;
    the identity's own files are only read and the temporary store is gone."""
    from emogene_cli.emotion import load_ldm
    from emogene_cli.emotion.motion_to_emotion import ldm_provenance
    from emogene_cli.store import Store

    from .conftest import assert_clean_error

    chain_home, _, _ = chain
    home = tmp_path / "home"
    shutil.copytree(chain_home, home, symlinks=True)
    store = Store(home)
    ident = store.identity_dir("may")
    before = {p: p.stat().st_mtime_ns for p in ident.rglob("*") if p.is_file()}
    assert_clean_error(run_cli("train-ldm", str(DATA / "mead"), "--render", "may", home=home), "--render needs --audio")
    assert_clean_error(run_cli("train-ldm", str(DATA / "mead"), "--audio", str(DATA / "speech" / "arctic_a0007_4s.wav"), home=home),
                       "go with --render")
    assert_clean_error(run_cli("train-ldm", str(DATA / "mead"), "--render", "may", "--leave-out", "M030", "--audio",
                               str(DATA / "speech" / "arctic_a0007_4s.wav"), home=home), "cannot be combined with --leave-out")
    assert_clean_error(run_cli("train-ldm", str(DATA / "mead"), "--render", "nobody", "--audio",
                               str(DATA / "speech" / "arctic_a0007_4s.wav"), home=home), "nobody")
    proc = run_cli("train-ldm", str(DATA / "mead"), "--render", "may", "--render", "may", "--audio", str(DATA / "speech" / "arctic_a0007_4s.wav"),
                   "--seconds", "0.6", "--epochs", "20", home=home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = " ".join(proc.stdout.split())
    assert "Leave one actor out on rendered frames of may" in out and "read right" in out
    records = ldm_provenance(store)["rendered_leave_one_actor_out"]
    assert [(r["actor"], r["identity"], r["training_actors"]) for r in records] == [
        ("M030", "may", ["W009"]), ("W009", "may", ["M030"])]
    for r in records:
        assert set(r["per_emotion"]) == {e for e in EMOTIONS if e != "neutral"}
        assert all(np.isfinite(v["strength"]) and v["recognised_as"] in EMOTIONS for v in r["per_emotion"].values())
        assert r["summary"]["measured"] == 7 and 0 <= r["summary"]["read_right"] <= 7
    assert records[0]["seconds_per_emotion"] == pytest.approx(0.6) and records[0]["epochs"] == 20
    assert store.ldm_path.is_file() and ldm_provenance(store)["actors"] == ["M030", "W009"]  # the full model, saved
    assert load_ldm(store).real_blendshape_change.abs().sum() > 0
    assert {p: p.stat().st_mtime_ns for p in ident.rglob("*") if p.is_file()} == before
    assert not list(home.glob(".leave-one-out-*"))


def test_the_report_shows_both_leave_one_out_tables():
    from emogene_cli.evaluation.report import leave_one_actor_out_html, rendered_leave_one_actor_out_html

    landmark = leave_one_actor_out_html([{"actor": "A", "strength": {"happy": 0.5, "sad": -0.1}, "read_as": {"happy": "happy", "sad": "angry"}},
                                         {"actor": "B", "strength": {"happy": 0.7}, "read_as": {"happy": "fear"}}])
    assert "<th>without A</th><th>without B</th>" in landmark and "<td>-0.1 (angry)</td><td>-</td>" in landmark
    rendered = rendered_leave_one_actor_out_html([{
        "actor": "1001", "identity": "may", "summary": {"median": 0.4, "lowest": 0.25, "read_right": 1, "measured": 2},
        "per_emotion": {"happy": {"strength": 0.4, "recognised_as": "happy"}, "sad": {"strength": 0.25, "recognised_as": "angry"},
                        "contempt": {}}}])
    assert "<th>may without 1001</th>" in rendered and "<td>0.25 (angry)</td>" in rendered
    assert "<td>0.4 / 0.25</td>" in rendered and "<td>1 of 2</td>" in rendered and "contempt" not in rendered
    assert leave_one_actor_out_html([]) == rendered_leave_one_actor_out_html([]) == ""


def test_a_render_that_fails_half_way_leaves_the_users_store_as_it_was(chain, tmp_path, monkeypatch):
    """The temporary store is removed and the store's LDM untouched when rendering fails."""
    from emogene_cli.pipelines import emotion_loao
    from emogene_cli.store import Store

    chain_home, _, _ = chain
    home = tmp_path / "home"
    shutil.copytree(chain_home, home, symlinks=True)
    store = Store(home)
    ldm_before = store.ldm_path.read_bytes()

    def fail(*args, **kwargs):
        raise RuntimeError("the renderer failed")

    monkeypatch.setattr(emotion_loao, "evaluate_emotions", fail)
    with pytest.raises(RuntimeError, match="the renderer failed"):
        emotion_loao.rendered_leave_one_actor_out(DATA / "mead", ["may"], store=store, epochs=2,
                                                  audio=DATA / "speech" / "arctic_a0007_4s.wav")
    assert not list(home.glob(".leave-one-out-*")) and store.ldm_path.read_bytes() == ldm_before
    assert (store.identity_dir("may") / "renderer.safetensors").is_file()
