"""Rule `plots`: the figures of a game's first-seed model (spacemoc.stages.plots.make_plots)."""

from pathlib import Path

from spacemoc.logs import log_to
from spacemoc.stages.plots import make_plots

with log_to(snakemake.log[0]):
    make_plots(
        snakemake.input.latents,
        snakemake.input.data,
        snakemake.input.classifier,
        snakemake.input.curves,
        snakemake.input.model,
        Path(snakemake.output.detections).parent,
        n_frames=snakemake.params.frames,
    )
