"""DelfConfig text files (REFERENCE §6.1): load, check and write them."""

from __future__ import annotations

from google.protobuf import text_format

from delf_core.features import _files
from delf_core.features.protos import delf_config_pb2

DelfConfig = delf_config_pb2.DelfConfig


class DelfConfigError(ValueError):
    """A DelfConfig file that does not parse or cannot drive an extractor; one line."""


def parse_delf_config(text: str, source: str = "<string>") -> delf_config_pb2.DelfConfig:
    """Parses DelfConfig text format (comments allowed).

    Args:
      text: the text.
      source: what to call the text in errors, usually its path.

    Returns:
      The message.

    Raises:
      DelfConfigError: naming `source` and the line and column of a parse error.
    """
    config = delf_config_pb2.DelfConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as err:
        line, column = err.GetLine(), err.GetColumn()
        where = f"{source}:{line}:{column}" if line is not None else source
        # The message repeats "line:column :" in front; keep only the reason.
        reason = str(err).split(" : ", 1)[-1]
        raise DelfConfigError(f"{where}: not a valid DelfConfig: {reason}") from err
    return config


def load_delf_config(path: str, check: bool = True) -> delf_config_pb2.DelfConfig:
    """Reads a DelfConfig text file.

    Args:
      path: local path or URL of the .pbtxt file.
      check: also run `check_delf_config`, so that a config that cannot drive an
        extractor fails here rather than half-way through a job.

    Returns:
      The message.

    Raises:
      DelfConfigError: naming the file (and line, for a parse error).
      FileNotFoundError: when there is no such file.
    """
    try:
        text = _files.read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as err:
        raise DelfConfigError(f"{path}: not a text file ({err})") from err
    config = parse_delf_config(text, source=path)
    if check:
        check_delf_config(config, source=path)
    return config


def check_delf_config(config: delf_config_pb2.DelfConfig, source: str = "DelfConfig") -> None:
    """Checks what the extractor relies on.

    At least one of local and global features is asked for, there is at least one
    positive image scale, the global scale indices are in range, and PCA, where used,
    names its mean and projection files (and variances, with whitening).

    Args:
      config: the message.
      source: what to call the config in errors, usually its path.

    Raises:
      DelfConfigError: one line naming `source` and the field at fault.
    """

    def fail(reason: str) -> None:
        raise DelfConfigError(f"{source}: {reason}")

    if not (config.use_local_features or config.use_global_features):
        fail("use_local_features and use_global_features are both false; set one")
    if not config.image_scales:
        fail("image_scales is empty; give at least one scale, e.g. image_scales: 1.0")
    if any(scale <= 0 for scale in config.image_scales):
        fail(f"image_scales must be positive, got {list(config.image_scales)}")
    if config.use_local_features and config.delf_local_config.use_pca:
        _check_pca(config.delf_local_config.pca_parameters, "delf_local_config", fail)
    if config.use_global_features:
        n = len(config.image_scales)
        bad = [i for i in config.delf_global_config.image_scales_ind if not 0 <= i < n]
        if bad:
            fail(f"delf_global_config.image_scales_ind {bad} out of range for {n} image_scales")
        if config.delf_global_config.use_pca:
            _check_pca(config.delf_global_config.pca_parameters, "delf_global_config", fail)


def _check_pca(params: delf_config_pb2.DelfPcaParameters, where: str, fail) -> None:
    # use_pca defaults to true, so a config that forgets `use_pca: false` lands here.
    if not params.mean_path or not params.projection_matrix_path:
        fail(
            f"{where}.use_pca is true but pca_parameters lacks mean_path or "
            "projection_matrix_path; set them or set use_pca: false"
        )
    if params.pca_dim <= 0:
        fail(f"{where}.pca_parameters.pca_dim must be positive, got {params.pca_dim}")
    if params.use_whitening and not params.pca_variances_path:
        fail(f"{where}.pca_parameters.use_whitening is true but pca_variances_path is not set")


def write_delf_config(config: delf_config_pb2.DelfConfig, path: str) -> None:
    """Writes `config` in text format, atomically; `load_delf_config` reads it back.

    Args:
      config: the message.
      path: local path or URL.
    """
    _files.write_bytes(path, text_format.MessageToString(config).encode("utf-8"))


def global_scales_indices(config: delf_config_pb2.DelfConfig) -> list[int]:
    """Indices of the image scales used for the global descriptor.

    Args:
      config: the message.

    Returns:
      `delf_global_config.image_scales_ind` when set, else every scale's index.
    """
    indices = list(config.delf_global_config.image_scales_ind)
    return indices or list(range(len(config.image_scales)))
