"""Curves (one line per system, CI bands, PNG + SVG) and the self-contained HTML report."""

import base64
import re
from html.parser import HTMLParser

import pytest

from diffcomm import DiffcommError
from diffcomm.eval import curves, load_records, metric_names, plot_results, results_table, write_report
from diffcomm.eval.summary import pooled_ci

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend((tag, name, value or "") for name, value in attrs)


def decode_data_uri(uri):
    match = re.fullmatch(r"data:(image/png|image/svg\+xml);base64,([A-Za-z0-9+/=]+)", uri)
    assert match, uri[:60]
    data = base64.b64decode(match.group(2), validate=True)
    if match.group(1) == "image/png":
        assert data.startswith(PNG_MAGIC)
    else:
        assert b"<svg" in data[:500]
    return data


def test_curves_one_series_per_system(reference):
    path, _ = reference
    records = load_records(path)
    assert metric_names(records) == ["psnr", "ssim"]  # classifier metrics are null without the classifier
    data = curves(records, "psnr")
    assert len(data) == 2  # awgn and rayleigh panels
    for systems in data.values():
        assert set(systems) == {"pinv@gaussian", "pinv@downsample", "lmmse@gaussian", "lmmse@downsample"}
        for pts in systems.values():
            assert [p[0] for p in pts] == [0.0, 20.0]
            assert all(lo <= mean <= hi for _, mean, lo, hi, _ in pts)


def test_pooled_interval_equals_the_interval_of_all_values():
    from diffcomm.metrics import mean_ci, summarize

    a, b = [1.0, 2.0, 4.0], [3.0, 7.0]
    sa, sb = summarize({"a": a})["a"], summarize({"b": b})["b"]
    pooled = pooled_ci([(sa["mean"], sa["std"], sa["n"]), (sb["mean"], sb["std"], sb["n"])])
    assert pooled == pytest.approx(mean_ci(a + b))


def test_plot_files(reference, tmp_path):
    path, _ = reference
    paths = plot_results(load_records(path), tmp_path, metrics=["psnr"])
    assert len(paths) == 2 * 2  # 2 channels x (png, svg); all metrics: tests/cli/test_eval_cli.py
    for p in paths:
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC) if p.suffix == ".png" else b"<svg" in data[:500]
    svg = (tmp_path / "psnr_rayleigh_perfect_cbr-1-16.svg").read_text()
    for system in ("pinv@gaussian", "lmmse@downsample"):
        assert system in svg  # legend
    with pytest.raises(DiffcommError, match="metric 'fid' is not in the results"):
        plot_results(load_records(path), tmp_path, metrics=["fid"])


def test_report_is_self_contained(reference, tmp_path):
    path, records = reference
    page = write_report(path, tmp_path / "rep").read_text()
    parser = Collector()
    parser.feed(page)
    imgs = [value for tag, name, value in parser.attrs if tag == "img" and name == "src"]
    # 4 curves + per panel (2): originals + 4 systems x 2 SNRs
    assert len(imgs) == 4 + 2 * (1 + 4 * 2)
    for src in imgs:
        decode_data_uri(src)
    # Nothing outside the page: no links, scripts, stylesheets, frames or remote URLs.
    for tag, name, value in parser.attrs:
        if name in ("href", "src", "srcset", "action", "data", "poster"):
            assert value.startswith("data:"), (tag, name, value[:60])
    assert not {"script", "link", "iframe", "object", "embed"} & set(parser.tags)
    assert not re.search(r"(https?:|ftp:|file:|//[a-z])", re.sub(r"data:[^'\"]+", "", page), re.I)
    # The table lists every record; the setup names the systems and the revision.
    header, rows = results_table(list(records.values()))
    assert len(rows) == len(records) and page.count("<tr>") >= len(rows)
    assert "lmmse@downsample" in page and records[next(iter(records))]["git_revision"] in page


def test_report_marks_missing_images(reference, tmp_path):
    src, _ = reference
    path = tmp_path / "copy.jsonl"
    path.write_text("".join(src.read_text().splitlines(keepends=True)[:2]))  # records without their OUT.d folder
    page = write_report(path, tmp_path).read_text()
    assert page.count("images missing") == 2
