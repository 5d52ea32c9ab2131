"""Emotion control: spec and track parsing, easing, displacement mixing, the grid, and bad specs.

Fast: no fitted identity. Bad specs are checked through the library and through the real
CLI entry point (``cli.main``) with an empty store, which also shows they are caught before
any model would be loaded and before anything is written.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emogene_cli.emotion.control import (
    clip_track, constant_weights, describe_blend, is_all, load_track, max_frame_step, one_hot_weights, parse_blend, smoothstep,
    track_weights, with_gaps,
)
from emogene_cli.emotions import EMOTIONS
from emogene_cli.errors import EmogeneError, NotFoundError
from emogene_cli.models.ldm import LandmarkDeformationModel, LDMConfig

HAPPY, SAD, SURPRISED, NEUTRAL = (EMOTIONS.index(e) for e in ("happy", "sad", "surprised", "neutral"))

THREE_ROWS = "start,end,emotion,intensity\n0,2,neutral,1\n2,5,happy,1\n5,8,sad,1\n"


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---- specs ----------------------------------------------------------------------------


def test_names_and_aliases():
    assert parse_blend("happy") == {"happy": 1.0}
    assert parse_blend(" Surprise ") == {"surprised": 1.0}
    assert parse_blend("disgust") == {"disgusted": 1.0}
    assert parse_blend("anger:1") == {"angry": 1.0}
    assert is_all("all") and is_all(" ALL ") and not is_all("happy") and not is_all(None)


def test_blends_are_normalised():
    b = parse_blend("happy:0.7,surprise:0.3")
    assert b == pytest.approx({"happy": 0.7, "surprised": 0.3})
    assert parse_blend("happy:2, sad:2") == pytest.approx({"happy": 0.5, "sad": 0.5})
    assert parse_blend("happy,sad") == pytest.approx({"happy": 0.5, "sad": 0.5})  # no weight counts 1
    assert parse_blend("happy:1,happiness:1,sad:2") == pytest.approx({"happy": 0.5, "sad": 0.5})  # repeats add up
    assert parse_blend("happy:1,sad:0") == {"happy": 1.0}  # a zero weight drops out
    assert describe_blend(b) == "happy 0.70 + surprised 0.30" and describe_blend({"sad": 1.0}) == "sad"


def test_constant_weights_fold_in_the_intensity():
    w = constant_weights(parse_blend("happy:0.7,surprised:0.3"), 2.0, 5)
    assert w.shape == (5, 8) and w.dtype == np.float32
    np.testing.assert_allclose(w[:, HAPPY], 1.4, rtol=1e-6)
    np.testing.assert_allclose(w[:, SURPRISED], 0.6, rtol=1e-6)
    assert w.sum(1) == pytest.approx([2.0] * 5)
    assert not one_hot_weights("neutral", 1.0, 3)[:, [i for i in range(8) if i != NEUTRAL]].any()


@pytest.mark.parametrize(
    "spec, phrase",
    [
        ("joyful", "unknown emotion 'joyful'; choose one of: angry, contempt, disgusted, fear, happy, neutral, sad, surprised"),
        ("happy:0.5,joyful:0.5", "unknown emotion 'joyful'"),
        ("all:1", "unknown emotion 'all'"),
        ("happy:-0.2,sad:1", "negative weight -0.2 for happy"),
        ("happy:0,sad:0", "all weights"),
        ("happy:0", "are zero"),
        ("happy:lots", "weight 'lots' of happy is not a number"),
        ("happy:nan", "not finite"),
        ("happy:inf", "not finite"),
        ("happy:1,,sad:1", "empty item"),
        ("", "empty emotion"),
    ],
)
def test_bad_specs(spec, phrase):
    with pytest.raises(EmogeneError) as err:
        parse_blend(spec)
    assert phrase in err.value.message
    assert err.value.path == "--emotion"


# ---- tracks ---------------------------------------------------------------------------


def test_track_csv_and_json_give_the_same_rows(tmp_path):
    csv_rows = load_track(write(tmp_path, "t.csv", THREE_ROWS + '8,9,"happy:0.7,surprise:0.3",0.5\n'))
    records = [
        {"start": 8, "end": 9, "emotion": "happy:0.7,surprise:0.3", "intensity": 0.5},  # any order: sorted on load
        {"start": 0, "end": 2, "emotion": "neutral", "intensity": 1},
        {"start": 2, "end": 5, "emotion": "happy", "intensity": 1},
        {"start": 5, "end": 8, "emotion": "sad", "intensity": 1.0},
    ]
    json_rows = load_track(write(tmp_path, "t.json", json.dumps(records)))
    for rows in (csv_rows, json_rows):
        assert [(r.start, r.end, r.intensity) for r in rows] == [(0, 2, 1), (2, 5, 1), (5, 8, 1), (8, 9, 0.5)]
        assert [r.label for r in rows] == ["neutral", "happy", "sad", "happy 0.70 + surprised 0.30"]
    assert csv_rows[1].source == "line 3" and json_rows[1].source == "record 3"


def test_track_formats_tolerated(tmp_path):
    # a byte-order mark, upper-case header, a notes column, blank lines, JSON without a .json suffix
    rows = load_track(write(tmp_path, "t.csv", "\ufeffStart,End,Emotion,Intensity,note\n\n1,2,Surprise,2,gasp\n\n"))
    assert len(rows) == 1 and rows[0].blend == {"surprised": 1.0} and rows[0].intensity == 2.0
    rows = load_track(write(tmp_path, "track.txt", '[{"start": "0.5", "end": 1, "emotion": "sad", "intensity": 1}]'))
    assert rows[0].start == 0.5


@pytest.mark.parametrize(
    "name, text, phrase",
    [
        ("empty.csv", "", "emotion track is empty"),
        ("blank.csv", "  \n\n", "emotion track is empty"),
        ("header.csv", "start,end,emotion,intensity\n", "no rows"),
        ("nohead.csv", "0,2,happy,1\n", "header lacks start, end, emotion, intensity"),
        ("cols.csv", "start,end,emotion\n0,2,happy\n", "header lacks intensity"),
        ("unquoted.csv", "start,end,emotion,intensity\n0,2,happy:0.5,sad:0.5,1\n", 'line 2: 5 fields, the header has 4; quote a blend'),
        ("short.csv", "start,end,emotion,intensity\n0,2,happy\n", "line 2: 3 fields"),
        ("nan.csv", "start,end,emotion,intensity\n0,two,happy,1\n", "line 2: end 'two' is not a number"),
        ("blankcell.csv", "start,end,emotion,intensity\n0,2,,1\n", "line 2: missing emotion"),
        ("unknown.csv", "start,end,emotion,intensity\n0,2,joyful,1\n", "line 2: unknown emotion 'joyful'; choose one of: angry"),
        ("blend.csv", 'start,end,emotion,intensity\n0,2,"happy:1,gleeful:1",1\n', "line 2: unknown emotion 'gleeful'"),
        ("neg.csv", 'start,end,emotion,intensity\n0,2,"happy:-1,sad:2",1\n', "line 2: negative weight"),
        ("zero.csv", 'start,end,emotion,intensity\n0,2,"happy:0,sad:0",1\n', "line 2: all weights"),
        ("order.csv", "start,end,emotion,intensity\n3,2,happy,1\n", "line 2: start 3 s is not before end 2 s"),
        ("same.csv", "start,end,emotion,intensity\n2,2,happy,1\n", "start 2 s is not before end 2 s"),
        ("negstart.csv", "start,end,emotion,intensity\n-1,2,happy,1\n", "start -1 s is negative"),
        ("intensity.csv", "start,end,emotion,intensity\n0,2,happy,5\n", "intensity 5 out of range"),
        ("overlap.csv", "start,end,emotion,intensity\n0,3,happy,1\n2.5,5,sad,1\n", "line 2 (0-3 s) and line 3 (2.5-5 s) overlap"),
        ("overlap2.csv", "start,end,emotion,intensity\n4,6,sad,1\n0,5,happy,1\n", "overlap"),
        ("bad.json", '[{"start": 0, "end": 2, "emotion": "happy", "intensity": 1},]', "not valid JSON"),
        ("obj.json", '{"start": 0, "end": 2, "emotion": "happy", "intensity": 1}', "must be a list of records"),
        ("empty.json", "[]", "no rows"),
        ("rec.json", '[{"start": 0, "end": 2, "emotion": "happy"}]', "record 1: missing intensity"),
        ("num.json", '[{"start": 0, "end": 2, "emotion": 3, "intensity": 1}]', "record 1: emotion must be text"),
        ("scalar.json", '[3]', "record 1: not an object"),
        ("bool.json", '[{"start": true, "end": 2, "emotion": "sad", "intensity": 1}]', "start is missing or not a number"),
    ],
)
def test_bad_tracks(tmp_path, name, text, phrase):
    path = write(tmp_path, name, text)
    with pytest.raises(EmogeneError) as err:
        load_track(path)
    assert phrase in err.value.message, err.value.message
    assert err.value.path == str(path)
    assert "\n" not in err.value.one_line()


def test_missing_track(tmp_path):
    with pytest.raises(NotFoundError, match="emotion track not found"):
        load_track(tmp_path / "none.csv")


def test_clip_track_to_the_audio(tmp_path):
    rows = load_track(write(tmp_path, "t.csv", THREE_ROWS + "8,9,happy,1\n"))
    kept, warnings = clip_track(rows, 6.0)
    assert [(r.start, r.end) for r in kept] == [(0, 2), (2, 5), (5, 6)]
    assert len(warnings) == 1 and "runs to 9.00 s" in warnings[0] and "6.00 s" in warnings[0] and "1 row dropped" in warnings[0]
    kept, warnings = clip_track(rows, 9.01)  # within half a frame: nothing to say
    assert len(kept) == 4 and warnings == []
    gaps = with_gaps(load_track(write(tmp_path, "g.csv", "start,end,emotion,intensity\n1,2,sad,1\n")), 4.0)
    assert [(g.start, g.end, g.source) for g in gaps] == [(0, 1, "gap"), (1, 2, "line 2"), (2, 4, "gap")]


# ---- easing ---------------------------------------------------------------------------


def test_track_weights_levels_and_neutral_gaps(tmp_path):
    rows = load_track(write(tmp_path, "t.csv", "start,end,emotion,intensity\n2,5,happy,1\n5,8,\"sad:3,surprised:1\",2\n"))
    w = track_weights(rows, 250, transition=0.3)  # 10 s at 25 fps; nothing after 8 s
    assert w.shape == (250, 8) and w.dtype == np.float32
    assert not w[:45].any() and not w[206:].any()  # uncovered: neutral, all zero
    np.testing.assert_allclose(w[60:120, HAPPY], 1.0)  # inside a row: intensity x blend
    np.testing.assert_allclose(w[140:190, SAD], 1.5)
    np.testing.assert_allclose(w[140:190, SURPRISED], 0.5)
    assert w[50, HAPPY] == pytest.approx(0.5)  # eased around the boundary at 2 s, centred on it
    assert 0 < w[48, HAPPY] < 0.5 < w[52, HAPPY] < 1
    assert track_weights(rows, 250, transition=0.3, intensity=0.5)[100, HAPPY] == pytest.approx(0.5)  # --intensity scales


def test_easing_never_jumps_more_than_the_smoothstep_allows(tmp_path):
    rows = load_track(write(tmp_path, "t.csv", "start,end,emotion,intensity\n0,2,neutral,1\n2,5,happy,1\n5,8,sad,3\n"))
    eased = track_weights(rows, 200, transition=0.3)
    steps = np.abs(np.diff(eased, axis=0))
    # each column changes by at most its own level: happy by 1, sad by 3
    assert steps[:, HAPPY].max() <= max_frame_step(1.0, 0.3) + 1e-6
    assert steps[:, SAD].max() <= max_frame_step(3.0, 0.3) + 1e-6
    assert max_frame_step(1.0, 0.3) == pytest.approx(0.2)  # 1.5 / (0.3 s x 25 fps)
    # the bound is tight enough to catch a hard cut
    cut = track_weights(rows, 200, transition=0.0)
    assert np.abs(np.diff(cut, axis=0))[:, HAPPY].max() == pytest.approx(1.0)
    # a row shorter than the transition still eases continuously
    short = load_track(write(tmp_path, "s.csv", "start,end,emotion,intensity\n1,1.1,happy,1\n"))
    w = track_weights(short, 50, transition=0.3)
    assert np.abs(np.diff(w[:, HAPPY])).max() <= max_frame_step(1.0, 0.3) + 1e-6 and 0 < w[:, HAPPY].max() < 1


def test_track_edges_are_not_eased(tmp_path):
    rows = load_track(write(tmp_path, "t.csv", "start,end,emotion,intensity\n0,4,happy,1\n"))
    w = track_weights(rows, 100, transition=0.3)  # exactly the audio's length
    np.testing.assert_allclose(w[:, HAPPY], 1.0)  # full from the first frame to the last


def test_smoothstep():
    np.testing.assert_allclose(smoothstep(np.array([-1, 0, 0.5, 1, 2])), [0, 0, 0.5, 1, 1])


# ---- mixing in the LDM's displacement space ------------------------------------------


@pytest.fixture
def ldm():
    torch.manual_seed(0)
    return LandmarkDeformationModel(LDMConfig(hidden=32)).eval()


def test_mixed_displacement_is_linear_and_exact_at_weight_one(ldm):
    neutral = torch.randn(6, 68, 3) * 0.1
    one = torch.zeros(6, 8)
    one[:, HAPPY] = 1.0
    happy = ldm.mixed_displacement(neutral, one)
    torch.testing.assert_close(neutral + happy, ldm.deform(neutral, HAPPY))  # a learned emotion, exactly
    torch.testing.assert_close(neutral + ldm.mixed_displacement(neutral, 0.4 * one), ldm.deform(neutral, HAPPY, 0.4))
    sad = ldm.deform(neutral, SAD) - neutral
    w = torch.zeros(6, 8)
    w[:, HAPPY], w[:, SAD] = 0.7, 0.3
    torch.testing.assert_close(ldm.mixed_displacement(neutral, w), 0.7 * happy + 0.3 * sad)
    w = torch.zeros(6, 8)
    w[:, NEUTRAL] = 1.0
    assert not ldm.mixed_displacement(neutral, w).any()  # neutral and all-zero weights: no displacement
    assert not ldm.mixed_displacement(neutral, torch.zeros(6, 8)).any()
    with pytest.raises(ValueError, match="weights shape"):
        ldm.mixed_displacement(neutral, torch.zeros(5, 8))


def test_eased_track_moves_the_displacement_smoothly(ldm, tmp_path):
    """On a still face the displacement changes only through the weights: bounded per frame."""
    rows = load_track(write(tmp_path, "t.csv", THREE_ROWS))
    T = 200
    neutral = (torch.randn(1, 68, 3) * 0.1).expand(T, 68, 3).contiguous()
    disp = {e: (ldm.deform(neutral[:1], e) - neutral[:1])[0] for e in (HAPPY, SAD)}
    bound = max_frame_step(1.0, 0.3) * sum(float(d.abs().max()) for d in disp.values())

    def largest_jump(transition):
        d = ldm.mixed_displacement(neutral, torch.from_numpy(track_weights(rows, T, transition=transition)))
        return float((d[1:] - d[:-1]).abs().max())

    assert largest_jump(0.3) <= bound + 1e-6
    assert largest_jump(0.0) > bound  # a hard cut would break it


# ---- the grid -------------------------------------------------------------------------


def test_compose_grid_places_and_labels_each_tile():
    from emogene_cli.render.frames import compose_grid

    tiles = [np.full((64, 48, 3), 60 + 20 * i, np.uint8) for i in range(8)]
    grid = compose_grid(tiles, list(EMOTIONS))
    assert grid.shape == (128, 192, 3) and grid.dtype == np.uint8
    for i in range(8):
        r, c = divmod(i, 4)
        cell = grid[r * 64:(r + 1) * 64, c * 48:(c + 1) * 48]
        assert (cell[:40] == 60 + 20 * i).all()  # the tile itself, in reading order
        bottom = cell[48:, :20]
        assert (bottom < 60 + 20 * i).any() and (bottom > 200).any()  # light text on a darkened band
    unlabelled = compose_grid(tiles, [""] * 8)
    assert (unlabelled[:64, :48] == 60).all()


# ---- bad specs end before anything is loaded or written ------------------------------


@pytest.mark.parametrize(
    "args, phrases",
    [
        (["--emotion", "happy:0.7,gleeful:0.3"], ["--emotion", "unknown emotion 'gleeful'", "surprised"]),
        (["--emotion", "happy:-1,sad:1"], ["--emotion", "negative weight"]),
        (["--emotion", "happy:0,sad:0"], ["--emotion", "all weights", "zero"]),
        (["--emotion-track", "{overlap}"], ["overlap.csv", "overlap"]),
        (["--emotion-track", "{empty}"], ["empty.csv", "empty"]),
        (["--emotion-track", "{reversed}"], ["reversed.csv", "not before end"]),
        (["--emotion-track", "{unknown}"], ["unknown.json", "unknown emotion 'elated'", "angry"]),
        (["--emotion-track", "{missing}"], ["missing.csv", "not found"]),
        (["--emotion", "happy", "--emotion-track", "{overlap}"], ["not both"]),
        ([], ["give --emotion"]),
        (["--emotion", "all", "--preview"], ["--preview", "not available"]),
        (["--emotion", "sad", "-o", "{out}/x.avi"], [".mp4"]),
    ],
)
def test_bad_specs_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, args, phrases):
    from emogene_cli.cli import main

    files = {
        "overlap": write(tmp_path, "overlap.csv", "start,end,emotion,intensity\n0,3,happy,1\n2,4,sad,1\n"),
        "empty": write(tmp_path, "empty.csv", ""),
        "reversed": write(tmp_path, "reversed.csv", "start,end,emotion,intensity\n4,3,happy,1\n"),
        "unknown": write(tmp_path, "unknown.json", '[{"start": 0, "end": 1, "emotion": "elated", "intensity": 1}]'),
        "missing": tmp_path / "missing.csv",
        "out": tmp_path / "out",
    }
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    args = [a.format(**files) for a in args]
    # the audio does not exist and the store is empty: the spec must be refused before either is looked at
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        code = main(["--home", str(home), "speak", str(tmp_path / "no_audio.wav"), *args])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    assert not home.exists() and not any(cwd.iterdir()) and not (tmp_path / "out").exists()
