"""The real API of today, end to end through `snakemake`: retired models and settings refused before
any call, the API's own refusals stopping a run after at most one wave of calls, unreadable
retry-after headers, costs at list prices, the endpoint in every request's identity, and stores
written by earlier versions served without paying again."""

import json
import math
import shutil

import pytest
import yaml
from PIL import Image

from tests.conftest import API_KEY, REPO, api_slots, update_config
from tests.support import previous_version
from tests.support.fake_openai import FakeOpenAI

N = 30
# The workflow profile's `api` resource: how many calls can be in flight, i.e. one wave.
WAVE = api_slots()  # one wave of calls
TEXT_INPUT, IMAGE_OUTPUT, TEXT_OUTPUT = 5.00, 30.00, 10.00  # USD per million tokens, gpt-image-2.x list prices


def sheet(n=N):
    lines = ["image_id,context,description"]
    lines += [f"img{i:02d},{'Lakes' if i % 2 else 'Hills'},view number {i} of a quiet valley" for i in range(n)]
    return "\r\n".join(lines) + "\r\n"


@pytest.fixture
def user(keyed):
    (keyed.root / "input.csv").write_text(sheet(), newline="")
    return keyed


def run(user, *args, check=True):
    return user.snakemake(*args, "--config", "input_csv=input.csv", check=check)


def pngs(root):
    return sorted((root / "results/images").rglob("*.png"))


# -- refused before any call ---------------------------------------------------------------------


def test_a_retired_model_is_refused_before_any_call_naming_the_fix(user, api):
    update_config(user.root, openai={"model": "gpt-image-1"})
    for args in (("-n",), ()):
        result = run(user, *args, check=False)
        assert result.returncode != 0
        assert "openai.model 'gpt-image-1' was shut down on 2026-10-23" in result.output
        assert "gpt-image-2.6-sunburst" in result.output and "Traceback" not in result.output
    assert api.calls == [] and pngs(user.root) == []


def test_a_setting_the_model_does_not_take_is_refused_before_any_call(user, api):
    update_config(user.root, openai={"model": "gpt-image-2", "quality": "xhigh"})
    result = run(user, "-n", check=False)
    assert result.returncode != 0 and "openai.quality 'xhigh' is not taken by 'gpt-image-2'" in result.output
    assert api.calls == []


def test_a_model_shutting_down_soon_is_warned_about_and_used(user, api):
    update_config(user.root, openai={"model": "gpt-image-1.5"})
    (user.root / "input.csv").write_text(sheet(2), newline="")
    result = run(user)
    warnings = [line for line in result.output.splitlines() if "shuts down on 2026-12-01" in line]
    assert len(warnings) == 1 and len(api.paid_calls) == 2


def test_without_the_test_clock_a_run_judges_models_on_the_real_date(user, api):
    """Tests set the workflow's clock (IMAGE_BATCH_TODAY); a user's run does not, and judges a model on
    the real date: gpt-image-1.5 (shutdown 2026-12-01) is refused from that day, warned about before.
    The expectation is worked out from the real date, so the test holds on any day."""
    import datetime

    del user.env["IMAGE_BATCH_TODAY"]
    update_config(user.root, openai={"model": "gpt-image-1.5"})
    real = datetime.datetime.now(datetime.UTC).date()
    result = run(user, "-n", check=False)
    if real >= datetime.date(2026, 12, 1):
        assert result.returncode != 0 and "'gpt-image-1.5' was shut down on 2026-12-01" in result.output
    else:
        assert result.returncode == 0 and "shuts down on 2026-12-01" in result.output, result.output[-3000:]
    # and the test clock, when set, is what it judges on instead
    user.env["IMAGE_BATCH_TODAY"] = "2026-11-27" if real >= datetime.date(2026, 12, 1) else "2026-12-02"
    other = run(user, "-n", check=False)
    assert (other.returncode == 0) == (result.returncode != 0), other.output[-3000:]
    assert "Traceback" not in result.output + other.output and api.calls == []


# -- refused by the API: the run stops after at most one wave ------------------------------------


def test_a_model_the_api_refuses_stops_the_run_after_one_wave(user, api, tmp_path):
    # a catalogue that does not know the model yet: only the API can refuse it (400 invalid_value)
    catalogue = yaml.safe_load((REPO / "config/models.yaml").read_text())
    del catalogue["models"]["gpt-image-1"]
    (user.root / "config/mine.yaml").write_text(yaml.safe_dump(catalogue))
    update_config(user.root, model_catalog="config/mine.yaml", openai={"model": "gpt-image-1"})
    result = run(user, check=False)
    assert result.returncode != 0
    assert 1 <= len(api.calls) <= WAVE, f"{len(api.calls)} calls for a model the API refuses"
    assert "STOPPED calling the API" in result.output and "gpt-image-1" in result.output
    assert "invalid_value" in result.output and pngs(user.root) == []


