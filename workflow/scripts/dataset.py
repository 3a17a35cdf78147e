from spacemoc.data import make_dataset
from spacemoc.logs import log_to

with log_to(snakemake.log[0]):
    kwargs = dict(snakemake.params.kwargs, workers=snakemake.threads)
    make_dataset(
        snakemake.wildcards.game,
        snakemake.wildcards.split,
        snakemake.output[0],
        snakemake.input.background,
        **kwargs,
    )
