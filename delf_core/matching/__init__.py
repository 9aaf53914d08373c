"""Descriptor matching, RANSAC verification and match pictures (match_images)."""

from delf_core.matching.draw import draw_matches, encode_png, matches_png, read_image, write_png
from delf_core.matching.match import FeatureSet, MatchConfig, MatchResult, match_features
from delf_core.matching.putative import PutativeMatches, putative_matches
from delf_core.matching.ransac import RansacResult, ransac_affine

__all__ = [
    "FeatureSet",
    "MatchConfig",
    "MatchResult",
    "PutativeMatches",
    "RansacResult",
    "draw_matches",
    "encode_png",
    "match_features",
    "matches_png",
    "putative_matches",
    "ransac_affine",
    "read_image",
    "write_png",
]
