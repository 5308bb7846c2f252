"""Issue 15 and 20: every problem a user can meet at the start ends in one clear line (what is wrong,
and the fix), a non-zero exit and no traceback, through `snakemake` and `python main.py`, before
any paid call; every field sent to the API is checked first; `.env` is read as documented.
Each case runs real processes against the stand-in API and moto's S3."""

import errno
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import API_KEY, update_config

SHEET = "image_id,context,description\r\nfox,Nature,a red fox in snow\r\nowl,Nature,an owl at dusk\r\n"


@pytest.fixture
def user(keyed):
    """A project with a sheet of its own (mine.csv) and a key for the stand-in."""
    (keyed.root / "mine.csv").write_text(SHEET, newline="")
    return keyed


def refused(result, *expected):
    """``result`` failed with one clear line holding every ``expected`` text, and no traceback."""
    out = result.output
    assert result.returncode != 0, out[-3000:]
    assert "Traceback" not in out and 'File "' not in out, out[-3000:]
    lines = [line for line in out.splitlines() if all(text in line for text in expected)]
    assert lines, f"no line with {expected} in:\n{out[-3000:]}"
    return lines[0]


def both(user, *config):
    """The same invocation through snakemake (a real run) and through main.py."""
    return [
        user.snakemake("--config", "input_csv=mine.csv", *config, check=False),
        user.main("mine.csv", *(["--", "--config", *config] if config else [])),
    ]


# -- issue 15 #11: settings that reach the API are checked before any call -------------------------


@pytest.mark.parametrize(
    "given, expected",
    [
        ("openai={moderation: strict}", ("config openai.moderation: 'strict'", "use one of: low, auto")),
        ("openai={output_compression: 150}", ("config openai.output_compression: 150", "0 to 100")),
        (
            "openai={output_compression: 50}",
            ("config openai.output_compression", "only with output_format jpeg or webp", "not png"),
        ),
        ("batch={completion_window: 48h}", ("config batch.completion_window: '48h'", "use one of: 24h")),
        ("openai={qualty: high}", ("config openai.qualty: unknown key", "did you mean 'quality'?")),
        ("modle=gpt-image-2", ("config modle: unknown key", "did you mean 'mode' or 'openai.model'?")),
        # what a model takes is the catalogue's: its lines say where the setting was made too
        ("openai={quality: ultra}", ("openai.quality 'ultra' is not taken by", "change openai.quality given")),
    ],
)
def test_a_setting_the_api_would_refuse_is_refused_before_any_call(user, api, given, expected):
    for result in both(user, given, "mode=batch" if "batch" in given else "mode=live"):
        refused(result, *expected, "given on the command line")
    assert api.calls == [] and api.batch_requests == []


def test_a_bad_setting_in_the_config_file_names_the_file(user, api):
    update_config(user.root, openai={"moderation": "strict"})
    for result in both(user):
        refused(result, "config openai.moderation: 'strict'", "(in config/config.yaml)")
    assert api.calls == []


def test_the_checked_fields_reach_the_api_as_set(user, api):
    update_config(user.root, openai={"output_format": "jpeg", "output_compression": 80, "moderation": "low"})
    user.snakemake("--config", "input_csv=mine.csv")
    bodies = [call["body"] for call in api.paid_calls]
    assert len(bodies) == 2
    assert all((b["output_compression"], b["moderation"], b["output_format"]) == (80, "low", "jpeg") for b in bodies)
    assert API_KEY not in str(bodies)


# -- issue 15 #10: files and folders the run cannot use: one line, no traceback, no call -----------

# Root may write anywhere: to meet a folder made by another user as the user meets it, a test
# running as root gives it to another uid and runs the workflow without the capabilities that let
# root ignore permissions (setpriv, util-linux). Anyone else just loses the permission.
NO_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--inh-caps=-all", "--"]


def not_ours(path, mode=None):
    """Make ``path`` (and what is in it) belong to someone else, as a container run as root leaves
    it; returns the prefix that runs a command as a user without power over it."""
    if os.geteuid() != 0:
        for place in [path, *path.rglob("*")]:
            place.chmod(mode if mode is not None else (0o555 if place.is_dir() else 0o444))
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is needed to run without root's permission override")
    for place in [path, *path.rglob("*")]:
        os.chown(place, 65534, 65534)
        if mode is not None:
            place.chmod(mode)
    return NO_OVERRIDE


def run(user, prefix, *command):
    done = subprocess.run([*prefix, *command], cwd=user.root, env=user.env, capture_output=True, text=True, timeout=300)
    done.output = done.stdout + done.stderr
    return done


def both_as(user, prefix, *config):
    return [
        run(user, prefix, sys.executable, "-m", "snakemake", "--cores", "2", "--config", "input_csv=mine.csv", *config),
        run(user, prefix, sys.executable, "main.py", "mine.csv", *(["--", "--config", *config] if config else [])),
    ]


