"""The workflow under an executor plugin: every job its own process (snakemake-executor-plugin-cluster-
generic with a local stand-in scheduler, tests/support/local_cluster.py), on a shared filesystem,
as on a SLURM cluster. Everything stays on loopback."""

import importlib.util
import io
import json
import re
import shlex
import sys

import pytest
from PIL import Image

from tests.conftest import REPO, Runner, copy_workflow
from tests.support.fake_openai import expected_color
from tests.support.moto_s3 import scrubbed_environ

CLUSTER_GENERIC = importlib.util.find_spec("snakemake_executor_plugin_cluster_generic") is not None
needs_cluster_generic = pytest.mark.skipif(
    not CLUSTER_GENERIC, reason="snakemake-executor-plugin-cluster-generic is not installed"
)

SHEET = (
    "image_id,context,description\n"
    'cake,Food & Beverage,"A cake, with ""icing"" and a candle"\n'
    "fox,Nature,A red fox in snow\n"
    "tree,Nature,An oak on a hill\n"
)
PROMPTS = {
    "food-beverage/cake": 'A cake, with "icing" and a candle',
    "nature/fox": "A red fox in snow",
    "nature/tree": "An oak on a hill",
}
JOBS = len(PROMPTS) + 2  # one per image, the chunk digest, the sync
STORAGE_BUCKET = "image-batch-storage"
DEST_BUCKET = "image-batch-dest"
LOCAL_CLUSTER = REPO / "tests" / "support" / "local_cluster.py"


def make_project(root):
    copy_workflow(root)
    (root / "input.csv").write_text(SHEET, encoding="utf-8")
    return root


def cluster_args(state, scratch=None):
    """Run every job through cluster-generic and the local stand-in scheduler."""
    helper = f"{shlex.quote(sys.executable)} {shlex.quote(str(LOCAL_CLUSTER))}"
    submit = f"{helper} submit" + (f" --scratch {shlex.quote(str(scratch))}" if scratch else "")
    return [
        "--executor", "cluster-generic",
        "--cluster-generic-submit-cmd", submit,
        "--cluster-generic-status-cmd", f"{helper} status",
        "--jobs", "4",
        "--seconds-between-status-checks", "1",
    ]


def cluster_jobs(state):
    """{job id: exit code} of the jobs the stand-in scheduler ran."""
    return {path.stem: path.read_text().strip() for path in state.glob("*.rc")}


def planned_images(output):
    return sorted(set(re.findall(r"output: \S*?results/images/([^,\s]+)\.png", output)))


def without_created(sidecar_bytes):
    sidecar = json.loads(sidecar_bytes)
    sidecar.pop("created")
    return sidecar


def check_png(png, prompt, provider):
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        if provider == "openai":
            assert image.convert("RGB").getpixel((0, 0)) == expected_color(prompt)


@needs_cluster_generic
def test_jobs_as_separate_processes_make_what_a_local_run_makes(tmp_path):
    """Offline generator, shared filesystem: each job is its own Snakemake process, and the
    results are the local run's, byte for byte (the sidecar's `created` time aside)."""
    env = scrubbed_environ()
    local = Runner(make_project(tmp_path / "local"), dict(env))
    local.snakemake("--config", "input_csv=input.csv")

    state = tmp_path / "cluster"
    cluster = Runner(make_project(tmp_path / "cluster-run"), {**env, "LOCAL_CLUSTER_DIR": str(state)})
    result = cluster.snakemake("--config", "input_csv=input.csv", *cluster_args(state), timeout=120)
    assert "OFFLINE MODE" in result.output
    jobs = cluster_jobs(state)
    assert len(jobs) == JOBS and set(jobs.values()) == {"0"}, jobs  # every job ran apart, and passed

    for stem, prompt in PROMPTS.items():
        for root in (local.root, cluster.root):
            check_png((root / f"results/images/{stem}.png").read_bytes(), prompt, "offline")
        for kind in ("png", "json"):
            made = {r: (r / "results/images" / f"{stem}.{kind}").read_bytes() for r in (local.root, cluster.root)}
            bucket = (cluster.root / "results/bucket" / f"{stem}.{kind}").read_bytes()
            assert bucket == made[cluster.root]
            if kind == "png":
                assert made[local.root] == made[cluster.root]
            else:
                assert without_created(made[local.root]) == without_created(made[cluster.root])
        spec = f"results/specs/{stem}.json"
        assert (local.root / spec).read_bytes() == (cluster.root / spec).read_bytes()
    marker = json.loads((cluster.root / "results/bucket/_SUCCESS.json").read_text())
    assert marker["counts"]["images"] == len(PROMPTS)

    again = cluster.snakemake("--config", "input_csv=input.csv", *cluster_args(state), timeout=120)
    assert "Nothing to be done" in again.output and len(cluster_jobs(state)) == JOBS
