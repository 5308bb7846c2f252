import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.moto_s3 import MotoS3, scrubbed_environ

REPO = Path(__file__).resolve().parents[1]
API_KEY = "sk-test-SECRET-0123456789abcdef"


def copy_workflow(dest):
    """A user's checkout of the workflow in ``dest`` (code, config, profile link; no results)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("workflow", "config"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore, symlinks=True)
    for name in ("Snakefile", "main.py"):
        shutil.copy2(REPO / name, dest / name)
    os.symlink("workflow/profiles", dest / "profiles")
    return dest


class Runner:
    """Runs ``snakemake`` / ``main.py`` as a user would, in a project folder, with a clean env."""

    def __init__(self, root, env):
        self.root = root
        self.env = env

    def snakemake(self, *args, check=True, timeout=300):
        result = subprocess.run(
            [sys.executable, "-m", "snakemake", "--cores", "4", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        result.output = result.stdout + result.stderr
        if check and result.returncode != 0:
            raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.output[-6000:]}")
        return result

    def main(self, *args, timeout=300):
        result = subprocess.run(
            [sys.executable, "main.py", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        result.output = result.stdout + result.stderr
        return result


@pytest.fixture
def project(tmp_path):
    return copy_workflow(tmp_path / "project")


@pytest.fixture
def runner(project):
    return Runner(project, scrubbed_environ())


@pytest.fixture(scope="session")
def moto_s3():
    server = MotoS3().start()
    yield server
    server.stop()


@pytest.fixture
def s3(moto_s3):
    moto_s3.reset()
    return moto_s3
