"""A corpus of bad inputs to every command: each is exit status 2, one line on stderr without a
traceback, and nothing new on disk. Grouped by command; the inputs are made in ``tmp_path``.

Receiver-specific inputs (receiver options and their values) are covered with the receivers.
"""

import json
import os
import struct
import zlib
from pathlib import Path

import pytest

from diffcomm.cli import main

GRID = ["--receivers", "pinv@gaussian", "--snr", "0", "--n", "2", "--quiet"]


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming ``width`` x ``height`` (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


GOOD_PRIOR = {
    "name": "tiny",
    "model": {"base_channels": 8, "channel_mults": [1, 2], "attention_levels": [], "num_classes": 10, "emb_dim": 16},
    "data": {"dataset": "fashion-mnist", "limit": 64},
    "train": {"steps": 2, "batch_size": 8},
}


def toml_text(config: dict) -> str:
    def value(v):
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float) and v != v:
            return "nan"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    lines = [f"{k} = {value(v)}" for k, v in config.items() if not isinstance(v, dict)]
    for section, table in config.items():
        if isinstance(table, dict):
            lines.append(f"[{section}]")
            lines += [f"{k} = {value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def with_change(section: str | None, key: str, val) -> dict:
    cfg = json.loads(json.dumps(GOOD_PRIOR))
    (cfg if section is None else cfg.setdefault(section, {}))[key] = val
    return cfg


def without(section: str, key: str) -> dict:
    cfg = json.loads(json.dumps(GOOD_PRIOR))
    cfg[section].pop(key)
    return cfg


# Files the cases refer to as {d}/NAME, created before the "nothing new on disk" snapshot.
FILES = {
    "binary.toml": b"\x00\x01\x02\xff\xfe",
    "latin1.toml": "name = 'caf\xe9'\n".encode("latin-1"),
    "broken.toml": b"[train\nsteps = ",
    "list.json": b"[1, 2, 3]",
    "grid.txt": b"receivers = 'pinv'\n",
    "badseed.toml": b"receivers = 'pinv@gaussian'\nsnr = [0]\nseeds = [18446744073709551616]\n",
    "unknown.toml": b"receivers = 'pinv@gaussian'\nsnr = [0]\nrecievers = 'dps'\n",
    "foreign.txt": b"my notes, not results",
    "foreign.jsonl": b'{"a": 1}\n',
    "nokeys.jsonl": b'{"key": "a"}\n',
    "badtype.jsonl": json.dumps({"key": "a", "system": "x", "receiver": "x", "encoder": "x", "dataset": "d",
                                 "split": "s", "n": "four", "channel": "awgn", "csi": "perfect", "snr_db": 0,
                                 "cbr": 0.0625, "seed": 0, "metrics": {}}).encode() + b"\n",
    "notjson.jsonl": b'{"key": "a"}\nnot json\n',
    "empty.jsonl": b"",
    "bomb.png": png_header_only(40000, 40000),
    "corrupt.png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
    "text.png": b"hello, I am not an image",
    "empty.png": b"",
    "afile": b"x",
}
for name, cfg in {
    "misspelt_model.toml": with_change("model", "base_chanels", 8),
    "misspelt_train.toml": with_change("train", "stepz", 8),
    "misspelt_data.toml": with_change("data", "limt", 8),
    "unknown_section.toml": with_change(None, "modle", 1),
    "limit_negative.toml": with_change("data", "limit", -59999),
    "limit_zero.toml": with_change("data", "limit", 0),
    "limit_string.toml": with_change("data", "limit", "100"),
    "limit_float.toml": with_change("data", "limit", 10.5),
    "steps_string.toml": with_change("train", "steps", "100"),
    "steps_zero.toml": with_change("train", "steps", 0),
    "steps_negative.toml": with_change("train", "steps", -5),
    "batch_zero.toml": with_change("train", "batch_size", 0),
    "batch_huge.toml": with_change("train", "batch_size", 10 ** 9),
    "lr_nan.toml": with_change("train", "lr", float("nan")),
    "lr_zero.toml": with_change("train", "lr", 0.0),
    "lr_string.toml": with_change("train", "lr", "fast"),
    "lr_negative.toml": with_change("train", "lr", -1e-3),
    "ema_one.toml": with_change("train", "ema_decay", 1.0),
    "grad_clip_negative.toml": with_change("train", "grad_clip", -1.0),
    "seed_huge.toml": with_change("train", "seed", 2 ** 63),
    "seed_negative.toml": with_change("train", "seed", -1),
    "bf16_string.toml": with_change("train", "bf16", "yes"),
    "checkpoint_zero.toml": with_change("train", "checkpoint_every", 0),
    "base_channels_zero.toml": with_change("model", "base_channels", 0),
    "base_channels_string.toml": with_change("model", "base_channels", "32"),
    "base_channels_negative.toml": with_change("model", "base_channels", -8),
    "channel_mults_empty.toml": with_change("model", "channel_mults", []),
    "channel_mults_zero.toml": with_change("model", "channel_mults", [1, 0]),
    "attention_out_of_range.toml": with_change("model", "attention_levels", [5]),
    "in_channels_two.toml": with_change("model", "in_channels", 2),
    "dropout_nan.toml": with_change("model", "dropout", float("nan")),
    "dropout_one.toml": with_change("model", "dropout", 1.0),
    "num_classes_negative.toml": with_change("model", "num_classes", -1),
    "cond_dropout_string.toml": with_change("data", "cond_dropout", "0.1"),
    "model_not_table.toml": with_change(None, "name", ["a"]),
    "snapshot_bad.toml": with_change("snapshot", "quality_samples", "many"),
    "snapshot_unknown.toml": with_change("snapshot", "keep", [1]),
    "unknown_dataset.toml": with_change("data", "dataset", "imagenet"),
}.items():
    FILES[name] = toml_text(cfg).encode()
FILES["classifier_misspelt.toml"] = b"[model]\nwidht = 32\n[train]\nsteps = 2\n"
FILES["classifier_limit.toml"] = b"[data]\nlimit = 10\n[train]\nsteps = 2\n"
FILES["jscc_channel.toml"] = b"[model]\nchannel = 'fibre'\n[train]\nsteps = 2\n"
FILES["jscc_cbr.toml"] = b"[model]\ncbr = 0\n[train]\nsteps = 2\n"
FILES["jscc_snr.toml"] = b"[model]\nsnr_min_db = 30\nsnr_max_db = 10\n[train]\nsteps = 2\n"
FILES["good_prior.toml"] = toml_text(GOOD_PRIOR).encode()

TRAIN_BAD = [n for n in FILES if n.endswith(".toml") and n not in ("good_prior.toml", "badseed.toml", "unknown.toml")
             and not n.startswith(("classifier_", "jscc_"))]

CASES = {
    # ---- train: one schema before any work
    **{f"train-{name[:-5]}": ["train", "prior", "--config", f"{{d}}/{name}", "--out", "{d}/run"] for name in TRAIN_BAD},
    "train-classifier-misspelt": ["train", "classifier", "--config", "{d}/classifier_misspelt.toml", "--out", "{d}/r"],
    "train-classifier-limit": ["train", "classifier", "--config", "{d}/classifier_limit.toml", "--out", "{d}/r"],
    "train-jscc-channel": ["train", "jscc", "--config", "{d}/jscc_channel.toml", "--out", "{d}/r"],
    "train-jscc-cbr": ["train", "jscc", "--config", "{d}/jscc_cbr.toml", "--out", "{d}/r"],
    "train-jscc-snr-order": ["train", "jscc", "--config", "{d}/jscc_snr.toml", "--out", "{d}/r"],
    "train-missing-config": ["train", "prior", "--config", "{d}/nope.toml", "--out", "{d}/run"],
    "train-config-is-dir": ["train", "prior", "--config", "{d}", "--out", "{d}/run"],
    "train-config-json": ["train", "prior", "--config", "{d}/list.json", "--out", "{d}/run"],
    "train-out-is-file": ["train", "prior", "--config", "{d}/good_prior.toml", "--out", "{d}/afile"],
    "train-out-below-file": ["train", "prior", "--config", "{d}/good_prior.toml", "--out", "{d}/afile/run"],
    "train-out-read-only": ["train", "prior", "--config", "{d}/good_prior.toml", "--out", "/proc/diffcomm-run"],
    "train-steps-zero": ["train", "prior", "--config", "{d}/good_prior.toml", "--out", "{d}/run", "--steps", "0"],
    "train-steps-text": ["train", "prior", "--config", "{d}/good_prior.toml", "--out", "{d}/run", "--steps", "x"],
    "train-unknown-kind": ["train", "vae", "--config", "{d}/good_prior.toml"],
    # ---- eval: output path, config files, seeds, execution settings
    "eval-out-is-dir": ["eval", *GRID, "--out", "{d}"],
    "eval-out-below-file": ["eval", *GRID, "--out", "{d}/afile/r.jsonl"],
    "eval-out-read-only": ["eval", *GRID, "--out", "/proc/r.jsonl"],
    "eval-out-foreign-no-newline": ["eval", *GRID, "--out", "{d}/foreign.txt"],
    "eval-out-foreign-json": ["eval", *GRID, "--out", "{d}/foreign.jsonl"],
    "eval-out-not-json": ["eval", *GRID, "--out", "{d}/notjson.jsonl"],
    "eval-out-record-without-fields": ["eval", *GRID, "--out", "{d}/nokeys.jsonl"],
    "eval-out-record-bad-type": ["eval", *GRID, "--out", "{d}/badtype.jsonl"],
    "eval-config-binary": ["eval", "--config", "{d}/binary.toml", "--out", "{d}/r.jsonl"],
    "eval-config-latin1": ["eval", "--config", "{d}/latin1.toml", "--out", "{d}/r.jsonl"],
    "eval-config-broken": ["eval", "--config", "{d}/broken.toml", "--out", "{d}/r.jsonl"],
    "eval-config-list": ["eval", "--config", "{d}/list.json", "--out", "{d}/r.jsonl"],
    "eval-config-suffix": ["eval", "--config", "{d}/grid.txt", "--out", "{d}/r.jsonl"],
    "eval-config-missing": ["eval", "--config", "{d}/nope.toml", "--out", "{d}/r.jsonl"],
    "eval-config-seed-huge": ["eval", "--config", "{d}/badseed.toml", "--out", "{d}/r.jsonl"],
    "eval-config-unknown-key": ["eval", "--config", "{d}/unknown.toml", "--out", "{d}/r.jsonl"],
    "eval-seed-huge": ["eval", *GRID, "--seeds", str(2 ** 64), "--out", "{d}/r.jsonl"],
    "eval-seed-2-63": ["eval", *GRID, "--seeds", str(2 ** 63), "--out", "{d}/r.jsonl"],
    "eval-seed-negative": ["eval", *GRID, "--seeds", "-1", "--out", "{d}/r.jsonl"],
    "eval-workers-zero": ["eval", *GRID, "--workers", "0", "--out", "{d}/r.jsonl"],
    "eval-workers-text": ["eval", *GRID, "--workers", "two", "--out", "{d}/r.jsonl"],
    "eval-threads-huge": ["eval", *GRID, "--threads", "100000", "--out", "{d}/r.jsonl"],
    "eval-ray-unreachable": ["eval", *GRID, "--backend", "ray", "--address", "127.0.0.1:9", "--out", "{d}/r.jsonl"],
    "eval-ray-bad-address": ["eval", *GRID, "--backend", "ray", "--address", "nohost", "--out", "{d}/r.jsonl"],
    "eval-n-per-receiver-text": ["eval", *GRID, "--out", "{d}/r.jsonl", "--config", "{d}/nper.toml"],
    # ---- demo
    "demo-out-is-file": ["demo", "--out", "{d}/afile", "--quiet"],
    "demo-out-read-only": ["demo", "--out", "/proc/demo", "--quiet"],
    "demo-workers-zero": ["demo", "--out", "{d}/demo", "--workers", "0", "--quiet"],
    "demo-preset-binary": ["demo", "--out", "{d}/demo", "--preset", "{d}/binary.toml", "--quiet"],
    "demo-preset-missing": ["demo", "--out", "{d}/demo", "--preset", "{d}/nope.toml", "--quiet"],
    "demo-n-zero": ["demo", "--out", "{d}/demo", "--n", "0", "--quiet"],
    # ---- sample
    "sample-guidance-nan": ["sample", "--n", "1", "--label", "1", "--guidance", "nan", "--out", "{d}/s"],
    "sample-guidance-inf": ["sample", "--n", "1", "--label", "1", "--guidance", "inf", "--out", "{d}/s"],
    "sample-guidance-negative": ["sample", "--n", "1", "--label", "1", "--guidance", "-2", "--out", "{d}/s"],
    "sample-seed-huge": ["sample", "--n", "1", "--seed", str(2 ** 64), "--out", "{d}/s"],
    "sample-seed-negative": ["sample", "--n", "1", "--seed", "-3", "--out", "{d}/s"],
    "sample-n-zero": ["sample", "--n", "0", "--out", "{d}/s"],
    "sample-steps-huge": ["sample", "--n", "1", "--steps", "100000", "--out", "{d}/s"],
    "sample-out-is-file": ["sample", "--n", "1", "--out", "{d}/afile"],
    "sample-out-read-only": ["sample", "--n", "1", "--out", "/proc/s"],
    "sample-label-out-of-range": ["sample", "--n", "1", "--label", "10", "--out", "{d}/s"],
    "sample-unknown-model": ["sample", "--n", "1", "--model", "nope", "--out", "{d}/s"],
    "sample-not-a-prior": ["sample", "--n", "1", "--model", "fmnist-classifier", "--out", "{d}/s"],
    "sample-bad-sampler": ["sample", "--n", "1", "--sampler", "magic", "--out", "{d}/s"],
    # ---- plot and report: results files that are not (complete) diffcomm results
    "plot-missing": ["plot", "{d}/nope.jsonl", "--out", "{d}/p"],
    "plot-dir": ["plot", "{d}", "--out", "{d}/p"],
    "plot-foreign": ["plot", "{d}/foreign.txt", "--out", "{d}/p"],
    "plot-not-json": ["plot", "{d}/notjson.jsonl", "--out", "{d}/p"],
    "plot-missing-fields": ["plot", "{d}/nokeys.jsonl", "--out", "{d}/p"],
    "plot-bad-type": ["plot", "{d}/badtype.jsonl", "--out", "{d}/p"],
    "plot-empty": ["plot", "{d}/empty.jsonl", "--out", "{d}/p"],
    "plot-out-is-file": ["plot", "{d}/nokeys.jsonl", "--out", "{d}/afile"],
    "plot-bad-format": ["plot", "{d}/nokeys.jsonl", "--out", "{d}/p", "--format", "gif"],
    "report-missing": ["report", "{d}/nope.jsonl", "--out", "{d}/r"],
    "report-foreign": ["report", "{d}/foreign.txt", "--out", "{d}/r"],
    "report-missing-fields": ["report", "{d}/nokeys.jsonl", "--out", "{d}/r"],
    "report-empty": ["report", "{d}/empty.jsonl", "--out", "{d}/r"],
    "report-out-is-file": ["report", "{d}/nokeys.jsonl", "--out", "{d}/afile"],
    "report-out-read-only": ["report", "{d}/nokeys.jsonl", "--out", "/proc/r"],
    # ---- zoo ship: runs without a usable model.json
    "zoo-ship-no-run": ["zoo", "ship", "{d}/norun", "--name", "x", "--recipe", "r.toml"],
    "zoo-ship-no-model-json": ["zoo", "ship", "{d}/run_empty", "--name", "x", "--recipe", "r.toml"],
    "zoo-ship-malformed-model-json": ["zoo", "ship", "{d}/run_malformed", "--name", "x", "--recipe", "r.toml"],
    "zoo-ship-model-json-list": ["zoo", "ship", "{d}/run_list", "--name", "x", "--recipe", "r.toml"],
    "zoo-ship-model-json-no-kind": ["zoo", "ship", "{d}/run_nokind", "--name", "x", "--recipe", "r.toml"],
    "zoo-ship-model-json-binary": ["zoo", "ship", "{d}/run_binary", "--name", "x", "--recipe", "r.toml"],
    "zoo-ship-no-weights": ["zoo", "ship", "{d}/run_noweights", "--name", "x", "--recipe", "r.toml"],
    "zoo-unknown-subcommand": ["zoo", "delete"],
    # ---- transmit: the shared input and output checks (not the receivers)
    "transmit-input-missing": ["transmit", "--input", "{d}/nope.png", "--snr", "10", "--out", "{d}/o.png"],
    "transmit-input-bomb": ["transmit", "--input", "{d}/bomb.png", "--snr", "10", "--out", "{d}/o.png"],
    "transmit-input-corrupt": ["transmit", "--input", "{d}/corrupt.png", "--snr", "10", "--out", "{d}/o.png"],
    "transmit-input-text": ["transmit", "--input", "{d}/text.png", "--snr", "10", "--out", "{d}/o.png"],
    "transmit-input-empty": ["transmit", "--input", "{d}/empty.png", "--snr", "10", "--out", "{d}/o.png"],
    "transmit-out-is-dir": ["transmit", "--input", "{d}/text.png", "--snr", "10", "--out", "{d}/adir.png"],
    "transmit-out-below-file": ["transmit", "--input", "{d}/text.png", "--snr", "10", "--out", "{d}/afile/o.png"],
    "transmit-out-read-only": ["transmit", "--input", "{d}/text.png", "--snr", "10", "--out", "/proc/o.png"],
    "transmit-seed-huge": ["transmit", "--input", "{d}/text.png", "--snr", "10", "--seed", str(2 ** 70),
                           "--out", "{d}/o.png"],
    "transmit-snr-nan": ["transmit", "--input", "{d}/text.png", "--snr", "nan", "--out", "{d}/o.png"],
    # ---- the parser itself
    "unknown-command": ["teleport"],
    "unknown-option": ["data", "info", "--colour"],
}


def _make_inputs(d: Path) -> None:
    for name, data in FILES.items():
        (d / name).write_bytes(data)
    (d / "adir.png").mkdir()
    (d / "nper.toml").write_bytes(b"[n_per_receiver]\npinv = 'many'\n")
    (d / "run_empty").mkdir()
    for name, text in (("run_malformed", "{not json"), ("run_list", "[1]"), ("run_nokind", '{"model": {}}'),
                       ("run_noweights", '{"kind": "prior", "model": {}}')):
        (d / name).mkdir()
        (d / name / "model.json").write_text(text)
    (d / "run_binary").mkdir()
    (d / "run_binary" / "model.json").write_bytes(b"\xff\xfe\x00")


def _tree(d: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(d)): (p.read_bytes() if p.is_file() else None) for p in sorted(d.rglob("*"))}


def test_the_corpus_is_large():
    assert len(CASES) >= 100


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(name, tmp_path, capsys):
    _make_inputs(tmp_path)
    before = _tree(tmp_path)
    argv = [a.replace("{d}", str(tmp_path)) for a in CASES[name]]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("diffcomm"), err
    assert _tree(tmp_path) == before  # nothing new, nothing changed (foreign files intact)
    assert not os.path.exists("/proc/diffcomm-run")