@pytest.mark.parametrize(
    "content, expected",
    [
        ("AI_API_KEY=x\n".encode("utf-16"), ".env is UTF-16 text (as Windows Notepad saves it), not UTF-8"),
        (b"# caf\xe9 au lait\nAI_API_KEY=x\n", ".env is not UTF-8 text (byte 0xe9 on line 1"),
    ],
)
def test_a_dotenv_that_is_not_utf8(user, api, content, expected):
    (user.root / ".env").write_bytes(content)
    for result in both(user):
        refused(result, expected, "save it as UTF-8")
    assert api.calls == []


def test_a_dotenv_that_cannot_be_read(user, api):
    (user.root / ".env").write_text(f"AI_API_KEY={API_KEY}\n")
    prefix = not_ours(user.root / ".env", 0o600)
    for result in both_as(user, prefix):
        refused(result, ".env cannot be read (Permission denied)", "make it readable")
    assert api.calls == []


def test_results_made_by_another_user(user, api):
    (user.root / "results/images/nature").mkdir(parents=True)
    prefix = not_ours(user.root / "results")
    for result in both_as(user, prefix):
        refused(result, "results", "is not writable by the user running the workflow", 'sudo chown -R "$(id -u)')
    assert api.calls == []


def test_a_rerun_after_results_changed_owner(user, api):
    user.snakemake("--config", "input_csv=mine.csv")
    api.reset()
    (user.root / "results/images/nature/fox.png").unlink()  # nothing of the plan changes: no spec is written
    prefix = not_ours(user.root / "results")
    for result in both_as(user, prefix):
        refused(result, "is not writable by the user running the workflow", "(nothing was called)")
    assert api.calls == []


def test_a_file_of_another_user_among_the_images_to_make(user, api):
    user.snakemake("--config", "input_csv=mine.csv")
    api.reset()
    (user.root / "results/images/nature/fox.png").unlink()
    prefix = not_ours(user.root / "results/images/nature/fox.json")  # its folder stays writable
    for result in both_as(user, prefix):
        refused(result, "results/images/nature/fox.json is not writable by the user running the workflow")
    assert api.calls == []


def test_results_is_a_file(user, api):
    (user.root / "results").write_text("not a folder")
    for result in both(user):
        refused(result, "results is a file where a folder is needed", "move the file away")
    assert api.calls == []


def test_a_response_store_that_is_a_file(user, api):
    (user.root / "answers").write_text("not a folder")
    for result in both(user, "response_store=answers"):
        refused(result, "response_store answers is a file, not a folder", "point response_store at a folder")
    assert api.calls == []


def test_a_response_store_made_by_another_user(user, api):
    (user.root / "response-store").mkdir()
    prefix = not_ours(user.root / "response-store")
    dry = run(user, prefix, sys.executable, "-m", "snakemake", "-n", "--config", "input_csv=mine.csv")
    assert dry.returncode == 0, dry.output[-3000:]  # a dry run only reads the store
    for result in both_as(user, prefix):
        refused(result, "the response store response-store: response-store is not writable", "paid answers")
    assert api.calls == []


def test_an_s3_response_store_without_its_bucket(user, api, s3):
    user.env.update(s3.env())
    for result in both(user, "response_store=s3://no-such-bucket/answers"):
        refused(result, "s3://no-such-bucket/answers: the bucket 'no-such-bucket' does not exist", "aws s3 mb")
    assert api.calls == []


