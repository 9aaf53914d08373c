"""Feature file names: the original scripts' suffixes, in one place."""

# The list form of extract_features writes .delf; the DELG form writes .delg_local
# (the same DelfFeatures format) and/or .delg_global (one DatumProto).
DELF_SUFFIX = ".delf"
DELG_LOCAL_SUFFIX = ".delg_local"
DELG_GLOBAL_SUFFIX = ".delg_global"
