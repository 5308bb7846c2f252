"""Python's garbage collector, set for a Snakefile that plans many images (issue 19).

Reading the Snakefile builds the plan: a few objects per row that live as long as the process.
Snakemake then builds its DAG, millions of small objects more. The cyclic collector runs after
every 700 allocations by default, and each full pass walks every object alive, the plan's
included: at 100,000 rows it spent more CPU than everything the workflow adds to Snakemake.

``loosen`` (before planning) lets 100,000 allocations pass between the youngest generation's
collections; ``settle`` (once the Snakefile is read) collects the young garbage, then moves what
is alive into the permanent generation, which no later collection walks. Memory is freed as
before when its last reference goes; only objects in reference cycles among those alive at
``settle`` would wait for the process to end. A real run's jobs (hours of them, each leaving some
cyclic garbage) get Python's own thresholds back when it starts (``restore``, onstart), so its
memory is collected as it always was; the DAG, alive until the run ends, is frozen first, or every
full collection of the run would walk it (a 10,000-image run took 63.6 s instead of 46.2 s).
Measured by ``benchmarks/run.py`` (docs/performance.md).
"""

import gc

THRESHOLDS = (100_000, 50, 100)  # Python's defaults: (700, 10, 10)
_before = []


def loosen():
    """Fewer collections while the plan and the DAG are built."""
    if not _before:
        _before.append(gc.get_threshold())
    gc.set_threshold(*THRESHOLDS)


def settle():
    """The Snakefile is read: what is alive now (the plan, the rules) is never walked again; the
    garbage of reading it is collected first (not frozen with it)."""
    gc.collect(1)
    gc.freeze()


def restore():
    """A real run starts its jobs: what is alive now (the DAG) is frozen as the plan was, and the
    thresholds are as they were before ``loosen``."""
    settle()
    if _before:
        gc.set_threshold(*_before[0])
