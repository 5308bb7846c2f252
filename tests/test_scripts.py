"""The stage entry points as users call them: descriptions -> one image -> sync."""

import json
import subprocess
import sys

from tests.conftest import REPO


def run(cwd, env, *args):
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_stage_scripts_offline(tmp_path, runner):
    env = runner.env
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("image_id,context,description\nfox,Nature,A red fox\nowl,Nature,An owl\n")
    done = run(tmp_path, env, str(REPO / "scripts/generate_descriptions.py"), str(sheet))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "results/manifest.csv").read_text().startswith("image_id,context,folder,prompt")
    (spec,) = (tmp_path / "results/specs/nature").glob("fox.*.json")  # named by its content
    made = run(
        tmp_path,
        env,
        str(REPO / "scripts/generate_images.py"),
        str(spec),
        "results/images/nature/fox.png",
        "results/images/nature/fox.json",
    )
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "results/images/nature/fox.png").read_bytes().startswith(b"\x89PNG")
    synced = run(tmp_path, env, str(REPO / "scripts/sync_to_s3.py"))
    assert synced.returncode == 0, synced.stderr
    marker = json.loads((tmp_path / "results/bucket/_SUCCESS.json").read_text())
    assert [o["key"] for o in marker["objects"]] == ["nature/fox.json", "nature/fox.png"]


def test_stage_script_refuses_a_bad_sheet(tmp_path, runner):
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("image_id,context,description\n,Nature,x\n")
    result = run(tmp_path, runner.env, str(REPO / "scripts/generate_descriptions.py"), str(sheet))
    assert result.returncode == 2 and "line 2, column image_id" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "results/specs").exists()
