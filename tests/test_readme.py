"""The README's "first five minutes" works as written: its set-up scripts exist and call what the
README says, and the commands it gives for afterwards run (``.venv/bin/diffcomm`` is this
interpreter's ``-m diffcomm``) and print what it describes. The demo line runs on a small linear
preset (the full demo takes about two minutes and is what ``scripts/demo.sh`` runs)."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 3)
    return README[start:end]


FIRST = section("First five minutes")


def code_blocks(text: str) -> list[list[str]]:
    return [[ln.split("  #")[0].strip() for ln in block.strip().splitlines() if ln.strip()]
            for block in re.findall(r"```bash\n(.*?)```", text, re.S)]


def test_setup_commands_exist_and_the_demo_script_calls_the_venv_command():
    setup, after = code_blocks(FIRST)
    assert setup == ["bash scripts/demo.sh --out demo-report", "bash scripts/test.sh"]
    assert (ROOT / "scripts/demo.sh").is_file() and (ROOT / "scripts/test.sh").is_file()
    assert ".venv/bin/diffcomm demo" in (ROOT / "scripts/demo.sh").read_text()
    assert "source .venv/bin/activate" in FIRST and "demo-report/report.html" in FIRST
    assert all(line.startswith(".venv/bin/diffcomm") for line in after)


def test_the_commands_after_setup_run_as_written(tmp_path):
    _, after = code_blocks(FIRST)
    preset = tmp_path / "small.toml"
    preset.write_text('n = 2\nreceivers = ["pinv@gaussian"]\nsnr = [0, 20]\nsave_images = 2\n')
    outputs = {}
    for line in after:
        argv = shlex.split(line)[1:]
        if argv[0] == "demo":
            argv += ["--preset", str(preset), "--quiet"]
        proc = subprocess.run([sys.executable, "-m", "diffcomm", *argv], cwd=tmp_path, capture_output=True,
                              text=True)
        assert proc.returncode == 0, (line, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr
        outputs[argv[0]] = proc.stdout
    assert "usage: diffcomm" in outputs["--help"]
    assert "fashion-mnist" in outputs["data"]
    assert "fmnist-prior" in outputs["zoo"] and "FD-cls" in outputs["zoo"] and "params" in outputs["zoo"]
    assert (tmp_path / "samples" / "grid.png").is_file()
    demo = outputs["demo"]
    for shown in ("demo: ", "psnr", "results:", "report:", "total time:"):
        assert shown in demo, shown
    assert (tmp_path / "demo-report" / "report.html").is_file()
