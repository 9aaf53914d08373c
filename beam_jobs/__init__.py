"""Apache Beam pipelines over delf_core; they import no Prefect."""
