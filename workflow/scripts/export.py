"""Rule `export`: unpack Snakemake's arguments and call spacemoc.stages.export.export_detector."""

import json

from spacemoc.logs import log_to
from spacemoc.stages.export import export_detector

with log_to(snakemake.log[0]):
    print(
        export_detector(
            snakemake.input.model,
            snakemake.input.classifier,
            snakemake.output[0],
            eval_path=snakemake.input.eval,
            train_benchmark_path=snakemake.input.train_benchmark,
            config=json.loads(json.dumps(snakemake.params.config)),
        )
    )
