"""Rule `classifier`: unpack Snakemake's arguments and call the classifier stage."""

from spacemoc.logs import log_to
from spacemoc.stages.classifier import train_classifier

with log_to(snakemake.log[0]):
    train_classifier(
        list(snakemake.input.latents),
        snakemake.output.npz,
        snakemake.output.joblib,
        snakemake.output.labels,
        kind=snakemake.params.kind,
        clusters=snakemake.params.clusters,
        features=snakemake.params.features,
        seed=snakemake.params.seed,
        game=snakemake.wildcards.game,
        data_paths=list(snakemake.input.data),
    )