def test_an_s3_response_store_without_credentials(user, api, s3, tmp_path):
    s3.client().create_bucket(Bucket="answers")
    # no credentials anywhere in boto3's chain: the environment, ~/.aws, the instance metadata
    nowhere = str(tmp_path / "no-aws-config")
    user.env.update(
        AWS_ENDPOINT_URL=s3.endpoint_url,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=nowhere,
        AWS_SHARED_CREDENTIALS_FILE=nowhere,
        AWS_EC2_METADATA_DISABLED="true",
    )
    for result in both(user, "response_store=s3://answers/store"):
        refused(result, "s3://answers/store: no AWS credentials are set", "AWS_ACCESS_KEY_ID")
    assert api.calls == []


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a tiny file system with no space left (a tmpfs: needs root)."""
    place = tmp_path / "full"
    place.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(place)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root); see test_a_full_disk_names_the_file")
    try:
        with open(place / "filler", "wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        yield place
    finally:
        subprocess.run(["umount", str(place)], check=True)


def test_a_full_disk_when_the_store_is_first_written(user, api, full_disk):
    for result in both(user, f"response_store={full_disk}/store"):
        refused(result, f"no space left on the device of {full_disk}/store/STORE.json", "free some space")
    assert api.calls == []


def test_a_full_disk_names_the_file(tmp_path, monkeypatch):
    """The same without a tmpfs: a write that fails for want of space names its file."""
    from image_batch.common.errors import os_problem
    from image_batch.common.settings import load_settings
    from image_batch.images.store import open_store

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "fsync", no_space)
    store = open_store(load_settings({"input_csv": "s.csv", "response_store": "answers"}))
    with pytest.raises(OSError) as caught:
        store.adopt("http://127.0.0.1:1/v1")
    assert (
        os_problem(caught.value)
        == "no space left on the device of answers/STORE.json: free some space (df -h) and run again"
    )
    assert not list((tmp_path / "answers").iterdir())  # no half-written file left


# -- issue 20: .env is read, real environment variables win, the key is never written --------------


@pytest.fixture
def sheet_only(runner):
    """A project with a sheet and no key in the environment: only .env can give one."""
    (runner.root / "mine.csv").write_text(SHEET, newline="")
    assert "AI_API_KEY" not in runner.env and "OPENAI_BASE_URL" not in runner.env
    return runner


def files_holding(root, secret):
    """Every file under ``root`` (but .env) whose bytes hold ``secret``."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.name != ".env" and secret.encode() in path.read_bytes():
            found.append(path.relative_to(root).as_posix())
    return found


def test_a_dotenv_key_makes_paid_images_and_is_never_written(sheet_only, api):
    (sheet_only.root / ".env").write_text(f"AI_API_KEY={API_KEY}\nOPENAI_BASE_URL={api.base_url}\n")
    done = sheet_only.snakemake("--config", "input_csv=mine.csv")
    assert "provider openai" in done.output and len(api.good_paid_calls) == 2
    assert len(list((sheet_only.root / "results/images/nature").glob("*.png"))) == 2
    assert API_KEY not in done.output
    assert files_holding(sheet_only.root, API_KEY) == []


def test_dotenv_quotes_comments_and_export(sheet_only, api):
    (sheet_only.root / ".env").write_text(
        "# keys for Image.Batch\n"
        f'export AI_API_KEY="{API_KEY}"   # the quotes and this comment are not part of it\n'
        "\n"
        f"OPENAI_BASE_URL='{api.base_url}'\n"
        "S3_BUCKET_NAME=  # none: sync to the local folder\n",
    )
    done = sheet_only.main("mine.csv")
    assert done.returncode == 0, done.output[-3000:]
    assert len(api.good_paid_calls) == 2 and "sync to local folder results/bucket/" in done.output
    assert API_KEY not in done.output and files_holding(sheet_only.root, API_KEY) == []


def test_real_environment_variables_win_over_dotenv(sheet_only, api):
    """.env names a wrong key and another endpoint; the environment's own win, in both commands."""
    from tests.support.fake_openai import FakeOpenAI

    with FakeOpenAI(api_key="sk-from-dotenv-0000") as elsewhere:
        (sheet_only.root / ".env").write_text(f"AI_API_KEY=sk-from-dotenv-0000\nOPENAI_BASE_URL={elsewhere.base_url}\n")
        sheet_only.env.update(AI_API_KEY=API_KEY, OPENAI_BASE_URL=api.base_url)
        sheet_only.snakemake("--config", "input_csv=mine.csv")
        assert len(api.good_paid_calls) == 2 and elsewhere.calls == []
        api.reset()
        (sheet_only.root / "mine.csv").write_text(SHEET + "cup,Kitchen,a blue cup\r\n", newline="")
        done = sheet_only.main("mine.csv")
        assert done.returncode == 0, done.output[-3000:]
        assert len(api.good_paid_calls) == 1 and elsewhere.calls == []
    assert files_holding(sheet_only.root, API_KEY) == []


def test_an_error_answer_that_echoes_the_key_writes_it_nowhere(sheet_only):
    """A gateway in front of the API (a loopback server here) refuses every request with a message
    that quotes the request's Authorization header, key and all: the run fails its rows with that
    message, and neither what it prints nor any file it writes holds the key."""
    import http.server
    import json
    import threading

    class Echo(http.server.BaseHTTPRequestHandler):
        def answer(self):
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            message = f"refused by the gateway (Authorization: {self.headers.get('authorization')})"
            error = {"message": message, "type": "invalid_request_error", "code": "gateway_refused", "param": None}
            body = json.dumps({"error": error}).encode()
            self.send_response(400)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sheet_only.env.update(AI_API_KEY=API_KEY, OPENAI_BASE_URL=f"http://127.0.0.1:{server.server_port}/v1")
        done = sheet_only.snakemake("--config", "input_csv=mine.csv", check=False)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode != 0 and "refused by the gateway" in done.output, done.output[-3000:]
    assert API_KEY not in done.output
    assert files_holding(sheet_only.root, API_KEY) == []
