"""Reliability end to end through snakemake: crashes, reruns, faults. Nothing lost, nothing paid twice."""

import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from tests.conftest import API_KEY, api_slots
from tests.support.fake_openai import Behavior, expected_color

API_SLOTS = api_slots()


def sheet(n, context="Nature"):
    lines = ["image_id,context,description"]
    lines += [f"img{i:03d},{context},prompt number {i} of a calm lake" for i in range(n)]
    return "\r\n".join(lines) + "\r\n"


@pytest.fixture
def project_env(keyed):
    return keyed


def write_sheet(runner, n):
    (runner.root / "input.csv").write_text(sheet(n), newline="")


def assert_all_images_correct(root, n):
    for i in range(n):
        png = root / f"results/images/nature/img{i:03d}.png"
        with Image.open(io.BytesIO(png.read_bytes())) as image:
            assert image.format == "PNG"
            assert image.convert("RGB").getpixel((0, 0)) == expected_color(f"prompt number {i} of a calm lake")
        json.loads(png.with_suffix(".json").read_text())
    leftovers = [p for p in root.rglob("*.part")]
    assert leftovers == []


def files_under(root, *names):
    out = {}
    for name in names:
        for path in (root / name).rglob("*"):
            if path.is_file():
                out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


def test_rm_rf_results_costs_nothing_and_restores_identical_files(project_env, api):
    write_sheet(project_env, 6)
    project_env.snakemake("--config", "input_csv=input.csv")
    assert len(api.paid_calls) == 6
    before = files_under(project_env.root, "results/images", "results/bucket")
    import shutil

    shutil.rmtree(project_env.root / "results")
    project_env.snakemake("--config", "input_csv=input.csv")
    assert len(api.calls) == 6  # no new call
    after = files_under(project_env.root, "results/images", "results/bucket")
    assert set(after) == set(before)
    for name in before:
        if name.endswith("_SUCCESS.json"):
            continue  # its time differs
        assert after[name] == before[name], name


def test_code_change_does_not_regenerate(project_env, api):
    write_sheet(project_env, 3)
    project_env.snakemake("--config", "input_csv=input.csv")
    for rel in (
        "workflow/image_batch/images/generate.py",
        "workflow/rules/images.smk",
        "workflow/image_batch/default_plugins/openai_images.py",
    ):
        with open(project_env.root / rel, "a") as handle:
            handle.write("\n# a code change\n")
    (project_env.root / "input.csv").touch()  # and the sheet re-saved unchanged
    dry = project_env.snakemake("--dry-run", "--config", "input_csv=input.csv")
    assert "Nothing to be done" in dry.output, dry.output[-3000:]
    project_env.snakemake("--config", "input_csv=input.csv")
    assert len(api.calls) == 3


def test_moderation_refusal_is_reported_once_and_others_complete(project_env, api):
    write_sheet(project_env, 6)
    api.set_behavior("number 3 of", "moderation")
    result = project_env.snakemake("--config", "input_csv=input.csv", check=False)
    assert result.returncode != 0
    assert len(api.calls_for("prompt number 3 of a calm lake")) == 1
    assert "line 5, image_id img003 (Nature): refused by the safety system (moderation_blocked)" in result.output
    for i in (0, 1, 2, 4, 5):
        assert (project_env.root / f"results/images/nature/img{i:03d}.png").exists()
    assert not (project_env.root / "results/images/nature/img003.png").exists()
    assert not (project_env.root / "results/_SUCCESS.json").exists()
    # once the row is fixed, the rerun makes just that one and completes
    (project_env.root / "input.csv").write_text(sheet(6).replace("number 3 of", "number three of"), newline="")
    project_env.snakemake("--config", "input_csv=input.csv")
    assert len(api.calls) == 7 and (project_env.root / "results/_SUCCESS.json").exists()


