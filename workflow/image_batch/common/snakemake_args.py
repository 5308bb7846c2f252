"""The snakemake command line as Snakemake's own parser reads it: Snakemake does not tell a Snakefile
being parsed what the run is for (a dry run, a report ...), so the few choices that depend on it
read the command line."""


def parsed(argv):
    """Snakemake's parsed arguments of ``argv`` (sys.argv of the snakemake command), or None when
    they cannot be parsed (Snakemake itself will say so)."""
    try:
        from snakemake.cli import get_argument_parser

        args, _ = get_argument_parser().parse_known_args(list(argv[1:]))
    except BaseException:
        return None
    return args
