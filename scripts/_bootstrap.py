"""Make ``workflow/image_batch`` importable from the scripts in this folder."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))


def add_config_argument(parser):
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"), help="the workflow's config file")


def load_config(path, **changes):
    """The typed settings of the config file (with ``changes``), .env loaded into the environment
    first. Raises UserError for a config that is not valid."""
    from image_batch.common.settings import load_dotenv_file, load_settings, read_config_file

    load_dotenv_file(".env")
    return load_settings({**read_config_file(path), **changes})


def fail(error):
    """Print a user error the way the workflow does (no traceback) and return the exit code."""
    print(f"error: {error}", file=sys.stderr)
    return 2