def test_an_exhausted_billing_limit_stops_the_run_after_one_wave(user, api):
    api.default_behavior = "billing"  # 400 billing_hard_limit_reached, as the API sends it
    result = run(user, check=False)
    assert result.returncode != 0
    assert 1 <= len(api.calls) <= WAVE, f"{len(api.calls)} calls after the billing limit was reached"
    assert "STOPPED calling the API" in result.output and "billing" in result.output
    assert all(call["status"] == 400 for call in api.calls)


def test_the_same_refusal_on_several_rows_stops_the_run(user, api):
    api.set_behavior("view number", "invalid_request")  # a 400 the classification sees as per-row
    update_config(user.root, retry={"same_error_stop": 3})
    result = run(user, "--resources", "api=1", check=False)
    assert result.returncode != 0 and len(api.calls) <= 3 + 1
    assert "rows in a row were refused with" in result.output


# -- transient faults ----------------------------------------------------------------------------


def test_unreadable_retry_after_still_delivers_every_image(user, api):
    api.set_fault_mix(0.3, kinds=["bad_retry_after"], seed=7)
    result = run(user)
    assert len(pngs(user.root)) == N and "Traceback" not in result.output
    faulted = [c for c in api.calls if c["behavior"] == "bad_retry_after"]
    assert faulted, "the stand-in sent no unreadable retry-after"
    assert len(api.good_paid_calls) == N


# -- costs at list prices ------------------------------------------------------------------------


