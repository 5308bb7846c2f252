"""The workflow under an executor plugin: every job its own process (snakemake-executor-plugin-cluster-
generic with a local stand-in scheduler, tests/support/local_cluster.py) on a shared filesystem, as
on a SLURM cluster; and with the S3 storage plugin against moto's server with no shared filesystem:
each job then runs in a fresh folder holding only the workflow's sources, with an environment that
has only what `envvars:` passed it, so every file a job reads or writes has to go through its
declared inputs and outputs, as on Kubernetes or AWS Batch. Everything stays on loopback."""

import hashlib
import importlib.util
import io
import json
import re
import shlex
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import API_KEY, REPO, Runner, copy_workflow, set_env
from tests.support.fake_openai import expected_color
from tests.support.moto_s3 import CREDENTIALS, scrubbed_environ

CLUSTER_GENERIC = importlib.util.find_spec("snakemake_executor_plugin_cluster_generic") is not None
needs_cluster_generic = pytest.mark.skipif(
    not CLUSTER_GENERIC, reason="snakemake-executor-plugin-cluster-generic is not installed"
)
STORAGE_S3 = importlib.util.find_spec("snakemake_storage_plugin_s3") is not None
needs_storage_s3 = pytest.mark.skipif(not STORAGE_S3, reason="snakemake-storage-plugin-s3 is not installed")

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
JOBS = len(PROMPTS) + 2 + 1 + 2  # one per image, a chunk digest and a contact sheet per context (a page), the sync
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
        "--executor",
        "cluster-generic",
        "--cluster-generic-submit-cmd",
        submit,
        "--cluster-generic-status-cmd",
        f"{helper} status",
        "--jobs",
        "4",
        "--seconds-between-status-checks",
        "1",
    ]


def cluster_jobs(state):
    """{job id: exit code} of the jobs the stand-in scheduler ran."""
    return {path.stem: path.read_text().strip() for path in state.glob("*.rc")}


def last_log(root):
    """Snakemake's log of the last run (its job blocks: the console shows them only with --verbose)."""
    logs = sorted((Path(root) / ".snakemake/log").glob("*.snakemake.log"))
    return logs[-1].read_text()


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
        (spec,) = [p.relative_to(local.root) for p in local.root.glob(f"results/specs/{stem}.*.json")]
        assert (local.root / spec).read_bytes() == (cluster.root / spec).read_bytes()
    marker = json.loads((cluster.root / "results/bucket/_SUCCESS.json").read_text())
    assert marker["counts"]["images"] == len(PROMPTS)

    again = cluster.snakemake("--config", "input_csv=input.csv", *cluster_args(state), timeout=120)
    assert "Nothing to be done" in again.output and len(cluster_jobs(state)) == JOBS


