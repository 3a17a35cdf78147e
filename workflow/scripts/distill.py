"""Rule `distill`: unpack Snakemake's arguments and call
spacemoc.stages.distill.distill_detector."""

from pathlib import Path

from spacemoc.devices import set_threads
from spacemoc.distill import DistillConfig
from spacemoc.logs import log_to
from spacemoc.stages.distill import distill_detector

with log_to(snakemake.log[0]):
    set_threads(snakemake.threads)
    settings = snakemake.params.settings
    config = DistillConfig(
        steps=settings["steps"],
        batch_size=settings["batch_size"],
        lr=settings["lr"],
        seed=int(snakemake.wildcards.seed),
    )
    distill_detector(
        Path(snakemake.input.model).parent, snakemake.input.data, snakemake.output[0], config=config
    )
