"""Rule `train`: unpack Snakemake's arguments and call spacemoc.stages.train.train."""

from pathlib import Path

from spacemoc.arms import arm_config
from spacemoc.devices import set_threads
from spacemoc.logs import log_to
from spacemoc.stages.train import train

with log_to(snakemake.log[0]):
    set_threads(snakemake.threads)
    train(
        snakemake.input.data,
        Path(snakemake.output.model).parent,
        game=snakemake.wildcards.game,
        config=arm_config(snakemake.config, snakemake.wildcards.model),
        seed=int(snakemake.wildcards.seed),
        validation_path=snakemake.input.get("validation") or None,
        background_path=snakemake.input.get("background") or None,
    )