@needs_cluster_generic
@needs_storage_s3
def test_storage_provider_and_no_shared_filesystem(tmp_path, api, s3):
    """The stand-in API and moto's S3 for storage and destination; jobs in fresh folders with a
    bare environment, so the key, the endpoint and the credentials reach them only through
    `envvars:` and every file only through storage."""
    client = s3.client()
    client.create_bucket(Bucket=STORAGE_BUCKET)
    client.create_bucket(Bucket=DEST_BUCKET)
    state = tmp_path / "cluster"
    root = make_project(tmp_path / "project")
    env = {
        **scrubbed_environ(),
        **s3.env(),
        "AI_API_KEY": API_KEY,
        "OPENAI_BASE_URL": api.base_url,
        "S3_BUCKET_NAME": DEST_BUCKET,
        "LOCAL_CLUSTER_DIR": str(state),
    }
    runner = Runner(root, env)
    args = [
        # cluster-generic writes envvars into job commands: allowed here, where the job scripts
        # are the test's own (and checked below to be gone)
        "--config", "input_csv=input.csv", 'sync={"prefix": "batch/"}', "secrets_in_job_commands=True",
        *cluster_args(state, scratch=root),
        "--shared-fs-usage", "none",
        "--default-storage-provider", "s3",
        "--default-storage-prefix", f"s3://{STORAGE_BUCKET}/run",
        "--storage-s3-endpoint-url", s3.endpoint_url,
    ]  # fmt: skip

    runner.snakemake(*args, timeout=180)
    assert planned_images(last_log(root)) == sorted(PROMPTS)
    jobs = cluster_jobs(state)
    assert len(jobs) == JOBS and set(jobs.values()) == {"0"}, jobs
    assert len(api.paid_calls) == len(PROMPTS)
    assert not (root / "results/images").exists()  # nothing was made here: the jobs ran elsewhere

    stored = s3.objects(STORAGE_BUCKET)
    synced = s3.objects(DEST_BUCKET)
    for stem, prompt in PROMPTS.items():
        png = stored[f"run/results/images/{stem}.png"]
        check_png(png, prompt, "openai")
        sidecar = json.loads(stored[f"run/results/images/{stem}.json"])
        assert sidecar["provider"] == "openai" and sidecar["prompt"] == prompt
        assert sidecar["sha256"] == hashlib.sha256(png).hexdigest()
        assert synced[f"batch/{stem}.png"] == png
        assert synced[f"batch/{stem}.json"] == stored[f"run/results/images/{stem}.json"]
        (spec,) = [k for k in stored if re.fullmatch(rf"run/results/specs/{stem}\.[0-9a-f]{{16}}\.json", k)]
        assert json.loads(stored[spec])["request"]["prompt"] == prompt
    marker = json.loads(synced["batch/_SUCCESS.json"])
    assert {o["key"] for o in marker["objects"]} == {f"batch/{s}.{k}" for s in PROMPTS for k in ("png", "json")}
    assert json.loads(stored["run/results/_SUCCESS.json"]) == marker
    sheets = {re.sub(r"/[a-z0-9-]+-[0-9a-f]{8}/", "/<sheet>/", k) for k in stored if "/contact-sheets/" in k}
    assert {f"run/results/contact-sheets/<sheet>/{folder}.jpg" for folder in ("food-beverage", "nature")} <= sheets

    # paid answers went to the response store in storage, not to a job's scratch folder
    answers = [key for key in stored if re.match(r"run/response-store/[0-9a-f]{2}/", key)]
    assert len(answers) == len(PROMPTS), sorted(stored)

    # nothing changed: nothing to do (plan files staged in the same second as written are not
    # taken for newer than their copies in storage, whose times have whole seconds)
    again = runner.snakemake(*args, timeout=180)
    assert "Nothing to be done" in again.output, again.output[-3000:]

    # every image made again, each by a job on another "machine" with an empty folder: all from
    # the stored answers, no second payment
    remade = runner.snakemake(*args, "--forcerun", "generate_image", timeout=180)
    assert planned_images(last_log(root)) == sorted(PROMPTS), remade.output[-3000:]
    assert len(api.paid_calls) == len(PROMPTS)
    assert all(
        s3.objects(STORAGE_BUCKET)[f"run/results/images/{stem}.png"] == stored[f"run/results/images/{stem}.png"]
        for stem in PROMPTS
    )

    # change detection through storage: one edited row remakes that image only
    (root / "input.csv").write_text(SHEET.replace("An oak on a hill", "A birch by a lake"), encoding="utf-8")
    edited = runner.snakemake(*args, timeout=180)
    assert planned_images(last_log(root)) == ["nature/tree"], edited.output[-3000:]
    assert [call["body"]["prompt"] for call in api.calls[len(PROMPTS) :]] == ["A birch by a lake"]
    synced = s3.objects(DEST_BUCKET)
    check_png(synced["batch/nature/tree.png"], "A birch by a lake", "openai")
    assert synced["batch/nature/fox.png"] == stored["run/results/images/nature/fox.png"]

    # no secret in any file the run, its jobs or the stand-in scheduler wrote
    secrets = [API_KEY.encode(), CREDENTIALS["AWS_SECRET_ACCESS_KEY"].encode()]
    for path in [*root.rglob("*"), *state.rglob("*")]:
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            assert not any(secret in data for secret in secrets), path
    for key, body in {**s3.objects(STORAGE_BUCKET), **synced}.items():
        assert not any(secret in body for secret in secrets), key


