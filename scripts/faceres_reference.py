"""Run the original ``faceres-deep`` TF.js graph in TensorFlow: the reference for
``scripts/convert_faceres.py check``. Runs in a throw-away venv (``pip install tensorflow-cpu==2.21.0
numpy``), not in emolens' own: the ``tensorflowjs`` package does not import beside TensorFlow 2.21
(a protobuf clash), so the graph's JSON topology is parsed into a ``GraphDef`` with protobuf's
``json_format`` and the manifest's weights are injected as constants.

    python scripts/faceres_reference.py faceres-deep.json faces.npy reference.npz

``faces.npy``: N×224×224×3 uint8 RGB faces. The graph's own preprocessing is applied here: BGR, minus
the means (103.939, 116.779, 123.68), no scaling.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
from google.protobuf import json_format

MEANS = np.array([103.939, 116.779, 123.68], np.float32)
OUTPUTS = {"features": "global_pooling/Mean:0", "age": "age_pred/Softmax:0", "gender": "gender_pred/Sigmoid:0"}


def graph_def(json_path: Path) -> tf.compat.v1.GraphDef:
    model = json.loads(json_path.read_text())
    gd = json_format.ParseDict(model["modelTopology"], tf.compat.v1.GraphDef(), ignore_unknown_fields=True)
    nodes = {n.name: n for n in gd.node}
    for group in model["weightsManifest"]:
        data = b"".join((json_path.parent / p).read_bytes() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            dtype = {"float32": np.float32, "int32": np.int32}[w["dtype"]]
            count = int(np.prod(w["shape"])) if w["shape"] else 1
            value = np.frombuffer(data, dtype, count, offset).reshape(w["shape"])
            offset += count * np.dtype(dtype).itemsize
            node = nodes[w["name"]]
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
            node.attr["dtype"].type = tf.as_dtype(dtype).as_datatype_enum
    return gd


def main() -> None:
    json_path, faces_path, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    faces = np.load(faces_path)
    x = faces[..., ::-1].astype(np.float32) - MEANS
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def(json_path), name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        values = sess.run(list(OUTPUTS.values()), {"input_1:0": x})
    np.savez(out, **dict(zip(OUTPUTS, values)))
    print(f"{out}: {', '.join(f'{k} {v.shape}' for k, v in zip(OUTPUTS, values))}")


if __name__ == "__main__":
    main()
