"""Python's garbage collector, set for a Snakefile that plans many images (issue 19).

Reading the Snakefile builds the plan: a few objects per row that live as long as the process.
Snakemake then builds its DAG, millions of small objects more. The cyclic collector runs after
every 700 allocations by default, and each full pass walks every object alive, the plan's
included: at 100,000 rows it spent more CPU than everything the workflow adds to Snakemake.

``loosen`` (before planning) lets 100,000 allocations pass between the youngest generation's
collections; ``settle`` (once the Snakefile is read) moves what is alive then into the permanent
generation, which no later collection walks. Memory is freed as before when its last reference
goes; only objects in reference cycles among those alive at ``settle`` would wait for the
process to end. Measured by ``benchmarks/run.py --targets 2`` (docs/performance.md).
"""

import gc

THRESHOLDS = (100_000, 50, 100)  # Python's defaults: (700, 10, 10)


def loosen():
    """Fewer collections while the plan and the DAG are built (and the run goes on)."""
    gc.set_threshold(*THRESHOLDS)


def settle():
    """The Snakefile is read: what is alive now (the plan, the rules) is never walked again."""
    gc.freeze()
