"""``diffcomm data info`` (lives with the data tests: it reports on diffcomm.data)."""

import json

from diffcomm.cli import main
from diffcomm.data import DATASETS


def test_data_info_table(capsys):
    assert main(["data", "info"]) == 0
    out = capsys.readouterr().out
    for name in DATASETS:
        assert name in out
    assert "available" in out.splitlines()[0]
    assert "digits8" in out and "1x8x8" in out and "train 1,437, test 360" in out


def test_data_info_json(capsys, monkeypatch):
    monkeypatch.delenv("DIFFCOMM_CIFAR10", raising=False)
    assert main(["data", "info", "--json"]) == 0
    infos = {i["name"]: i for i in json.loads(capsys.readouterr().out)}
    assert set(infos) == set(DATASETS)
    assert infos["natural-patches"]["shape"] == [3, 32, 32] and infos["natural-patches"]["available"]
    assert infos["digits8"]["splits"] == {"train": 1437, "test": 360}
    assert not infos["cifar-10"]["available"] and "DIFFCOMM_CIFAR10" in infos["cifar-10"]["how"]