def test_the_cost_in_the_marker_matches_the_list_prices_to_the_cent(user, api):
    update_config(user.root, openai={"model": "gpt-image-2", "quality": "high", "size": "1536x1024"})
    run(user)
    marker = json.loads((user.root / "results/_SUCCESS.json").read_text())["cost"]
    sidecars = [json.loads(p.with_suffix(".json").read_text()) for p in pngs(user.root)]
    expected = 0.0
    for sidecar in sidecars:
        usage = sidecar["usage"]
        details = usage.get("output_tokens_details") or {"image_tokens": usage["output_tokens"], "text_tokens": 0}
        image_out, text_out = details["image_tokens"], details.get("text_tokens", 0)
        expected += (usage["input_tokens"] * TEXT_INPUT + image_out * IMAGE_OUTPUT + text_out * TEXT_OUTPUT) / 1e6
        assert sidecar["cost"]["price"] == "live" and sidecar["cost"]["usd"] > 0
    assert image_out == math.ceil(96 * ((2 * 96 * 1024 + 1536) // (2 * 1536)) * (2_000_000 + 1536 * 1024) / 4e6)
    assert round(marker["total"], 2) == round(expected, 2) and marker["total"] == pytest.approx(expected)
    assert marker["images"] == N and marker["unpriced"] == 0
    assert sum(c["cost"] for c in marker["per_context"].values()) == pytest.approx(marker["total"])
    log = (user.root / "results/logs/summary.log").read_text()
    assert "estimate before the run" in log


def test_images_come_at_the_size_asked_for_up_to_the_largest(user, api):
    """The stand-in answers images of the size asked for; the workflow keeps them as they came (no resizing) and
    makes the contact sheets from them, at the largest size a 2.x model takes."""
    update_config(user.root, openai={"model": "gpt-image-2.5-sunburst", "size": "3840x2160"})
    (user.root / "input.csv").write_text(sheet(4), newline="")
    run(user)
    made = pngs(user.root)
    assert len(made) == 4
    for png in made:
        with Image.open(png) as image:
            assert image.format == "PNG" and image.size == (3840, 2160)
        assert json.loads(png.with_suffix(".json").read_text())["usage"]["output_tokens"] > 0
    sheets = sorted(p.stem for p in (user.root / "results/contact-sheets").glob("*/*.jpg"))
    assert sheets == ["hills", "lakes"]


# -- the endpoint is part of a request's identity --------------------------------------------------


def test_an_answer_from_one_endpoint_is_never_served_for_another(user, api):
    (user.root / "input.csv").write_text(sheet(4), newline="")
    run(user)
    assert len(api.paid_calls) == 4
    with FakeOpenAI(api_key=API_KEY) as other:
        user.env["OPENAI_BASE_URL"] = other.base_url
        dry = run(user, "-n")
        assert "4 of 4 image(s) to make, 0 of them served from the response store" in dry.output
        run(user)
        assert len(other.paid_calls) == 4
        sidecar = json.loads((user.root / "results/images/hills/img00.json").read_text())
        assert sidecar["endpoint"] == other.base_url
    user.env["OPENAI_BASE_URL"] = api.base_url
    api.reset()
    shutil.rmtree(user.root / "results")
    run(user)
    assert api.calls == []  # back at the first endpoint: its own answers


# -- stores of earlier versions --------------------------------------------------------------------


OLD_STORE = REPO / "tests/data/old-store"  # written by the previous version itself: tests/support/make_old_store.py


def test_answers_stored_by_an_earlier_version_are_served_without_paying(user, api):
    """A store in format 1 (before 2026-11-27: keys without the endpoint, no STORE.json, no usage
    journal), its bytes as that version wrote them, is served by this version without a call."""
    shutil.copytree(OLD_STORE / "response-store", user.root / "response-store")
    shutil.copy2(OLD_STORE / "input.csv", user.root / "input.csv")
    assert not (user.root / "response-store/STORE.json").exists()
    dry = run(user, "-n")
    assert "6 of 6 image(s) to make, 6 of them served from the response store" in dry.output
    run(user)
    assert api.calls == [] and len(pngs(user.root)) == 6
    recorded = json.loads((user.root / "response-store/STORE.json").read_text())
    assert recorded["unkeyed_endpoint"] == api.base_url
    api.reset()
    run(user, "--forcerun", "generate_image")  # a rerun in place remakes every image from the store
    assert api.calls == []
    shutil.rmtree(user.root / "results")
    run(user)  # a rebuild
    assert api.calls == [] and len(pngs(user.root)) == 6


def test_a_dry_run_at_another_endpoint_leaves_an_earlier_versions_store_as_it_was(user, api):
    """A dry run (at another OPENAI_BASE_URL) on a store an earlier version wrote changes not one
    byte of it: the endpoint its answers were bought at is recorded (STORE.json) by the first real
    run only, which then serves all of them without a call."""
    shutil.copytree(OLD_STORE / "response-store", user.root / "response-store")
    shutil.copy2(OLD_STORE / "input.csv", user.root / "input.csv")

    def store_bytes():
        root = user.root / "response-store"
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    before = store_bytes()
    with FakeOpenAI(api_key=API_KEY) as elsewhere:
        user.env["OPENAI_BASE_URL"] = elsewhere.base_url
        dry = run(user, "-n")
    assert "6 of 6 image(s) to make" in dry.output and elsewhere.calls == []
    assert store_bytes() == before
    user.env["OPENAI_BASE_URL"] = api.base_url
    run(user)
    assert api.calls == [] and len(pngs(user.root)) == 6
    assert json.loads((user.root / "response-store/STORE.json").read_text())["unkeyed_endpoint"] == api.base_url


def test_a_batch_made_by_the_previous_version_costs_nothing_after_the_upgrade(user, api, tmp_path):
    old = previous_version.extract(tmp_path / "previous")  # commit a54f1d4, from tests/data
    project = user.root
    # the previous version's code in the same folder, with the same config file
    for name in ("workflow", "Snakefile", "main.py"):
        target = project / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        src = old / name
        shutil.copytree(src, target, symlinks=True) if src.is_dir() else shutil.copy2(src, target)
    shutil.copy2(old / "config/config.yaml", project / "config/config.yaml")
    update_config(project, retry={"max_attempts": 8, "max_seconds": 60, "initial_wait": 0.01, "max_wait": 0.05})
    update_config(project, batch={"poll_seconds": 0.05})
    (project / "input.csv").write_text(sheet(6), newline="")
    user.snakemake("--config", "input_csv=input.csv", "mode=batch")
    assert api.batch_lines_answered == 6 and len(pngs(project)) == 6
    # the upgrade: this version's code; the user's config file stays as it was
    for name in ("workflow", "Snakefile", "main.py"):
        target = project / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        src = REPO / name
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(src, target, symlinks=True, ignore=ignore) if src.is_dir() else shutil.copy2(src, target)
    api.reset()
    rerun = user.main("input.csv")
    assert rerun.returncode == 0, rerun.output[-3000:]
    assert api.calls == [] and api.batch_requests == []
    shutil.rmtree(project / "results")
    rebuild = user.main("input.csv")
    assert rebuild.returncode == 0, rebuild.output[-3000:]
    assert api.calls == [] and api.batch_requests == [] and len(pngs(project)) == 6
    marker = json.loads((project / "results/_SUCCESS.json").read_text())["cost"]
    assert marker["batch_images"] == 6  # still at the batch price
