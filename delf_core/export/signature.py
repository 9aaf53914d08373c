"""An export's serving signature, read from its graph file without loading its weights."""

from __future__ import annotations

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from delf_core import storage


def signature_summary(export_path: str) -> dict[str, dict[str, str]]:
    """`serving_default`'s inputs and outputs as `dtype[shape]`, read from saved_model.pb.

    Parsing the graph file is instant; loading the SavedModel would restore every weight.
    """
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(storage.join(export_path, "saved_model.pb"), "rb") as handle:
        saved_model.ParseFromString(handle.read())
    signature = saved_model.meta_graphs[0].signature_def["serving_default"]

    def spec(info) -> str:
        dims = ["None" if d.size < 0 else str(d.size) for d in info.tensor_shape.dim]
        return f"{tf.dtypes.as_dtype(info.dtype).name}[{', '.join(dims)}]"

    return {
        "inputs": {name: spec(info) for name, info in sorted(signature.inputs.items())},
        "outputs": {name: spec(info) for name, info in sorted(signature.outputs.items())},
    }
