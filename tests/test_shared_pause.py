"""A 429's retry-after pauses every image job, not only the one that met it (README, "Concurrency and rate
limits": "a 429's retry-after pauses every job"), end to end: a real `snakemake` with four API slots busy, its
calls made in the image worker process or in Snakemake's own job threads (``image_worker: false``).

Judged from the stand-in's own log (``time.monotonic()`` of each request's arrival and of the 429's answer), never
from the test's duration, with margins a loaded machine cannot eat: a slow machine sends calls later, never
earlier, and the only calls the pause cannot hold back are those already on their way when the 429 came, at most
one for each other job in flight."""

import io
import json

import pytest
from PIL import Image

from tests.conftest import update_config
from tests.support.fake_openai import Behavior, expected_color

N = 24  # rows: the run goes on well past the pause
SLOTS = 4  # --resources api=4: four calls in flight at once
REFUSED_AT = 2 * SLOTS  # the 429 answers this call: the jobs are busy, three others have calls in flight
RETRY_AFTER = 2.0  # what the 429 asks to wait (seconds)
LATENCY = 0.3  # each call takes this long at the stand-in: the jobs' calls overlap
CLOCKS = 0.05  # the client's pause is measured from when it read the 429, a little after it was answered


def prompt(i):
    return f"prompt number {i} of a calm lake"


@pytest.mark.parametrize("image_worker", [True, False], ids=["image-worker", "calls-in-job-threads"])
def test_a_429_pauses_every_job_until_its_retry_after_and_nothing_is_paid_twice(keyed, api, image_worker):
    root = keyed.root
    update_config(root, image_worker=image_worker)
    rows = ["image_id,context,description", *(f"img{i:03d},Nature,{prompt(i)}" for i in range(N))]
    (root / "input.csv").write_text("\r\n".join(rows) + "\r\n", newline="")
    api.latency = LATENCY
    api.fail_nth(REFUSED_AT, Behavior("rate_limit", retry_after=RETRY_AFTER))

    result = keyed.snakemake("--config", "input_csv=input.csv", "--resources", f"api={SLOTS}")
    assert "Traceback" not in result.output

    calls = sorted(api.calls, key=lambda call: call["arrived_monotonic"])
    [refusal] = [call for call in calls if call["status"] == 429]
    assert refusal["rule"] == "fail_nth"
    begun = refusal["answered_monotonic"]
    until = begun + RETRY_AFTER - CLOCKS
    during = [call for call in calls if begun < call["arrived_monotonic"] < until]
    after = [call for call in calls if call["arrived_monotonic"] >= until]
    shown = [(round(call["arrived_monotonic"] - begun, 2), call["body"]["prompt"]) for call in during]
    # Only calls already on their way when the 429 came (one for each other job, at most) arrive in the pause;
    # no job sends a call of its own after them, the one that met the 429 included.
    assert len(during) <= SLOTS - 1, f"calls arriving within the 429's {RETRY_AFTER:g} s (s after it): {shown}"
    assert refusal["body"]["prompt"] not in [call["body"]["prompt"] for call in during], shown
    # The run had work left for every job (one call each at least): it went on after the pause, the refused
    # request among it. (Up to 8 + 3 calls before the 429's answer and 3 within the pause leave 11 of 25.)
    assert len(after) >= SLOTS, f"only {len(after)} calls after the pause: the test held nothing back"
    assert refusal["body"]["prompt"] in [call["body"]["prompt"] for call in after]

    # Nothing paid twice, nothing lost: one paid call per row, each image made from its own answer.
    paid = sorted(call["body"]["prompt"] for call in api.paid_calls)
    assert paid == sorted(prompt(i) for i in range(N))
    assert len(calls) == N + 1  # the 24 paid calls and the one 429
    for i in range(N):
        png = root / f"results/images/nature/img{i:03d}.png"
        with Image.open(io.BytesIO(png.read_bytes())) as image:
            assert image.convert("RGB").getpixel((0, 0)) == expected_color(prompt(i))
        json.loads(png.with_suffix(".json").read_text())
