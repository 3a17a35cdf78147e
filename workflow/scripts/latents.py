"""Rule `latents`: unpack Snakemake's arguments and call spacemoc.latents.compute_latents."""

from spacemoc.latents import compute_latents
from spacemoc.logs import log_to

with log_to(snakemake.log[0]):
    compute_latents(
        snakemake.input.model,
        snakemake.input.data,
        snakemake.output[0],
        threads=snakemake.threads,
        boxes=snakemake.params.boxes,
    )
