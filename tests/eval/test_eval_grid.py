"""Grid parsing and validation: lists, ranges, pairs, skips with notes, one-line errors, stable seeds."""

import pytest

from diffcomm import DiffcommError, zoo
from diffcomm.eval import derive_seed, grid_from_mapping, load_config, parse_cbrs, parse_snrs, plan
from diffcomm.eval.grid import Point, cbr_label

BASE = {"n": 4, "snr": "0,10", "receivers": "pinv", "encoders": "gaussian"}


def grid(**changes):
    return plan(grid_from_mapping({**BASE, **changes}))


def test_parse_snrs_lists_and_ranges():
    assert parse_snrs("-5,0,5") == [-5.0, 0.0, 5.0]
    assert parse_snrs([0, 10.5]) == [0.0, 10.5]
    assert parse_snrs("0:20:5") == [0.0, 5.0, 10.0, 15.0, 20.0]
    assert parse_snrs("-2:-1:0.5") == [-2.0, -1.5, -1.0]


@pytest.mark.parametrize("text, message", [
    ("abc", "cannot parse 'abc'"), ("0,x", "cannot parse 'x'"), ("nan", "finite"), ("0:10", "cannot parse"),
    ("10:0:5", "cannot parse"), ("200", "[-50, 100] dB"), ("0,0", "twice"), ("", "empty"),
])
def test_parse_snrs_errors(text, message):
    with pytest.raises(DiffcommError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        parse_snrs(text)
    assert "\n" not in str(err.value)


def test_parse_cbrs_and_labels():
    assert parse_cbrs("1/16,1/8") == [1 / 16, 1 / 8]
    assert [cbr_label(c) for c in (1 / 16, 0.3)] == ["1/16", "0.3"]
    with pytest.raises(DiffcommError, match="CBR"):
        parse_cbrs("2")


def test_expansion_order_and_count():
    p = grid(receivers="pinv,lmmse", encoders="gaussian,downsample", channel="awgn,rayleigh", seeds="0,1")
    assert len(p.points) == 2 * 2 * 2 * 2 * 2
    first = p.points[0]
    assert (first.receiver, first.encoder, first.channel, first.snr_db, first.seed) == ("pinv", "gaussian", "awgn",
                                                                                       0.0, 0)
    assert len({pt.key for pt in p.points}) == len(p.points)


def test_pairs_explicit_default_and_skipped_with_note():
    p = grid(receivers="pinv@downsample,lmmse", encoders=None)
    assert {(pt.receiver, pt.encoder) for pt in p.points} == {("pinv", "downsample"), ("lmmse", "gaussian")}
    # A bare linear receiver cannot decode DeepJSCC: that pair is skipped with a note, not an error.
    p = grid(receivers="pinv", encoders="gaussian,deepjscc")
    assert {pt.encoder for pt in p.points} == {"gaussian"}
    assert any("skipped pinv@deepjscc" in note for note in p.notes)


def test_csi_none_skips_non_blind_receivers_with_note():
    p = grid(csi="perfect,none")
    assert {pt.csi for pt in p.points} == {"perfect"}
    assert any("csi none" in note for note in p.notes)


@pytest.mark.parametrize("changes, message", [
    ({"receivers": "nosuch"}, "unknown receiver 'nosuch'"),
    ({"encoders": "jpeg2"}, "unknown encoder 'jpeg2'"),
    ({"receivers": "pinv@nosuch"}, "unknown encoder 'nosuch'"),
    ({"receivers": "pinv@deepjscc"}, "receiver pinv needs a linear link .*, got a jscc link"),
    ({"channel": "awgn,fiber"}, "unknown channel 'fiber'"),
    ({"csi": "guess"}, "unknown CSI mode 'guess'"),
    ({"snr": "1,two"}, "cannot parse 'two'"),
    ({"n": 10_001}, "larger than the fashion-mnist test split"),
    ({"n": 0}, "--n must be >= 1"),
    ({"receivers": "deepjscc", "encoders": "deepjscc", "cbr": "1/4"}, "no shipped DeepJSCC for CBR 0.25"),
    ({"receivers": "digital@gaussian", "encoders": None}, "digital baseline"),
    ({"options": {"lmmse": {"steps": 3}}}, "not a receiver of this grid"),
    ({"options": {"pinv": {"steps": 3}}}, "receiver pinv has no option 'steps'"),
    ({"colour": "red"}, "unknown grid setting 'colour'"),
    ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
])
def test_one_line_errors(changes, message):
    with pytest.raises(DiffcommError, match=message.replace("(", r"\(")) as err:
        grid(**changes)
    assert "\n" not in str(err.value)


def test_missing_weights_name_the_model(monkeypatch):
    monkeypatch.setattr(zoo, "list_models", lambda *a, **k: {})
    with pytest.raises(DiffcommError, match="model 'fmnist-deepjscc-rayleigh-cbr16' is not shipped"):
        grid(receivers="deepjscc@deepjscc", channel="rayleigh")
    with pytest.raises(DiffcommError, match="model 'fmnist-prior' is not shipped"):
        grid(receivers="dps@gaussian")


def test_diffusion_options_are_checked_against_the_receiver_signature(monkeypatch):
    with pytest.raises(DiffcommError, match="receiver dps has no option 'bogus'.*steps"):
        grid(receivers="dps@gaussian", options={"dps": {"bogus": 1}})


def test_global_steps_reach_diffusion_receivers_only(monkeypatch):
    monkeypatch.setattr(zoo, "list_models", lambda *a, **k: {"fmnist-prior": {}})
    p = grid(receivers="dps@gaussian,pinv@gaussian", steps=7, options={"dps": {"zeta": 2.0}})
    opts = {pt.receiver: pt.options for pt in p.points}
    assert opts == {"dps": {"steps": 7, "zeta": 2.0}, "pinv": {}}


def test_keys_and_seeds_are_stable_and_separate_receiver_from_channel():
    a = Point("pinv", "gaussian", "fashion-mnist", "test", 4, "awgn", "perfect", 10.0, 1 / 16, 0, 64, 4)
    b = Point("lmmse", "gaussian", "fashion-mnist", "test", 4, "awgn", "perfect", 10.0, 1 / 16, 0, 64, 4,
              save_images=0, threads=2)
    assert a.key != b.key and a.channel_key == b.channel_key  # same channel draws for both receivers
    assert derive_seed(0, a.key) == derive_seed(0, a.key) != derive_seed(1, a.key)
    assert derive_seed(0, a.key) != derive_seed(0, b.key)
    # Saving images and thread count do not change a point's identity.
    c = Point("pinv", "gaussian", "fashion-mnist", "test", 4, "awgn", "perfect", 10.0, 1 / 16, 0, 64, 4,
              save_images=0, threads=3)
    assert c.key == a.key
    assert 0 <= derive_seed(0, a.key) < 2 ** 63


def test_config_files(tmp_path):
    toml = tmp_path / "g.toml"
    toml.write_text('receivers = ["pinv"]\nencoders = "gaussian"\nsnr = [0, 10]\nn = 4\n[options]\n')
    yaml = tmp_path / "g.yaml"
    yaml.write_text("receivers: [pinv]\nencoders: gaussian\nsnr: '0,10'\nn: 4\n")
    a = plan(grid_from_mapping(load_config(toml)))
    b = plan(grid_from_mapping(load_config(yaml)))
    assert [p.key for p in a.points] == [p.key for p in b.points]
    bad = tmp_path / "bad.toml"
    bad.write_text("receivers = [pinv\n")
    with pytest.raises(DiffcommError, match="cannot parse") as err:
        load_config(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(DiffcommError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_blind_receivers_plan_with_csi_none_and_skip_csi_modes_they_do_not_take():
    p = grid(receivers="blind@deepjscc,dps@deepjscc", csi="perfect,none")
    modes = {(pt.receiver, pt.csi) for pt in p.points}
    assert modes == {("blind", "none"), ("dps", "perfect")}
    assert any("blind@deepjscc with csi perfect" in note for note in p.notes)
    with pytest.raises(DiffcommError, match="decodes without CSI"):
        grid(receivers="blind@deepjscc", csi="perfect")


def test_every_registered_channel_is_a_grid_channel_and_digital_stays_on_flat_fading():
    p = grid(receivers="pinv@gaussian,digital", channel="ofdm,awgn")
    assert {(pt.receiver, pt.channel) for pt in p.points} == {("pinv", "ofdm"), ("pinv", "awgn"),
                                                             ("digital", "awgn")}
    assert any("skipped digital over ofdm" in note for note in p.notes)
