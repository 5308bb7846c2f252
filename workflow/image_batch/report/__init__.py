"""What snakemake --report shows: the gallery by context."""