def test_fatal_answer_stops_the_run_with_what_to_fix(project_env, api):
    write_sheet(project_env, API_SLOTS + 8)
    project_env.env["AI_API_KEY"] = "sk-wrong-0000000000"
    result = project_env.snakemake("--config", "input_csv=input.csv", check=False)
    assert result.returncode != 0
    assert "STOPPED calling the API" in result.output and "check AI_API_KEY" in result.output
    assert len(api.calls) <= API_SLOTS  # at most the requests already in flight
    assert "sk-wrong-0000000000" not in result.output
    # fixed key: the rerun completes (the stop flag belongs to the previous run)
    project_env.env["AI_API_KEY"] = API_KEY
    project_env.snakemake("--config", "input_csv=input.csv")
    assert_all_images_correct(project_env.root, API_SLOTS + 8)


def start_run(runner, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "4", *args],
        cwd=runner.root,
        env=runner.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_for(condition, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def stored_prompts(root):
    prompts = set()
    for path in (root / "response-store").glob("??/*.json"):
        prompts.add(json.loads(path.read_text())["request"]["prompt"])
    return prompts


def test_kill_9_mid_batch_then_main_py_finishes_without_paying_twice(project_env, api):
    n = 24
    write_sheet(project_env, n)
    api.latency = 0.3
    run = start_run(project_env, "--config", "input_csv=input.csv")
    wait_for(lambda: len(api.paid_calls) >= 8)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    time.sleep(0.5)  # let answers that were in flight finish on the server side
    calls_at_kill = len(api.calls)
    stored_at_kill = stored_prompts(project_env.root)
    assert 8 <= calls_at_kill < n
    api.latency = 0

    result = project_env.main("input.csv")  # no --unlock: no lock outlives the killed run
    assert result.returncode == 0, result.output[-4000:]
    assert "--unlock" not in result.output and "another Image.Batch run" not in result.output
    assert_all_images_correct(project_env.root, n)
    later = api.calls[calls_at_kill:]
    # nothing stored before the kill was asked for again; only requests in flight were paid twice
    assert not [c for c in later if c["body"]["prompt"] in stored_at_kill]
    paid_per_prompt = {}
    for call in api.paid_calls:
        paid_per_prompt[call["body"]["prompt"]] = paid_per_prompt.get(call["body"]["prompt"], 0) + 1
    assert sum(count - 1 for count in paid_per_prompt.values()) <= API_SLOTS  # in flight at the kill
    assert len(paid_per_prompt) == n
    assert (project_env.root / "results/_SUCCESS.json").exists()


def test_no_secret_in_any_written_file(project_env, api, s3):
    project_env.env.update(s3.env(), S3_BUCKET_NAME="secrets-check")
    s3.client().create_bucket(Bucket="secrets-check")
    write_sheet(project_env, 3)
    api.fail_times("number 1 of", "server_error", 1)
    project_env.snakemake("--config", "input_csv=input.csv")
    project_env.snakemake("--report", "report.html", "--config", "input_csv=input.csv", check=False)
    secrets = [API_KEY.encode(), s3.env()["AWS_SECRET_ACCESS_KEY"].encode()]
    scanned = 0
    for path in project_env.root.rglob("*"):
        if path.is_file() and "workflow" not in path.relative_to(project_env.root).parts:
            data = path.read_bytes()
            scanned += 1
            for secret in secrets:
                assert secret not in data, path
    assert scanned > 20
    for key, data in s3.objects("secrets-check").items():
        for secret in secrets:
            assert secret not in data, key


def test_fault_campaign_30_percent_of_every_kind(project_env, api):
    """One run under a 30% mix of every transient fault, with one row the API refuses."""
    n = 40
    write_sheet(project_env, n)
    api.set_behavior("number 7 of", "moderation")
    api.set_fault_mix(rate=0.3, seed=7)
    result = project_env.snakemake("--config", "input_csv=input.csv", check=False)
    assert result.returncode != 0
    faulted = {c["behavior"] for c in api.calls if c["rule"] == "mix"}
    assert len(faulted) >= 8, faulted  # the mix really hit many kinds
    assert "line 9, image_id img007 (Nature): refused by the safety system (moderation_blocked)" in result.output
    assert len(api.calls_for("prompt number 7 of a calm lake")) == 1
    for i in range(n):
        if i != 7:
            png = project_env.root / f"results/images/nature/img{i:03d}.png"
            with Image.open(png) as image:
                assert image.convert("RGB").getpixel((0, 0)) == expected_color(f"prompt number {i} of a calm lake")
    good = [c["body"]["prompt"] for c in api.good_paid_calls]
    assert len(good) == len(set(good)) == n - 1  # no good answer was paid for twice
    assert not list(project_env.root.rglob("*.part"))


@pytest.fixture
def flaky_s3(s3):
    from tests.support.flaky_proxy import FlakyProxy

    with FlakyProxy(s3.endpoint_url, seed=3) as proxy:
        yield proxy


def s3_project(runner, s3, proxy, bucket):
    from tests.conftest import update_config

    runner.env.update(s3.env(), AWS_ENDPOINT_URL=proxy.url, S3_BUCKET_NAME=bucket)
    s3.client().create_bucket(Bucket=bucket)
    update_config(runner.root, sync={"max_attempts": 6, "concurrency": 4})


def test_sync_through_a_flaky_network_completes(project_env, api, s3, flaky_s3):
    s3_project(project_env, s3, flaky_s3, "flaky")
    write_sheet(project_env, 10)
    flaky_s3.set_fail_rate(0.3)
    project_env.snakemake("--config", "input_csv=input.csv")
    assert flaky_s3.count(faulted=True) > 0
    stored = s3.objects("flaky")
    for path in (project_env.root / "results/images").rglob("*.*"):
        assert stored[path.relative_to(project_env.root / "results/images").as_posix()] == path.read_bytes()
    assert len(json.loads(stored["_SUCCESS.json"])["objects"]) == 20


def test_sync_broken_midway_leaves_no_marker_and_rerun_uploads_only_the_rest(project_env, api, s3, flaky_s3):
    from tests.conftest import update_config

    s3_project(project_env, s3, flaky_s3, "broken")
    update_config(project_env.root, sync={"max_attempts": 2, "concurrency": 1})
    write_sheet(project_env, 10)
    flaky_s3.break_after(8, mode="503")
    result = project_env.snakemake("--config", "input_csv=input.csv", check=False)
    assert result.returncode != 0 and "No marker was written" in result.output
    # one line for the failed sync, with advice that fits (a 503 is worth the same command again)
    failed = [line for line in result.output.splitlines() if "SYNC FAILED" in line]
    assert len(failed) == 1 and "run the same command again" in failed[0], result.output[-3000:]
    assert "Traceback" not in result.output and 'File "' not in result.output
    partial = s3.objects("broken")
    assert "_SUCCESS.json" not in partial and 0 < len(partial) < 20
    assert not (project_env.root / "results/_SUCCESS.json").exists()

    flaky_s3.heal()
    flaky_s3.reset()
    project_env.snakemake("--config", "input_csv=input.csv")
    assert len(api.calls) == 10  # images were not made again
    # (the run's check of the bucket before any image writes and deletes one probe object)
    uploaded = [r["path"] for r in flaky_s3.requests if r["method"] == "PUT" and ".image-batch-probe-" not in r["path"]]
    assert len(uploaded) == 20 - len(partial) + 2  # the rest, plus the sheet's ledger and the marker
    assert sum(1 for r in flaky_s3.requests if r["method"] == "GET" and "list-type" in r["path"]) <= 2
    stored = s3.objects("broken")
    assert len(json.loads(stored["_SUCCESS.json"])["objects"]) == 20


# -- rescue folders: private to the user, and used end to end ------------------------------------


def _store_shards(store, requests):
    """The store's folders of ``requests``, made with each request's lock file (which a run must be
    able to open even when the folder refuses new answers)."""
    from image_batch.images.store import request_key

    shards = []
    for request in requests:
        key = request_key(request)
        (store / key[:2]).mkdir(parents=True, exist_ok=True)
        (store / key[:2] / f"{key}.lock").touch()
        shards.append(store / key[:2])
    return shards


def _served_from_rescue_then_moved(project_env, api, rescue, store):
    """With the images deleted, the next run serves the two rescued answers with no paid call and
    moves them from ``rescue`` into ``store``."""
    for png in (project_env.root / "results/images/nature").glob("*.png"):
        png.unlink()
    api.reset()
    again = project_env.snakemake("--config", "input_csv=input.csv")
    assert api.paid_calls == [], again.output[-3000:]
    assert_all_images_correct(project_env.root, 2)
    assert not list(rescue.rglob("*.json")) and len(list(store.rglob("??/*.json"))) == 2


def _requests(runner, n):
    """The request of each image, in sheet order, as the descriptions stage writes them (a dry run
    writes nothing)."""
    import subprocess
    import sys

    from tests.conftest import REPO

    script = [sys.executable, str(REPO / "scripts/generate_descriptions.py"), "input.csv"]
    done = subprocess.run(
        [*script, "--config", "config/config.yaml"], cwd=runner.root, env=runner.env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    specs = [next((runner.root / "results/specs/nature").glob(f"img{i:03d}.*.json")) for i in range(n)]
    return [json.loads(path.read_text())["request"] for path in specs]


def _planted_answer(request):
    """A store entry for ``request`` as someone else wrote it: a valid answer of another colour."""
    from image_batch.images.store import _entry_bytes, request_key
    from image_batch.providers import RawResponse

    png = io.BytesIO()
    Image.new("RGB", (1024, 1024), (1, 2, 3)).save(png, "PNG")
    body = json.dumps({"data": [{"b64_json": __import__("base64").b64encode(png.getvalue()).decode()}]})
    key = request_key(request)
    return key, _entry_bytes(key, request, RawResponse(body=body.encode()), "live")


def _plant(root, request, owner=None, mode=0o700):
    key, data = _planted_answer(request)
    entry = root / key[:2] / f"{key}.json"
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_bytes(data)
    for path in (root, entry.parent):
        os.chmod(path, mode)
    if owner is not None:
        os.chown(entry, owner, owner)
    return entry


@pytest.mark.skipif(os.geteuid() != 0, reason="planting another user's files needs root")
def test_a_rescue_folder_someone_else_can_write_is_never_served(project_env, api, tmp_path):
    """An answer planted in a rescue folder by another local user (the system temp folder's is
    shared by all) is not served: a folder of another owner, a folder others can write, an entry of
    another owner are each skipped with one line, and the images are paid for."""
    nobody = 65534
    temp, home = tmp_path / "tmp", tmp_path / "home"
    temp.mkdir()
    home.mkdir()
    project_env.env.update(TMPDIR=str(temp), HOME=str(home))
    write_sheet(project_env, 3)
    requests = _requests(project_env, 3)
    theirs = temp / f"image-batch-rescue-{os.getuid()}"  # made by them before we needed it
    _plant(theirs, requests[0])
    os.chown(theirs, nobody, nobody)
    _plant(project_env.root / "response-store-rescue", requests[1], mode=0o777)  # ours, open to all
    planted = _plant(home / ".cache/image-batch/rescue", requests[2], owner=nobody)  # their file in ours

    done = project_env.snakemake("--config", "input_csv=input.csv")
    assert len(api.paid_calls) == 3, done.output[-3000:]  # nothing planted was served
    assert_all_images_correct(project_env.root, 3)
    warned = [line for line in done.output.splitlines() if "skipped:" in line]
    assert len(warned) == 3, warned  # one line each, once in the run (not again by the image worker)
    assert any(f"rescue folder {theirs} skipped: it belongs to uid {nobody}" in line for line in warned), warned
    assert any("response-store-rescue skipped: others can write to it (mode 777)" in line for line in warned)
    assert any(f"rescued answer {planted} skipped: it is not a regular file of yours" in line for line in warned)
    assert planted.exists()  # never moved into our store
    stored = json.loads(next((project_env.root / "response-store").rglob(planted.name)).read_text())
    assert "b64_json" in stored["body"] and stored["headers"]  # the answer we paid for, not the planted one


def test_a_local_store_that_cannot_be_written_keeps_answers_in_the_rescue_folder(project_env, api):
    """Real processes, a real store that refuses writes: its shard folders made immutable (chattr +i;
    root can write through any mode). The paid answers land in response-store-rescue/ (made 0700),
    the images are made, one line each says where; the next run serves them from there with no
    paid call and moves them into the store."""

    write_sheet(project_env, 2)
    requests = _requests(project_env, 2)
    store = project_env.root / "response-store"
    shards = _store_shards(store, requests)
    if subprocess.run(["chattr", "+i", *map(str, shards)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i does not work on this filesystem")
    try:
        done = project_env.snakemake("--config", "input_csv=input.csv")
    finally:
        subprocess.run(["chattr", "-i", *map(str, shards)], check=True)
    assert len(api.paid_calls) == 2
    assert_all_images_correct(project_env.root, 2)
    rescue = project_env.root / "response-store-rescue"
    rescued = sorted(rescue.rglob("*.json"))
    assert len(rescued) == 2 and not list(store.rglob("??/*.json"))
    assert os.stat(rescue).st_mode & 0o777 == 0o700
    said = [line for line in done.output.splitlines() if "could not keep a paid answer" in line]
    assert len({line for line in said}) == 2 and all("response-store-rescue/" in line for line in said), said

    _served_from_rescue_then_moved(project_env, api, rescue, store)


@pytest.mark.parametrize("refusing", [1, 2], ids=["project-rescue-refuses", "temp-rescue-refuses-too"])
def test_rescue_folders_that_cannot_be_written_fall_back_to_the_next(project_env, api, tmp_path, refusing):
    """The store and the first ``refusing`` rescue folders refuse writes (chattr +i, real processes):
    each paid answer lands in the next rescue folder (the system temp folder's, then the one under
    ~/.cache), the images are made, and the next run serves them from there with no paid call and
    moves them into the store."""

    temp, home = tmp_path / "tmp", tmp_path / "home"
    temp.mkdir()
    home.mkdir()
    project_env.env.update(TMPDIR=str(temp), HOME=str(home))
    roots = [
        project_env.root / "response-store-rescue",
        temp / f"image-batch-rescue-{os.getuid()}",
        home / ".cache/image-batch/rescue",
    ]
    write_sheet(project_env, 2)
    requests = _requests(project_env, 2)
    store = project_env.root / "response-store"
    immutable = _store_shards(store, requests)
    for root in roots[:refusing]:
        root.mkdir(mode=0o700, parents=True)  # ours and private: trusted, but it cannot be written
        immutable.append(root)
    if subprocess.run(["chattr", "+i", *map(str, immutable)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i does not work on this filesystem")
    try:
        done = project_env.snakemake("--config", "input_csv=input.csv")
    finally:
        subprocess.run(["chattr", "-i", *map(str, immutable)], check=True)
    assert len(api.paid_calls) == 2, done.output[-3000:]
    assert_all_images_correct(project_env.root, 2)
    used = roots[refusing]
    assert [len(list(root.rglob("*.json"))) for root in roots] == [2 if root == used else 0 for root in roots]
    assert os.stat(used).st_mode & 0o777 == 0o700
    said = {line for line in done.output.splitlines() if "could not keep a paid answer" in line}
    assert len(said) == 2 and all(f"{used}/" in line for line in said), said

    _served_from_rescue_then_moved(project_env, api, used, store)


def test_a_second_real_run_while_one_is_alive_is_refused_before_any_job(project_env, api):
    n = 12
    write_sheet(project_env, n)
    api.hold()  # the first run's calls stay in flight: it is surely working while the second starts
    first = start_run(project_env, "--config", "input_csv=input.csv")
    try:
        wait_for(lambda: api.held() >= 1)
        # --verbose: Snakemake's job lines on the console, so "no job ran" can be seen
        second = project_env.snakemake("--verbose", "--config", "input_csv=input.csv", check=False, timeout=120)
        assert first.poll() is None and api.calls == [], "the first run was not working any more"
        assert second.returncode != 0
        assert f"another Image.Batch run is working in this folder (pid {first.pid}," in second.output
        assert "Traceback" not in second.output and "--unlock" not in second.output
        assert "calling openai" not in second.output and "Finished jobid" not in second.output  # no job ran
        dry = project_env.snakemake("--dry-run", "--config", "input_csv=input.csv", check=False)
        assert dry.returncode == 0, dry.output[-2000:]  # a dry run only looks: it is not refused
        api.release()
        assert first.wait(timeout=300) == 0
    finally:
        api.release()
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert_all_images_correct(project_env.root, n)
    prompts = [call["body"]["prompt"] for call in api.paid_calls]
    assert len(prompts) == len(set(prompts)) == n  # each image paid for once: by the first run


def test_calls_keep_to_the_rate_limit_the_api_states(project_env, api):
    """Real `snakemake`, two API slots, the stand-in limiting 4 requests per 2 seconds (stated as 120 a minute in
    its x-ratelimit headers, as the real API states its limits): the jobs space their calls evenly by that header
    (and wait when it says none remain), so no call meets a 429 beyond the first ones, sent before any header was
    seen. Counts and order only, with generous bounds: a loaded machine makes calls later, never earlier."""
    n, limit, window = 24, 4, 2.0
    write_sheet(project_env, n)
    api.set_rate_limit(limit, window=window, per_minute_headers=True)
    result = project_env.snakemake("--config", "input_csv=input.csv", "--resources", "api=2")
    assert_all_images_correct(project_env.root, n)
    assert len(api.good_paid_calls) == n and "Traceback" not in result.output
    limited = [call for call in api.calls if call["limited"]]
    assert len(limited) <= 2, f"{len(limited)} answers of 429 for {n} rows at {limit} per {window:g} s"
    # evenly spaced: one call every 60 / (120 x 0.97) = 0.52 s; in bursts, 3 gaps of 4 would be near 0
    times = sorted(call["time"] for call in api.calls)
    bunched = [later - earlier for earlier, later in zip(times, times[1:], strict=False) if later - earlier < 0.25]
    assert len(bunched) <= 5, f"{len(bunched)} of {len(times) - 1} gaps between calls under 0.25 s: not paced"


def test_a_429_holds_back_every_job_until_its_retry_after(project_env, api):
    """Real `snakemake`, two API slots busy: one call meets a 429 asking to wait 2 s; the other job, which met
    none, sends nothing more until then either (one call of its own may already have been on its way)."""
    n = 24  # 12 rounds of 0.2 s: the run outlasts the retry-after unless the other job is held back
    write_sheet(project_env, n)
    api.latency = 0.2
    api.fail_times("calm lake", Behavior("rate_limit", retry_after=2.0), 1)  # the first call
    result = project_env.snakemake("--config", "input_csv=input.csv", "--resources", "api=2")
    assert_all_images_correct(project_env.root, n)
    assert len(api.good_paid_calls) == n and "Traceback" not in result.output
    [refusal] = [call for call in api.calls if call["status"] == 429]
    start, until = refusal["answered"], refusal["answered"] + 2.0
    # a call already on its way when the 429 was answered may arrive just after it; none later, until the
    # retry-after has passed (50 ms allowed for the clocks)
    during = [call["body"]["prompt"] for call in api.calls if start + 0.25 < call["time"] < until - 0.05]
    assert during == [], f"{len(during)} call(s) went out within the 429's retry-after of 2 s: {during}"
    assert len([call for call in api.calls if call["time"] >= until - 0.05]) >= n // 2, "nothing was held back"


def test_two_rows_with_the_same_request_pay_once(project_env, api):
    """A real sheet with two rows (two image ids) of the same description: one request, one paid call, though
    their jobs run at the same time; both images are made from that answer."""
    rows = ["image_id,context,description", "twin-a,Nature,a heron in the reeds", "twin-b,Nature,a heron in the reeds"]
    rows += [f"img{i:03d},Nature,prompt number {i} of a calm lake" for i in range(4)]
    (project_env.root / "input.csv").write_text("\r\n".join(rows) + "\r\n", newline="")
    api.latency = 0.5  # both twins' jobs are in flight together
    result = project_env.snakemake("--config", "input_csv=input.csv")
    assert "Traceback" not in result.output
    heron = [call for call in api.calls if "heron" in call["body"]["prompt"]]
    assert len(heron) == 1 and heron[0]["paid"], f"{len(heron)} calls for one request"
    assert len(api.paid_calls) == 5  # the twins' one, and one for each other row
    images = project_env.root / "results/images/nature"
    assert (images / "twin-a.png").read_bytes() == (images / "twin-b.png").read_bytes()
    with Image.open(images / "twin-a.png") as image:
        assert image.convert("RGB").getpixel((0, 0)) == expected_color(heron[0]["body"]["prompt"])
