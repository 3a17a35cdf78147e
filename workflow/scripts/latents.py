"""Rule `latents`: unpack Snakemake's arguments and call spacemoc.stages.latents.compute_latents."""

from spacemoc.devices import set_threads
from spacemoc.logs import log_to
from spacemoc.stages.latents import compute_latents

with log_to(snakemake.log[0]):
    set_threads(snakemake.threads)
    compute_latents(
        snakemake.input.model,
        snakemake.input.data,
        snakemake.output[0],
        box_readout=snakemake.params.boxes,
        overlap_suppression=snakemake.params.overlap_suppression,
    )
