# spacemoc: SPACE+MOC object discovery for Atari as a Snakemake workflow.
# Target paths and file formats: docs/design.md. Config keys: workflow/schemas/config.schema.yaml.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml", set_default=True)


# The home page of `snakemake --report report.html`: the stages and the config of the run.
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/tracking.smk"
include: "workflow/rules/export.smk"


rule all:
    default_target: True
    input:
        all_targets(),
