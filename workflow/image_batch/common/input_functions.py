"""Input functions as Snakemake calls them: once for every job it makes (at 100,000 images, 100,000
times per function, in every dry run and every run)."""

import inspect

from snakemake.common import overwrite_function_params


def input_function(function):
    """``function``, with its parameters read once. Snakemake reads an input function's parameters
    (``inspect.signature``) twice for every job it makes, to see which of its own arguments the
    function asks for; Snakemake's own wrapped functions give them ready, as this does."""
    overwrite_function_params(function, inspect.signature(function).parameters)
    return function
