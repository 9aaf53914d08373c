"""`delf build_image_dataset`: the original's flags, plus any Beam pipeline option."""

from beam_jobs.build_image_dataset import add_arguments, run

# Flags this command does not know are Beam pipeline options (--runner, --project, ...).
PASSES_UNKNOWN_FLAGS = True

__all__ = ["PASSES_UNKNOWN_FLAGS", "add_arguments", "run"]
