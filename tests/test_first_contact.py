"""Issue 16's second walk: mistakes a newcomer makes that the first walk did not list, each met with
one line naming the mistake and its fix (real processes: snakemake, main.py, real signals)."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.moto_s3 import MotoS3
from tests.test_signals import PATIENCE, calls_in_flight, interrupted_run, lines_with, main_py

TWO = "image_id,context,description\na1,Nature,a fox\na2,Nature,an owl\n"


def test_a_ctrl_c_after_every_image_is_made_says_what_is_left_is_the_sync(keyed, api):
    """Both images were in flight at the Ctrl-C and were finished: nothing is left to make, only the
    sync. The summary said "run the same command again to make the rest" beside "2 made"."""
    (keyed.root / "input.csv").write_text(TWO)
    run = interrupted_run(keyed, api, main_py, lambda run: run.ctrl_c(), ready=calls_in_flight(api, 2))
    output = run.output
    assert run.proc.returncode == 130, output[-4000:]
    assert "Traceback" not in output
    [images] = lines_with(output, "  images: ")
    assert "2 to make, 2 made (2 paid for" in images and "not made" not in images, images
    [stopped] = lines_with(output, "  stopped by Ctrl-C: ")
    assert stopped.endswith("run the same command again to sync them"), stopped
    assert "make the rest" not in output


def test_snakemake_cores_0_is_refused_before_any_image(keyed, api):
    """--cores 0 (a typo, or a guess at "all") made Snakemake's scheduler select no job, for ever: the
    progress line said "0 of 2 image(s)" until the run was killed."""
    (keyed.root / "input.csv").write_text(TWO)
    done = keyed.snakemake("--cores", "0", "--config", "input_csv=input.csv", check=False, timeout=240)
    assert done.returncode == 2, done.output[-3000:]
    assert "Traceback" not in done.output
    [line] = lines_with(done.output, "--cores 0")
    assert "give --cores N (1 or more) or all" in line and "nothing was made" in line, line
    assert not api.calls
    assert not list((keyed.root / "results/images").glob("*/*.png"))
    # a dry run with --cores 0 runs no job anyway: it is not refused
    assert keyed.snakemake("--cores", "0", "--dry-run", "--config", "input_csv=input.csv").returncode == 0


def test_main_py_cores_typos_are_one_line_before_the_sheet_is_read(keyed, api):
    (keyed.root / "input.csv").write_text(TWO)
    for typo in ("eight", "0", "-2"):
        done = keyed.main("input.csv", "--cores", typo, timeout=240)
        assert done.returncode == 2, done.output[-3000:]
        assert f"argument --cores: {typo!r} is not a number of cores" in done.output, done.output
        assert "row(s) read" not in done.output and "Traceback" not in done.output
    assert not api.calls
    done = keyed.main("input.csv", "--cores", "all", "--dry-run")
    assert done.returncode == 0, done.output[-3000:]


def test_an_unknown_provider_gets_a_guess_and_where_it_was_set(runner):
    """provider=opnai said only "no image provider named 'opnai'; installed: ...": model names and keys
    get a near-miss guess, and every setting's message says where it was set."""
    given = runner.main("config/example.csv", "--dry-run", "--set", "provider=opnai")
    assert given.returncode == 2 and "Traceback" not in given.output, given.output[-3000:]
    [line] = lines_with(given.output, "no image provider named 'opnai'")
    assert "(provider given on the command line); did you mean 'openai'? installed: gemini, offline, openai" in line
    config = runner.root / "config/config.yaml"
    config.write_text(config.read_text().replace("\nprovider: auto", "\nprovider: gemni", 1))
    written = runner.snakemake("--dry-run", check=False)
    assert written.returncode == 2 and "Traceback" not in written.output, written.output[-3000:]
    assert "no image provider named 'gemni' (provider in config/config.yaml); did you mean 'gemini'?" in written.output
    # far from every name: no guess
    far = runner.snakemake("--dry-run", "--config", "provider=zzz", check=False)
    assert "no image provider named 'zzz' (provider given on the command line); installed:" in far.output


