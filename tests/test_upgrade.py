"""Upgrading Image.Batch never pays again for what an earlier version made with the same config file,
and never loses a batch it had submitted: the previous version (commit a54f1d4, kept in the repository
as tests/data/previous-version-a54f1d4.tar.gz) runs first, in the same folder, then this version."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import API_KEY, FAST_RETRY, REPO, Runner, update_config
from tests.support import previous_version
from tests.support.moto_s3 import scrubbed_environ

ROWS = [(f"b{i}", "Lakes" if i % 2 else "Hills", f"batch prompt {i}: a calm lake at dawn") for i in range(4)]


def sheet(rows=ROWS):
    return "image_id,context,description\r\n" + "".join(f"{i},{c},{d}\r\n" for i, c, d in rows)


@pytest.fixture(scope="module")
def previous(tmp_path_factory):
    """The previous version's files (from the archive in tests/data: never a skip)."""
    return previous_version.extract(tmp_path_factory.mktemp("previous"))


def install(code_root, dest, config=True):
    """The code of ``code_root`` in the project ``dest`` (results/, response-store/ stay). With
    ``config=False`` the user's config/config.yaml stays, as `git pull` keeps a file one changed
    (the other files of config/, the model catalogue among them, come with the code)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    kept = (dest / "config/config.yaml").read_bytes() if not config else None
    for name in ("workflow", "config"):
        shutil.rmtree(dest / name, ignore_errors=True)
        shutil.copytree(code_root / name, dest / name, ignore=ignore, symlinks=True)
    if kept is not None:
        (dest / "config/config.yaml").write_bytes(kept)
    for name in ("Snakefile", "main.py"):
        shutil.copy2(code_root / name, dest / name)
    if not (dest / "profiles").exists():
        os.symlink("workflow/profiles", dest / "profiles")


@pytest.fixture
def project(tmp_path, api):
    root = tmp_path / "project"
    root.mkdir()
    env = scrubbed_environ()
    env.update(AI_API_KEY=API_KEY, OPENAI_BASE_URL=api.base_url)
    (root / "input.csv").write_text(sheet(), newline="")
    return Runner(root, env)


def test_a_batch_the_previous_version_left_running_is_collected_not_paid_again(previous, project, api):
    root = project.root
    install(previous, root)
    update_config(root, mode="batch", batch={"poll_seconds": 0.02}, retry=FAST_RETRY)
    api.batch_polls_to_complete = 100000  # the previous version's run never sees it finish
    run = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "4", "--config", "input_csv=input.csv"],
        cwd=root,
        env=project.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    state = root / "response-store/batches/state.json"
    deadline = time.monotonic() + 60
    while not (state.exists() and any(b.get("id") for b in json.loads(state.read_text())["batches"])):
        assert time.monotonic() < deadline and run.poll() is None
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert len(api.batches_created) == 1
    api.complete_batches_after(1)
    install(REPO, root, config=False)  # the upgrade; the user's config file stays
    result = project.snakemake("--config", "input_csv=input.csv")
    assert len(api.batches_created) == 1, f"{len(api.batches_created)} batches for the same {len(ROWS)} rows"
    assert api.calls == [] and len(list((root / "results/images").rglob("*.png"))) == len(ROWS)
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "config",
    [
        None,  # the config file as the previous version shipped it
        # as the previous schema allowed: only the model (size, quality, output format not sent)
        {"input_csv": "input.csv", "openai": {"model": "gpt-image-2.5-sunburst"}},
    ],
    ids=["shipped-config", "minimal-config"],
)
def test_images_the_previous_version_made_cost_nothing_after_the_upgrade(previous, project, api, config):
    root = project.root
    install(previous, root)
    if config is not None:
        (root / "config/config.yaml").write_text(yaml.safe_dump(config))
    update_config(root, retry=FAST_RETRY)
    project.snakemake("--config", "input_csv=input.csv")
    assert len(api.paid_calls) == len(ROWS)
    install(REPO, root, config=False)
    api.reset()
    rerun = project.snakemake("--config", "input_csv=input.csv")  # in place
    assert api.calls == [], rerun.output[-2000:]
    shutil.rmtree(root / "results")
    project.snakemake("--config", "input_csv=input.csv")  # a rebuild
    assert api.calls == [] and len(list((root / "results/images").rglob("*.png"))) == len(ROWS)


LAST_PLAIN_NAMES = "55c9162"  # the last version whose request files were <image_id>.json


@pytest.fixture(scope="module")
def plain_names(tmp_path_factory):
    return previous_version.extract(tmp_path_factory.mktemp("plain-names"), LAST_PLAIN_NAMES)


def test_request_files_of_the_earlier_layout_keep_their_images_up_to_date(plain_names, project, api):
    """Images made when request files were <image_id>.json are not made again after the upgrade:
    the files are recognised by their bytes and given their new names by the first real run."""
    root = project.root
    install(plain_names, root)
    update_config(root, retry=FAST_RETRY)
    project.snakemake("--config", "input_csv=input.csv")
    pngs = {p: p.stat().st_mtime_ns for p in (root / "results/images").rglob("*.png")}
    assert len(pngs) == len(ROWS) and len(list((root / "results/specs").rglob("b0.json"))) == 1
    install(REPO, root, config=False)
    api.reset()
    dry = project.snakemake("-n", "--verbose", "--config", "input_csv=input.csv")  # --verbose: job blocks too
    assert f"estimate: 0 of {len(ROWS)} image(s) to make" in dry.output, dry.output[-3000:]
    assert "rule generate_image" not in dry.output and "rule write_request" not in dry.output
    run = project.snakemake("--config", "input_csv=input.csv")
    assert api.calls == [] and "0 to make" in run.output, run.output[-3000:]
    assert {p: p.stat().st_mtime_ns for p in pngs} == pngs
    assert len(list((root / "results/specs").rglob("b0.*.json"))) == 1  # its new name
    again = project.snakemake("--config", "input_csv=input.csv")
    assert "Nothing to be done" in again.output
