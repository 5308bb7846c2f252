"""The garbage collector's settings for planning (image_batch.common.collector)."""

import gc

from image_batch.common import collector


def test_loosen_and_settle_set_the_collector_and_freeze_what_is_alive():
    thresholds = gc.get_threshold()
    try:
        collector.loosen()
        assert gc.get_threshold() == collector.THRESHOLDS
        assert collector.THRESHOLDS[0] > thresholds[0]
        alive = [object() for _ in range(10)]  # noqa: F841 (alive when settled)
        collector.settle()
        assert gc.get_freeze_count() > 0
        collector.restore()  # a real run's start
        assert gc.get_threshold() == thresholds
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
