"""Convert MediaPipe's BlazeFace face detectors (.tflite) to ONNX for emolens' `blazeface` detector.

Development-time only (not an emolens dependency). Reproduce the shipped assets with:

    python -m venv /tmp/convenv && /tmp/convenv/bin/pip install tflite onnx numpy
    pip download mediapipe==0.10.21 --no-deps -d /tmp/mp   # Apache-2.0; models live in the wheel
    /tmp/convenv/bin/python scripts/convert_blazeface.py /tmp/mp/mediapipe-0.10.21-*.whl

``--check IMAGE`` compares the ONNX outputs with the TFLite interpreter's on that image (needs
``ai-edge-litert onnxruntime opencv-python-headless`` in the same venv).

The full-range model stores sparse fp16 weights (DENSIFY + DEQUANTIZE ops), which generic
converters such as tflite2onnx reject; this script folds every constant to dense float32 and
translates the few op types BlazeFace uses (NHWC in TFLite, NCHW in ONNX). The detector options
(input size, SSD anchor strides, score threshold) are read from the graph configuration compiled
into the wheel and stored as ONNX metadata `blazeface`, so runtime code does not hard-code them.
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import zipfile
from pathlib import Path

import numpy as np
import onnx
import tflite
from onnx import TensorProto, helper, numpy_helper
from tflite.BuiltinOperator import BuiltinOperator

ASSETS = Path(__file__).resolve().parents[1] / "emolens" / "inference" / "detectors" / "assets"
MODELS = {
    "short": "mediapipe/modules/face_detection/face_detection_short_range.tflite",
    "full": "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
}
BINDINGS = re.compile(r"mediapipe/python/_framework_bindings.*\.so$")
OP_NAMES = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
NHWC_TO_NCHW = [0, 3, 1, 2]
NCHW_TO_NHWC = [0, 2, 3, 1]


# --- detector options from the compiled graph config -------------------------------------------

def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def read_options(bindings: bytes, tflite_path: str) -> dict:
    """Decode the FaceDetectionOptions proto that follows the model path inside the binary."""
    anchor = bindings.index(tflite_path.encode())
    i = anchor + len(tflite_path)
    fields = {21: "input_width", 22: "input_height", 23: "num_layers", 24: "strides",
              25: "interpolated_scale_aspect_ratio", 31: "num_boxes", 32: "x_scale", 33: "y_scale",
              34: "w_scale", 35: "h_scale", 36: "min_score_thresh"}
    opts: dict = {"strides": []}
    while True:
        key, j = _varint(bindings, i)
        field, wire = key >> 3, key & 7
        if field not in fields or wire not in (0, 5):
            break
        if wire == 0:
            value, i = _varint(bindings, j)
        else:
            value, i = struct.unpack("<f", bindings[j:j + 4])[0], j + 4
        if fields[field] == "strides":
            opts["strides"].append(value)
        else:
            opts[fields[field]] = value
    # Fixed by MediaPipe's FaceDetection subgraph for both variants.
    opts.update(anchor_offset=0.5, fixed_anchor_size=True, num_keypoints=6,
                min_suppression_threshold=0.3)
    return opts


# --- tflite constants ---------------------------------------------------------------------------

def _index_vector(dim, kind: str) -> np.ndarray:
    table = getattr(dim, f"Array{kind}")()
    vtype = getattr(dim, f"Array{kind}Type")()
    cls = {1: tflite.Int32Vector, 2: tflite.Uint16Vector, 3: tflite.Uint8Vector}[vtype]
    vec = cls()
    vec.Init(table.Bytes, table.Pos)
    return vec.ValuesAsNumpy()


def densify(values: np.ndarray, shape: list[int], sparsity) -> np.ndarray:
    """Expand a TFLite sparse tensor (dense / CSR dimensions, no blocks) to a dense array."""
    if sparsity.BlockMapLength():
        raise NotImplementedError("block-sparse tensors are not used by BlazeFace")
    order = list(sparsity.TraversalOrderAsNumpy())
    dims = [sparsity.DimMetadata(d) for d in range(sparsity.DimMetadataLength())]
    dense = np.zeros([shape[o] for o in order], dtype=values.dtype)
    cursor = iter(values)

    def walk(level: int, prefix: tuple[int, ...], segment: int) -> None:
        dm = dims[level]
        if dm.Format() == 0:
            children = [(k, segment * dm.DenseSize() + k) for k in range(dm.DenseSize())]
        else:
            seg, idx = _index_vector(dm, "Segments"), _index_vector(dm, "Indices")
            children = [(int(idx[p]), p) for p in range(seg[segment], seg[segment + 1])]
        for coord, child in children:
            if level + 1 == len(dims):
                dense[prefix + (coord,)] = next(cursor)
            else:
                walk(level + 1, prefix + (coord,), child)

    walk(0, (), 0)
    return dense.transpose(np.argsort(order))


class Converter:
    """Translate one TFLite subgraph to an ONNX graph, folding constant ops."""

    def __init__(self, buf: bytes):
        self.model = tflite.Model.GetRootAsModel(buf, 0)
        self.graph = self.model.Subgraphs(0)
        self.consts: dict[int, np.ndarray] = {}
        self.nodes: list = []
        self.inits: list = []
        self.layout: dict[int, str] = {}  # activation tensor -> "nchw" for 4-D, "plain" otherwise

    def tensor(self, i: int):
        return self.graph.Tensors(i)

    def name(self, i: int) -> str:
        return f"t{i}"

    def shape(self, i: int) -> list[int]:
        return [int(s) for s in self.tensor(i).ShapeAsNumpy()]

    def raw_const(self, i: int) -> np.ndarray | None:
        t = self.tensor(i)
        data = self.model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data.size == 0:
            return None
        dtype = {0: np.float32, 1: np.float16, 2: np.int32}[t.Type()]
        arr = np.frombuffer(data.tobytes(), dtype=dtype)
        if t.Sparsity() is not None:
            return densify(arr, self.shape(i), t.Sparsity())
        return arr.reshape(self.shape(i))

    def const(self, i: int) -> np.ndarray:
        if i not in self.consts:
            arr = self.raw_const(i)
            if arr is None:
                raise ValueError(f"tensor {self.tensor(i).Name()} is not constant")
            self.consts[i] = arr.astype(np.float32) if arr.dtype == np.float16 else arr
        return self.consts[i]

    def is_const(self, i: int) -> bool:
        return i in self.consts or self.raw_const(i) is not None

    def init(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], **attrs) -> None:
        self.nodes.append(helper.make_node(op, inputs, outputs, name=f"n{len(self.nodes)}", **attrs))

    def activation(self, fused: int, out: int, pre: str) -> None:
        if fused == 0:
            self.node("Identity", [pre], [self.name(out)])
        elif fused == 1:
            self.node("Relu", [pre], [self.name(out)])
        elif fused == 3:
            self.node("Clip", [pre, self.init(f"{pre}_lo", np.float32(0)),
                               self.init(f"{pre}_hi", np.float32(6))], [self.name(out)])
        else:
            raise NotImplementedError(f"fused activation {fused}")

    def same_pads(self, inp: int, kernel: tuple[int, int], stride: tuple[int, int],
                  padding: int) -> list[int]:
        if padding == 1:  # VALID
            return [0, 0, 0, 0]
        _, h, w, _ = self.shape(inp)
        pads = []
        for size, k, s in zip((h, w), kernel, stride):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        return [pads[0][0], pads[1][0], pads[0][1], pads[1][1]]

    def convert(self) -> onnx.ModelProto:
        g = self.graph
        for k in range(g.OperatorsLength()):
            op = g.Operators(k)
            oc = self.model.OperatorCodes(op.OpcodeIndex())
            kind = OP_NAMES[max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())]
            ins = [int(x) for x in op.InputsAsNumpy()]
            outs = [int(x) for x in op.OutputsAsNumpy()]
            getattr(self, f"op_{kind.lower()}")(op, ins, outs)

        inp, = [int(x) for x in g.InputsAsNumpy()]
        self.layout[inp] = "nchw"
        graph_in = helper.make_tensor_value_info("input", TensorProto.FLOAT, self.shape(inp))
        self.nodes.insert(0, helper.make_node("Transpose", ["input"], [self.name(inp)],
                                              perm=NHWC_TO_NCHW, name="input_nchw"))
        outputs = []
        for out_name, i in zip(("regressors", "classificators"), [int(x) for x in g.OutputsAsNumpy()]):
            self.node("Identity", [self.name(i)], [out_name])
            outputs.append(helper.make_tensor_value_info(out_name, TensorProto.FLOAT, self.shape(i)))
        graph = helper.make_graph(self.nodes, "blazeface", [graph_in], outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model

    # constant folding
    def op_dequantize(self, op, ins, outs):
        self.consts[outs[0]] = self.const(ins[0]).astype(np.float32)

    def op_densify(self, op, ins, outs):
        self.consts[outs[0]] = self.const(ins[0])

    def _options(self, op, cls):
        opts = cls()
        table = op.BuiltinOptions()
        opts.Init(table.Bytes, table.Pos)
        return opts

    def op_conv_2d(self, op, ins, outs):
        o = self._options(op, tflite.Conv2DOptions)
        w = self.const(ins[1]).transpose(0, 3, 1, 2)  # OHWI -> OIHW
        self._conv(ins, outs, w, o, group=1)

    def op_depthwise_conv_2d(self, op, ins, outs):
        o = self._options(op, tflite.DepthwiseConv2DOptions)
        w = self.const(ins[1]).transpose(3, 0, 1, 2)  # 1HWC -> C1HW
        self._conv(ins, outs, w, o, group=self.shape(ins[0])[3])

    def _conv(self, ins, outs, w, o, group):
        kernel = (w.shape[2], w.shape[3])
        stride = (o.StrideH(), o.StrideW())
        dil = (o.DilationHFactor(), o.DilationWFactor())
        if dil != (1, 1):
            raise NotImplementedError("dilated convolution")
        names = [self.name(ins[0]), self.init(f"w{outs[0]}", np.ascontiguousarray(w))]
        if len(ins) > 2 and ins[2] >= 0:
            names.append(self.init(f"b{outs[0]}", self.const(ins[2])))
        pre = f"pre{outs[0]}"
        self.node("Conv", names, [pre], kernel_shape=list(kernel), strides=list(stride), group=group,
                  pads=self.same_pads(ins[0], kernel, stride, o.Padding()))
        self.activation(o.FusedActivationFunction(), outs[0], pre)

    def op_max_pool_2d(self, op, ins, outs):
        o = self._options(op, tflite.Pool2DOptions)
        kernel, stride = (o.FilterHeight(), o.FilterWidth()), (o.StrideH(), o.StrideW())
        pre = f"pre{outs[0]}"
        self.node("MaxPool", [self.name(ins[0])], [pre], kernel_shape=list(kernel),
                  strides=list(stride), pads=self.same_pads(ins[0], kernel, stride, o.Padding()))
        self.activation(o.FusedActivationFunction(), outs[0], pre)

    def op_add(self, op, ins, outs):
        o = self._options(op, tflite.AddOptions)
        pre = f"pre{outs[0]}"
        self.node("Add", [self._operand(i) for i in ins], [pre])
        self.activation(o.FusedActivationFunction(), outs[0], pre)

    def _operand(self, i: int) -> str:
        if self.is_const(i):
            arr = self.const(i)
            if arr.ndim == 4:
                arr = arr.transpose(NHWC_TO_NCHW)
            return self.init(f"c{i}", np.ascontiguousarray(arr))
        return self.name(i)

    def op_relu(self, op, ins, outs):
        self.node("Relu", [self.name(ins[0])], [self.name(outs[0])])

    def op_pad(self, op, ins, outs):
        p = self.const(ins[1])[NHWC_TO_NCHW]  # rows: per NCHW axis (before, after)
        pads = np.concatenate([p[:, 0], p[:, 1]]).astype(np.int64)
        self.node("Pad", [self.name(ins[0]), self.init(f"p{outs[0]}", pads)], [self.name(outs[0])])

    def op_resize_bilinear(self, op, ins, outs):
        o = self._options(op, tflite.ResizeBilinearOptions)
        mode = "align_corners" if o.AlignCorners() else ("half_pixel" if o.HalfPixelCenters() else "asymmetric")
        n, h, w, c = self.shape(outs[0])
        sizes = self.init(f"s{outs[0]}", np.array([n, c, h, w], dtype=np.int64))
        self.node("Resize", [self.name(ins[0]), "", "", sizes], [self.name(outs[0])], mode="linear",
                  coordinate_transformation_mode=mode)

    def op_depth_to_space(self, op, ins, outs):
        o = self._options(op, tflite.DepthToSpaceOptions)
        self.node("DepthToSpace", [self.name(ins[0])], [self.name(outs[0])],
                  blocksize=o.BlockSize(), mode="DCR")

    def op_reshape(self, op, ins, outs):
        src = self.name(ins[0])
        if len(self.shape(ins[0])) == 4:  # back to TFLite's NHWC element order first
            self.node("Transpose", [src], [f"nhwc{outs[0]}"], perm=NCHW_TO_NHWC)
            src = f"nhwc{outs[0]}"
        if len(self.shape(outs[0])) == 4:
            raise NotImplementedError("reshape to 4-D")
        shape = self.init(f"r{outs[0]}", np.array(self.shape(outs[0]), dtype=np.int64))
        self.node("Reshape", [src, shape], [self.name(outs[0])])

    def op_concatenation(self, op, ins, outs):
        o = self._options(op, tflite.ConcatenationOptions)
        axis = o.Axis() % len(self.shape(outs[0]))
        if len(self.shape(outs[0])) == 4:
            axis = NHWC_TO_NCHW.index(axis)
        pre = f"pre{outs[0]}"
        self.node("Concat", [self.name(i) for i in ins], [pre], axis=axis)
        self.activation(o.FusedActivationFunction(), outs[0], pre)


def check(tflite_model: bytes, onnx_model: onnx.ModelProto, image_path: Path, size: int) -> float:
    """Largest absolute difference between TFLite and ONNX Runtime outputs on one image."""
    import cv2
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    rgb = cv2.cvtColor(cv2.imread(str(image_path)), cv2.COLOR_BGR2RGB)
    x = (cv2.resize(rgb, (size, size)).astype(np.float32) / 127.5 - 1.0)[None]
    interpreter = Interpreter(model_content=tflite_model)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    expected = sorted((interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()),
                      key=lambda a: -a.shape[-1])  # regressors (…×16) first
    got = ort.InferenceSession(onnx_model.SerializeToString()).run(None, {"input": x})
    return max(float(np.abs(a - b).max()) for a, b in zip(expected, got))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="mediapipe-0.10.21 wheel (.whl)")
    parser.add_argument("--out", type=Path, default=ASSETS)
    parser.add_argument("--check", type=Path, metavar="IMAGE", help="compare with the TFLite interpreter on IMAGE")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(args.wheel) as zf:
        bindings = zf.read(next(n for n in zf.namelist() if BINDINGS.search(n)))
        for variant, member in MODELS.items():
            tflite_model = zf.read(member)
            model = Converter(tflite_model).convert()
            options = read_options(bindings, member)
            if args.check:
                diff = check(tflite_model, model, args.check, options["input_width"])
                print(f"{variant}: max |TFLite - ONNX| = {diff:.2e} on {args.check}")
            options["source"] = f"{args.wheel.name}:{member}"
            helper.set_model_props(model, {"blazeface": json.dumps(options)})
            path = args.out / f"blazeface_{variant}.onnx"
            onnx.save(model, path)
            print(f"{path}: {path.stat().st_size / 1e3:.0f} kB, options {options}")


if __name__ == "__main__":
    main()
