"""Make ``workflow/image_batch`` importable from the scripts in this folder."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))


def add_config_argument(parser):
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"), help="the workflow's config file")


def load_config(path):
    """The config file as a dict, with .env loaded into the environment first."""
    import yaml

    from image_batch.common.settings import load_dotenv_file

    load_dotenv_file(".env")
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def fail(error):
    """Print a user error the way the workflow does (no traceback) and return the exit code."""
    print(f"error: {error}", file=sys.stderr)
    return 2