@needs_cluster_generic
@needs_storage_s3
def test_an_executor_that_writes_secrets_into_job_commands_is_refused(tmp_path, api, s3):
    """No shared filesystem and cluster-generic (which puts envvars into each job's command):
    the run stops before any job, naming the variables, unless secrets_in_job_commands is set."""
    s3.client().create_bucket(Bucket=STORAGE_BUCKET)
    state = tmp_path / "cluster"
    root = make_project(tmp_path / "project")
    env = {
        **scrubbed_environ(),
        **s3.env(),
        "AI_API_KEY": API_KEY,
        "OPENAI_BASE_URL": api.base_url,
        "LOCAL_CLUSTER_DIR": str(state),
    }
    result = Runner(root, env).snakemake(
        "--config", "input_csv=input.csv", *cluster_args(state, scratch=root),
        "--shared-fs-usage", "none", "--default-storage-provider", "s3",
        "--default-storage-prefix", f"s3://{STORAGE_BUCKET}/run", "--storage-s3-endpoint-url", s3.endpoint_url,
        check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "AI_API_KEY, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY would be in its job scripts" in result.output
    assert "secrets_in_job_commands=True" in result.output and "Traceback" not in result.output
    assert cluster_jobs(state) == {} and api.calls == []


def test_secrets_in_commands_only_for_executors_that_put_them_there():
    from types import SimpleNamespace

    from image_batch.common.settings import secrets_in_commands

    cmd = SimpleNamespace(local_exec=False, pass_envvar_declarations_to_cmd=True)
    secret = SimpleNamespace(local_exec=False, pass_envvar_declarations_to_cmd=False)
    local = SimpleNamespace(local_exec=True, pass_envvar_declarations_to_cmd=True)
    assert "AI_API_KEY would be" in secrets_in_commands({"AI_API_KEY", "OPENAI_BASE_URL"}, cmd, "x", False)
    assert secrets_in_commands({"AI_API_KEY"}, cmd, "x", True) is None
    assert secrets_in_commands({"OPENAI_BASE_URL", "S3_BUCKET_NAME"}, cmd, "x", False) is None
    assert secrets_in_commands({"AI_API_KEY"}, secret, "kubernetes", False) is None
    assert secrets_in_commands({"AI_API_KEY"}, local, "local", False) is None


def test_sync_uploads_keep_their_checksums_whatever_the_environment_says(tmp_path, s3, monkeypatch):
    """snakemake-storage-plugin-s3 sets AWS_REQUEST_CHECKSUM_CALCULATION=when_required in every
    Snakemake process once it is installed: the sync's own uploads must still carry a checksum."""
    from image_batch.sync.upload import S3Target, collect

    set_env(monkeypatch, {**s3.env(), "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required"})
    s3.client().create_bucket(Bucket=DEST_BUCKET)
    (tmp_path / "nature").mkdir()
    (tmp_path / "nature/a.png").write_bytes(b"PNG-a")
    target = S3Target(DEST_BUCKET)
    sent = []
    target.client.meta.events.register("before-send.s3.PutObject", lambda request, **_: sent.append(request.headers))
    target.upload(collect([tmp_path / "nature/a.png"], tmp_path, ""))
    assert len(sent) == 1 and any(name.lower().startswith("x-amz-checksum-") for name in sent[0]), sent


def test_chunk_digests_and_sync_read_files_where_a_storage_provider_put_them(tmp_path):
    """With a storage provider, a job's inputs are local copies under .snakemake/storage/...: the
    digest names them by image, and the sync reads each from where it is."""
    from image_batch.common.settings import Destination
    from image_batch.sync.upload import sync, write_chunk_digest

    copies = tmp_path / ".snakemake/storage/s3/bucket/run/results/images"
    names = ["nature/a.png", "nature/a.json"]
    paths = []
    for name, data in zip(names, (b"PNG-a", b'{"a": 1}'), strict=False):
        (copies / name).parent.mkdir(parents=True, exist_ok=True)
        (copies / name).write_bytes(data)
        paths.append(str(copies / name))
    write_chunk_digest(paths, tmp_path / "chunk.json", names=names)
    assert [entry["name"] for entry in json.loads((tmp_path / "chunk.json").read_text())] == names
    destination = Destination("local", str(tmp_path / "bucket"), "p/")
    marker = sync(
        None,
        destination,
        tmp_path / "_SUCCESS.json",
        chunk_files=[tmp_path / "chunk.json"],
        local_paths=dict(zip(names, paths, strict=False)),
    )
    assert marker["counts"]["uploaded"] == 2
    assert (tmp_path / "bucket/p/nature/a.png").read_bytes() == b"PNG-a"
