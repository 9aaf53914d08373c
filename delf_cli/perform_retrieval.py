"""`delf perform_retrieval`: the DELG instructions' evaluation on Revisited Oxford/Paris."""

from __future__ import annotations

import argparse
import logging

from delf_core.cli_flags import add_bool_flag, add_flag, positive_int
from delf_core.retrieval.perform import RetrievalConfig

log = logging.getLogger(__name__)
_DEFAULTS = RetrievalConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = _DEFAULTS
    add_flag(parser, "dataset_file_path", d.dataset_file_path, "Revisited gnd_*.mat or .pkl")
    add_flag(parser, "query_features_dir", d.query_features_dir, "<query>.delg_global/_local")
    add_flag(parser, "index_features_dir", d.index_features_dir, "<image>.delg_global/_local")
    add_bool_flag(
        parser,
        "use_geometric_verification",
        d.use_geometric_verification,
        "re-rank the top 100 by local-feature RANSAC inliers",
    )
    add_flag(
        parser,
        "local_descriptor_matching_threshold",
        d.local_descriptor_matching_threshold,
        "local descriptor distance bound (or ratio, with --use_ratio_test)",
        type=float,
    )
    # The flag's older name.
    parser.add_argument(
        "--local_feature_distance_threshold",
        dest="local_descriptor_matching_threshold",
        type=float,
        help=argparse.SUPPRESS,
    )
    add_flag(
        parser,
        "ransac_residual_threshold",
        d.ransac_residual_threshold,
        "RANSAC inlier distance in pixels",
        type=float,
    )
    add_bool_flag(parser, "use_ratio_test", d.use_ratio_test, "ratio test for local matches")
    add_flag(parser, "output_dir", d.output_dir, "metrics.txt goes here")
    add_flag(
        parser,
        "num_workers",
        d.num_workers,
        "processes re-ranking in parallel (default: all cores)",
        type=positive_int,
    )


def run(args: argparse.Namespace) -> int:
    from delf_core.retrieval.current import perform_retrieval_if_stale
    from delf_core.retrieval.metrics import PR_RANKS

    fields = {k: v for k, v in vars(args).items() if k in RetrievalConfig.__dataclass_fields__}
    # As the flow's task: a metrics.txt of the same flags, ground truth and features is kept.
    try:
        outcome = perform_retrieval_if_stale(RetrievalConfig(**fields))
    except (OSError, ValueError) as error:
        log.error("%s", error)
        return 1
    if outcome.result is not None:
        mean_ap = outcome.result.mean_average_precision
        precisions, recalls = outcome.result.mean_precisions, outcome.result.mean_recalls
    else:
        mean_ap = outcome.saved.mean_average_precision
        precisions, recalls = outcome.saved.mean_precisions, outcome.saved.mean_recalls
    for name in sorted(mean_ap):
        print(f"{name}: mAP={100 * mean_ap[name]:.2f}")
        # float(): NumPy 2 would print each value as np.float64(...).
        for kind, values in (("P", precisions), ("R", recalls)):
            print(f"  m{kind}@k{list(PR_RANKS)} {[round(100 * float(v), 2) for v in values[name]]}")
    if not outcome.computed:
        print(
            f"{outcome.metrics_path} is current (same flags, ground truth and features); "
            "nothing computed"
        )
        return 0
    timings = ", ".join(f"{k} {v:.2f}" for k, v in outcome.timings.items())
    print(f"Wrote {outcome.metrics_path} ({timings})")
    return 0
