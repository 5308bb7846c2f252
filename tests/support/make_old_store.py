"""Makes tests/data/old-store/ once, with the previous version itself (commit a54f1d4, from
tests/data/previous-version-a54f1d4.tar.gz): its shipped config, the sheet tests/data/old-store/input.csv,
a live run against the stand-in API.  The store it leaves (format 1: keys without the endpoint, no
STORE.json) is kept as it was written, byte for byte, so the test that reads it does not share code
with the version that wrote it.  Run from the repository root:

    python -m tests.support.make_old_store
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support import previous_version
from tests.support.fake_openai import FakeOpenAI
from tests.support.moto_s3 import scrubbed_environ
from tests.support.openai_models import TODAY

DATA = Path(__file__).resolve().parents[1] / "data" / "old-store"
KEY = "sk-make-old-store-0000000000"


def main():
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAI(api_key=KEY) as api:
        root = previous_version.extract(Path(tmp) / "project")
        shutil.copy2(DATA / "input.csv", root / "input.csv")
        env = {**scrubbed_environ(), "AI_API_KEY": KEY, "OPENAI_BASE_URL": api.base_url}
        env["IMAGE_BATCH_TODAY"] = TODAY.isoformat()
        command = [sys.executable, "-m", "snakemake", "--cores", "4", "--config", "input_csv=input.csv"]
        subprocess.run(command, cwd=root, env=env, check=True)
        shutil.rmtree(DATA / "response-store", ignore_errors=True)
        shutil.copytree(root / "response-store", DATA / "response-store")
        print(f"{len(api.paid_calls)} paid calls; store in {DATA / 'response-store'}")


if __name__ == "__main__":
    main()