def test_provider_openai_without_a_key_says_where_provider_was_set(runner):
    """The line said "provider: openai in config" when --set provider=openai gave it."""
    done = runner.main("config/example.csv", "--estimate", "--set", "provider=openai")
    assert done.returncode == 0, done.output[-3000:]
    assert "(provider: openai given on the command line, but NO API KEY is set)" in done.output


def test_snakemake_run_from_another_folder_says_where_to_run_it(runner, tmp_path):
    """snakemake -s project/Snakefile from another folder ended in Snakemake's WorkflowError naming
    the config path it checked, not the fix."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    command = [sys.executable, "-m", "snakemake", "-s", str(runner.root / "Snakefile"), "--cores", "1", "-n"]
    done = subprocess.run(command, cwd=elsewhere, env=runner.env, capture_output=True, text=True, timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-3000:]
    assert "WorkflowError" not in output and "Traceback" not in output
    [line] = lines_with(output, f"Image.Batch: no config/config.yaml in {elsewhere}")
    assert f"(cd {runner.root})" in line and f"--directory {runner.root}" in line, line
    assert not list(elsewhere.iterdir())  # nothing written there
    # the fix it gives works
    fixed = subprocess.run([*command, "--directory", str(runner.root)], cwd=elsewhere, env=runner.env, timeout=240)
    assert fixed.returncode == 0


def test_a_typo_in_the_sheet_path_gets_a_guess(runner):
    """config/exmaple.csv said only "cannot read the file: No such file or directory"."""
    done = runner.main("config/exmaple.csv", "--dry-run")
    assert done.returncode == 2 and "Traceback" not in done.output, done.output[-3000:]
    [line] = lines_with(done.output, "cannot read the file")
    assert "No such file or directory; did you mean config/example.csv" in line, line
    done = runner.snakemake("--dry-run", "--config", "input_csv=nowhere/example.csv", check=False)
    assert done.returncode == 2 and "Traceback" not in done.output, done.output[-3000:]
    assert "No such file or directory (there is no folder nowhere)" in done.output


@pytest.fixture
def s3_with_iam(monkeypatch):
    """moto_server checking credentials and IAM policies (its INITIAL_NO_AUTH_ACTION_COUNT: the first
    five calls, which make the bucket and a read-only user, are not checked). Returns the server and
    the read-only user's key."""
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "5")
    server = MotoS3().start()
    try:
        import boto3

        given = dict(endpoint_url=server.endpoint_url, region_name="us-east-1", **ADMIN)
        boto3.client("s3", **given).create_bucket(Bucket="shop")
        iam = boto3.client("iam", **given)
        iam.create_user(UserName="reader")
        # moto asks for s3:HeadBucket where AWS asks for s3:ListBucket: both are granted
        actions = ["s3:ListBucket", "s3:HeadBucket", "s3:GetObject"]
        read_only = {"Effect": "Allow", "Action": actions, "Resource": "*"}
        document = json.dumps({"Version": "2012-10-17", "Statement": [read_only]})
        policy = iam.create_policy(PolicyName="read-only", PolicyDocument=document)["Policy"]["Arn"]
        iam.attach_user_policy(UserName="reader", PolicyArn=policy)
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        yield server, (key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        server.stop()


ADMIN = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup"}


@pytest.mark.parametrize("who", ["unknown-key", "read-only"])
def test_s3_credentials_refused_or_not_allowed_each_get_their_own_fix(keyed, api, s3_with_iam, who):
    """S3 answers a HEAD without a body: a key it does not know and a key without the write
    permission both said "not allowed to read ... (403): grant s3:ListBucket ...", advice that cannot
    help the first. A server that checks credentials (moto with IAM), not one that takes any key."""
    server, (key_id, secret) = s3_with_iam
    if who == "unknown-key":
        key_id, secret = "AKIAUNKNOWNUNKNOWN00", "not-a-secret"
    (keyed.root / "input.csv").write_text(TWO)
    keyed.env.update(
        S3_BUCKET_NAME="shop",
        AWS_ENDPOINT_URL=server.endpoint_url,
        AWS_ACCESS_KEY_ID=key_id,
        AWS_SECRET_ACCESS_KEY=secret,
        AWS_DEFAULT_REGION="us-east-1",
    )
    done = keyed.snakemake("--config", "input_csv=input.csv", check=False)
    assert done.returncode == 2 and "Traceback" not in done.output, done.output[-3000:]
    [line] = lines_with(done.output, "bucket shop")
    assert "nothing was made" in line, line
    if who == "unknown-key":
        assert "the AWS credentials were refused (InvalidAccessKeyId)" in line, line
        assert "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in line and "grant" not in line
    else:
        assert "not allowed to write to bucket shop (AccessDenied): grant" in line, line
    assert not api.calls and not list((keyed.root / "results/images").glob("*/*.png"))


def test_an_estimate_with_no_price_known_does_not_say_0_dollars(runner):
    """A misspelled model (the warning says so) priced its images "about $0.00 live, $0.00 in batch
    mode, plus 6 unpriced": read as free."""
    done = runner.main("config/example.csv", "--estimate", "--model", "gpt-image-2.5-sunbrust")
    assert done.returncode == 0, done.output[-3000:]
    [line] = lines_with(done.output, "Image.Batch: with an API key")
    assert line.endswith("6 to pay for: no price known for any of them (see below)"), line
    assert "$0.00" not in done.output
    assert "6 x gpt-image-2.5-sunbrust medium 1024x1024: unpriced (model" in done.output


def child_started(run):
    """main.py's run (python -m snakemake) has been started: it is in its first second, loading
    Snakemake, before the workflow's own Ctrl-C handler is in place."""
    children = Path(f"/proc/{run.proc.pid}/task/{run.proc.pid}/children")
    deadline = time.monotonic() + PATIENCE
    while not children.read_text().split():
        assert run.proc.poll() is None and time.monotonic() < deadline, run.output[-3000:]
        time.sleep(0.01)


def test_a_ctrl_c_while_main_py_starts_its_run_is_one_line(keyed, api):
    """A Ctrl-C in the run's first second (Snakemake loading, before the workflow's handler) ended in
    a KeyboardInterrupt traceback of the snakemake process under main.py's lines."""
    (keyed.root / "input.csv").write_text(TWO)
    run = main_py(keyed)
    try:
        child_started(run)
        run.ctrl_c()
        assert run.wait() == 130, run.output[-3000:]
    finally:
        run.kill()
    output = run.output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]
    [line] = lines_with(output, "Image.Batch: stopped (Ctrl-C)")
    assert "nothing was paid for" in line
    assert not api.calls and not list((keyed.root / "results/images").glob("*/*.png"))


