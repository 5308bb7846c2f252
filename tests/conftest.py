import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.moto_s3 import MotoS3, scrubbed_environ

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def fixed_today(monkeypatch):
    """Every test runs on the stand-in's date (tests.support.openai_models.TODAY), in this process
    and in every process it starts: the catalogue's checks read IMAGE_BATCH_TODAY."""
    from tests.support.openai_models import TODAY

    monkeypatch.setenv("IMAGE_BATCH_TODAY", TODAY.isoformat())
    return TODAY


API_KEY = "sk-test-SECRET-0123456789abcdef"


def settings_for(**changes):
    """Typed settings as the workflow reads them: the schema's defaults, ``input_csv`` set, and
    ``changes`` (top-level keys; dicts are merged into the section)."""
    from image_batch.common.settings import load_settings

    config = {"input_csv": "sheet.csv"}
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return load_settings(config)


def set_env(monkeypatch, env):
    """Set every variable of ``env`` for this test (undone after it)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def use_stand_ins(monkeypatch, tmp_path, s3, api, bucket="answers"):
    """In-process code under test talks to the stand-in API and moto's S3 (with ``bucket``
    created), and runs in ``tmp_path``."""
    set_env(monkeypatch, {**s3.env(), "AI_API_KEY": API_KEY, "OPENAI_BASE_URL": api.base_url})
    monkeypatch.chdir(tmp_path)
    s3.client().create_bucket(Bucket=bucket)


def copy_workflow(dest):
    """A user's checkout of the workflow in ``dest`` (code, config, profile link; no results)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("workflow", "config"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore, symlinks=True)
    for name in ("Snakefile", "main.py"):
        shutil.copy2(REPO / name, dest / name)
    os.symlink("workflow/profiles", dest / "profiles")
    return dest


FAST_RETRY = {"max_attempts": 8, "max_seconds": 60, "initial_wait": 0.01, "max_wait": 0.05, "max_unusable": 3}


def update_config(root, **changes):
    """Edit the project's config/config.yaml as a user would (top-level keys; dicts are merged)."""
    path = root / "config" / "config.yaml"
    config = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return config


class Runner:
    """Runs ``snakemake`` / ``main.py`` as a user would, in a project folder, with a clean env."""

    def __init__(self, root, env):
        self.root = root
        self.env = env

    def _run(self, command, timeout):
        result = subprocess.run(command, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout)
        result.output = result.stdout + result.stderr
        return result

    def snakemake(self, *args, check=True, timeout=300):
        result = self._run([sys.executable, "-m", "snakemake", "--cores", "4", *args], timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.output[-6000:]}")
        return result

    def main(self, *args, timeout=300):
        return self._run([sys.executable, "main.py", *args], timeout)


@pytest.fixture
def project(tmp_path):
    root = copy_workflow(tmp_path / "project")
    update_config(root, retry=FAST_RETRY)  # the stand-in's faults need no real backoff
    return root


@pytest.fixture
def runner(project):
    return Runner(project, scrubbed_environ())


def api_slots():
    """The workflow profile's `api` resource: how many requests can be in flight at once (a wave)."""
    profile = yaml.safe_load((REPO / "workflow/profiles/default/config.yaml").read_text())
    return next(int(r.split("=")[1]) for r in profile["resources"] if r.startswith("api="))


@pytest.fixture
def api():
    """The stand-in OpenAI API on loopback, answering as the real one does today."""
    from tests.support.fake_openai import FakeOpenAI

    with FakeOpenAI(api_key=API_KEY) as server:
        yield server


@pytest.fixture
def keyed(runner, api):
    """The project of ``runner``, with a key for the stand-in ``api``."""
    runner.env.update(AI_API_KEY=API_KEY, OPENAI_BASE_URL=api.base_url)
    return runner


@pytest.fixture(scope="session")
def moto_s3():
    server = MotoS3().start()
    yield server
    server.stop()


@pytest.fixture
def s3(moto_s3):
    moto_s3.reset()
    return moto_s3
