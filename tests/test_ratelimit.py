import threading
import time

import pytest

from image_batch.images.ratelimit import Pacer, parse_duration


def test_parse_duration():
    assert parse_duration("1s") == 1
    assert parse_duration("6m0s") == 360
    assert parse_duration("120ms") == 0.12
    assert parse_duration("1h2m3.5s") == 3723.5
    assert parse_duration("soon") is None and parse_duration(None) is None


def test_pace_follows_the_smaller_of_config_and_headers():
    pacer = Pacer(per_minute=600)
    assert round(pacer.per_minute) == round(600 * 0.97)
    pacer.observe({"x-ratelimit-limit-requests": "120"})
    assert round(pacer.per_minute) == round(120 * 0.97)
    assert Pacer().per_minute is None


def test_calls_are_spaced_evenly():
    pacer = Pacer(per_minute=1200)  # 20/s -> ~51.5 ms apart with the margin
    start = time.monotonic()
    for _ in range(6):
        pacer.wait()
    assert time.monotonic() - start >= 5 * 60 / (1200 * 0.97) - 0.01


def test_exhausted_budget_and_retry_after_pause_everyone():
    pacer = Pacer()
    pacer.observe({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "200ms"})
    start = time.monotonic()
    pacer.wait()
    assert time.monotonic() - start >= 0.18
    pacer.pause(0.1)
    start = time.monotonic()
    pacer.wait()
    assert time.monotonic() - start >= 0.08


def test_the_images_limit_paces_too_and_its_reset_pauses():
    pacer = Pacer()
    pacer.observe({"x-ratelimit-limit-requests": "1000", "x-ratelimit-limit-images": "60"})
    assert pacer.per_minute == pytest.approx(60 * 0.97)
    pacer.observe({"x-ratelimit-remaining-images": "0", "x-ratelimit-reset-images": "1m30s"})
    assert pacer._paused_until - time.monotonic() == pytest.approx(90, abs=1)


def test_unreadable_limit_headers_are_ignored():
    pacer = Pacer(per_minute=100)
    pacer.observe({"x-ratelimit-limit-images": "many", "x-ratelimit-remaining-images": "0"})
    assert pacer.per_minute == pytest.approx(97) and pacer._paused_until == 0


def test_a_pause_that_begins_while_a_call_waits_for_its_turn_holds_it_back():
    pacer = Pacer(per_minute=600)  # a call every ~0.1 s
    pacer.wait()
    went = []
    waiting = threading.Thread(target=lambda: (pacer.wait(), went.append(time.monotonic())))
    waiting.start()  # its turn comes in ~0.1 s
    paused = time.monotonic()
    pacer.pause(0.5)  # another job met a 429 meanwhile
    waiting.join(10)
    assert went and went[0] - paused >= 0.45  # not before the pause ends (a later start is fine)