def test_a_report_is_not_a_line_per_image(runner):
    """snakemake --report said "Adding img001.png (8.82 KB)." for every image: 124 lines for 116
    images. The console keeps the report's start and end; --verbose shows every line again."""
    rows = "".join(f"img{i:03d},Nature,picture {i}\n" for i in range(12))
    (runner.root / "input.csv").write_text("image_id,context,description\n" + rows)
    runner.snakemake("--config", "input_csv=input.csv")
    quiet = runner.snakemake("--report", "report.html")
    assert (runner.root / "report.html").stat().st_size > 0
    assert "Report created." in quiet.output and not lines_with(quiet.output, "Adding img"), quiet.output[-3000:]
    assert len(quiet.output.splitlines()) < 12, quiet.output
    loud = runner.snakemake("--report", "report.html", "--verbose")
    assert len(lines_with(loud.output, "Adding img")) == 12


def test_a_set_without_a_value_names_the_option_used(runner):
    """main.py --set openai.quality (no value) said "--config 'openai.quality': expected KEY=VALUE"."""
    done = runner.main("config/example.csv", "--set", "openai.quality")
    assert done.returncode == 2 and "Traceback" not in done.output, done.output
    assert done.output.strip() == (
        "error: --set or --config 'openai.quality': expected KEY=VALUE (a section's key dotted: openai.model=...)"
    )
