"""Published figures to compare with: test split, relevant objects (the MOC paper's setting).

Each entry: game -> {column of eval.csv: (value as printed, source)}. Only figures the sources
state are here; an empty cell in the results table means the source gives none.
"""

from __future__ import annotations

MOC_PAPER = "published SPACE+MOC (GPU)"
SCOBOTS_2025 = "SPACE+MOC as SCoBots' extractor, 2025 report"

PUBLISHED: dict[str, dict[str, tuple[str, str]]] = {
    "pong": {
        "f_score": ("0.928 ± 0.013", MOC_PAPER),
        "cluster_nn_accuracy": ("0.987 ± 0.004", MOC_PAPER),
        "joint_f1": ("0.89", SCOBOTS_2025),
    },
    "boxing": {"f_score": ("0.90", MOC_PAPER), "joint_f1": ("0.90", SCOBOTS_2025)},
    "skiing": {"joint_f1": ("0.91", SCOBOTS_2025)},
    "freeway": {"joint_f1": ("0.95", SCOBOTS_2025)},
    "asterix": {"joint_f1": ("0.90", SCOBOTS_2025)},
    "tennis": {"joint_f1": ("0.58", SCOBOTS_2025)},
    "seaquest": {"joint_f1": ("0.63", SCOBOTS_2025)},
    "kangaroo": {"joint_f1": ("0.33", SCOBOTS_2025)},
}
