#!/usr/bin/env python3
"""Writes the committed seed corpora under fuzz/corpus/<target>/ and fuzz/spec.dict.

    python3 fuzz/make_corpus.py

Each seed is a small valid input of its target (plus a few near misses), so the
fuzzer starts from files the loaders accept. The checkpoint seeds are written by
the library itself: fuzz/make_checkpoints.c (scripts/fuzz.sh --make-seeds runs both).
Needs NumPy, h5py and onnx (scripts/setup.sh installs them).
"""
import gzip
import json
import pathlib
import shutil
import struct

import h5py
import numpy as np

root = pathlib.Path(__file__).resolve().parent
repo = root.parent
corpus = root / "corpus"


def folder(name):
    path = corpus / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def idx(dtype_code, shape, payload):
    """An IDX file: 0, 0, type, rank, big-endian dimensions, then the data."""
    return bytes([0, 0, dtype_code, len(shape)]) + b"".join(struct.pack(">I", d) for d in shape) + payload


def idx_input(images, labels=None, flags=0):
    """The fuzz_idx input layout: flags, [2-byte labels length, labels], images."""
    if labels is None:
        return bytes([flags & ~1]) + images
    return bytes([flags | 1]) + struct.pack("<H", len(labels)) + labels + images


def spec_seeds():
    out = folder("spec")
    for path in sorted((repo / "specs").glob("*.json")):
        if path.name != "schema.json":
            shutil.copy(path, out / path.name)
    for path in sorted((repo / "Tests/DeepLearningTests/BadSpecs").glob("*.json")):
        shutil.copy(path, out / ("bad-" + path.name))
    # Small models of every layer type, so that each input trains fast.
    small = {
        "format_version": 1, "input": {"shape": [2, 5, 5]},
        "layers": [
            {"type": "conv2d", "filters": 2, "kernel_size": 3, "padding": 1, "stride": 1},
            {"type": "batch_norm"}, {"type": "leaky_relu"}, {"type": "avg_pool2d", "kernel_size": 2},
            {"type": "flatten"}, {"type": "dropout", "rate": 0.1}, {"type": "linear", "units": 4},
            {"type": "gelu"}, {"type": "linear", "units": 3}, {"type": "softmax"},
        ],
        "loss": {"type": "cross_entropy", "label_smoothing": 0.1},
        "optimizer": {"type": "adam", "lr": 0.001, "weight_decay": 0.01}, "init": "he_uniform", "seed": 7,
    }
    (out / "small_cnn.json").write_text(json.dumps(small))
    tiny = {"format_version": 1, "input": {"size": 3},
            "layers": [{"type": "linear", "units": 2}, {"type": "silu"}, {"type": "linear", "units": 1},
                       {"type": "sigmoid"}],
            "loss": "binary_cross_entropy", "optimizer": {"type": "rmsprop", "lr": 0.01}, "seed": 1}
    (out / "tiny_bce.json").write_text(json.dumps(tiny))


def spec_dictionary():
    """Every quoted name in specs/schema.json (types, options, enum values) as a libFuzzer dictionary."""
    words = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if not key.startswith("$"):
                    words.add(key)
                if key in ("const", "enum"):
                    for v in value if isinstance(value, list) else [value]:
                        if isinstance(v, str):
                            words.add(v)
                walk(value)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(json.loads((repo / "specs/schema.json").read_text()))
    skip = {"type", "properties", "items", "required", "oneOf", "anyOf", "allOf", "description", "title",
            "additionalProperties", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "default",
            "const", "enum", "minItems", "maxItems", "pattern", "not", "if", "then", "else"}
    lines = ["# libFuzzer dictionary of fuzz_spec: names from specs/schema.json (fuzz/make_corpus.py)"]
    for word in sorted(words - skip):
        if word.isascii() and '"' not in word and "\\" not in word:
            lines.append(f'"\\"{word}\\""')
    lines += ['"{"', '"}"', '"["', '"]"', '":"', '","', '"true"', '"false"', '"null"', '"1e308"', '"-0"',
              '"2147483648"', '"9223372036854775807"', '"1e-320"']
    (root / "spec.dict").write_text("\n".join(lines) + "\n")


def idx_seeds():
    out, outgz = folder("idx"), folder("idx_gz")
    rng = np.random.default_rng(0)
    images = idx(0x08, [3, 2, 2], rng.integers(0, 256, 12, dtype=np.uint8).tobytes())
    labels = idx(0x08, [3], bytes([0, 1, 9]))
    for name, data in [("labelled", idx_input(images, labels)), ("unlabelled", idx_input(images)),
                       ("one_pixel", idx_input(idx(0x08, [1, 1, 1], b"\x80"), idx(0x08, [1], b"\x05"))),
                       ("count_mismatch", idx_input(images, idx(0x08, [2], b"\x00\x01"))),
                       ("truncated", idx_input(images[:-3], labels))]:
        (out / name).write_bytes(data)
        (outgz / (name + "_compressed")).write_bytes(bytes([data[0] | 2]) + data[1:])
    # Raw gzip bytes, written as they are (flags bit 1 clear).
    raw_images, raw_labels = gzip.compress(images, mtime=0), gzip.compress(labels, mtime=0)
    (outgz / "raw_gzip").write_bytes(idx_input(raw_images, raw_labels))
    (outgz / "raw_gzip_truncated").write_bytes(idx_input(raw_images[:-6]))


def csv_seeds():
    out = folder("csv")
    files = {
        "labels_auto": (0, b"label,a,b,c\n0,1,2,3\n1,4,5,6\n2,7.5,-8e-3,9\n"),
        "labels_three": (3, b"0,1,2,3\r\n1,4,5,6\r\n"),
        "unlabelled_two": (2, b"1,2\n3,4\n\n"),
        "targets_one": (1 << 3, b"y,x1,x2\n0.5,1,2\n-1.25,3,4\n"),
        "targets_two": (2 << 3 | 2, b"0,1,2,3\n1,0,5,6\n"),
        "targets_three_auto": (3 << 3, b"1,0,0,0.25,0.5\n0,1,0,1e3,-2\n"),
        "bom_spaces": (0, b"\xef\xbb\xbf 3 , 1.5 ,2\n 4,5 , 6 \n"),
        "hostile_count": (5, b"0,1,2\n"),
        "gz_name": (32, gzip.compress(b"0,1,2\n1,3,4\n", mtime=0)),
    }
    for name, (flags, text) in files.items():
        (out / name).write_bytes(bytes([flags]) + text)


def hdf5_seeds():
    out = folder("hdf5_dataset")
    rng = np.random.default_rng(1)

    def write(name, **datasets):
        # The smallest files h5py makes: no chunking, the earliest file format.
        with h5py.File(out / name, "w", libver="earliest") as f:
            for key, value in datasets.items():
                f[key] = value

    write("uint8_labels.h5", x=rng.integers(0, 256, (3, 2, 2), dtype=np.uint8), y=np.array([0, 1, 2], np.int64))
    write("float_targets.h5", x=rng.standard_normal((2, 3)).astype(np.float32),
          y=rng.standard_normal((2, 2)).astype(np.float32))
    write("float_targets_1d.h5", x=rng.standard_normal((2, 2)).astype(np.float64),
          y=np.array([0.5, -1.0], np.float64))
    write("x_only.h5", x=np.ones((1, 1), np.float32))
    write("int32_labels.h5", x=rng.standard_normal((2, 1, 2, 2)).astype(np.float32), y=np.array([1, 0], np.int32))


def abi_seeds():
    """fuzz_abi programs: operation bytes followed by their argument bytes (see fuzz_abi.c)."""
    out = folder("abi")
    programs = {
        # create model 0 from spec 0, train, predict, save and load, free
        "train_predict_save": [0, 0, 0, 3, 0, 2, 1, 0, 1, 0, 1, 1, 4, 0, 2, 1, 1, 10, 0, 1, 0, 1, 1],
        "conv_gradcheck": [0, 0, 2, 12, 0, 2, 5, 0, 1, 2, 3, 4, 5, 6, 7, 8, 2, 1, 1, 1, 1],
        "dataset_epoch": [0, 0, 0, 13, 3, 1, 0, 9, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 14, 0, 1, 2, 1, 1],
        "layers_losses": [15, 0, 0, 5, 0, 16, 1, 2, 3, 7, 0, 1, 1, 1, 1, 1, 1, 1, 17, 1, 0, 0, 2, 4, 1, 2, 1],
        "free_then_use": [0, 1, 1, 1, 1, 3, 6, 2, 0, 0, 6, 6, 1, 9, 19, 6, 1, 1, 1, 1, 1],
        "params_buffers": [0, 0, 3, 8, 0, 1, 0, 1, 1, 2, 9, 0, 1, 0, 3, 1, 0, 1, 7, 0, 1, 3, 4, 5],
        "clone_preprocessing": [0, 0, 1, 2, 1, 1, 1, 7, 1, 1, 7, 8, 9, 6, 1, 1, 3, 18, 1, 11, 0, 1],
    }
    for name, program in programs.items():
        (out / name).write_bytes(bytes(program))


def onnx_seeds():
    """Small ONNX models of the shapes exporters write: ours (Gemm, Conv, pools, batch norm,
    preprocessing in front), PyTorch's (Gemm transB, Flatten), Keras's (MatMul + Add, the
    channels-last Transpose before Flatten), and near misses (an unsupported op, a
    truncated file)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out = folder("onnx")
    rng = np.random.default_rng(5)

    def const(name, *shape, dtype=np.float32):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(dtype), name)

    def model(name, nodes, inputs, output_shape, initializers, opset=20):
        graph = helper.make_graph(nodes, name, inputs,
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)], initializers)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)
        data = m.SerializeToString()
        (out / f"{name}.onnx").write_bytes(data)
        return data

    flat = lambda n: [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n])]
    image = lambda *s: [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *s])]
    model("mlp_gemm", [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
                       helper.make_node("Relu", ["h"], ["r"]),
                       helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1)],
          flat(4), ["N", 3], [const("w1", 5, 4), const("b1", 5), const("w2", 3, 5), const("b2", 3)])
    model("keras_matmul", [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
                           helper.make_node("Softmax", ["a"], ["y"], axis=-1)],
          flat(3), ["N", 2], [const("w", 3, 2), const("b", 2)])
    model("preprocessed_tanh", [helper.make_node("Mul", ["x", "scale"], ["s"]), helper.make_node("Sub", ["s", "mean"], ["c"]),
                                helper.make_node("Div", ["c", "std"], ["z"]),
                                helper.make_node("Gemm", ["z", "w", "b"], ["g"], transB=1),
                                helper.make_node("Tanh", ["g"], ["y"])],
          flat(2), ["N", 2], [numpy_helper.from_array(np.array(1 / 255, np.float32), "scale"),
                              numpy_helper.from_array(np.array(0.1, np.float32), "mean"),
                              numpy_helper.from_array(np.array(0.3, np.float32), "std"), const("w", 2, 2), const("b", 2)])
    model("cnn", [helper.make_node("Conv", ["x", "k", "kb"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                  helper.make_node("BatchNormalization", ["c", "g", "beta", "mu", "var"], ["n"], epsilon=1e-5),
                  helper.make_node("Relu", ["n"], ["r"]),
                  helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
                  helper.make_node("Flatten", ["p"], ["f"], axis=1),
                  helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1)],
          image(1, 4, 4), ["N", 3],
          [const("k", 2, 1, 3, 3), const("kb", 2), const("g", 2), const("beta", 2), const("mu", 2),
           numpy_helper.from_array(np.array([1.0, 0.5], np.float32), "var"), const("w", 3, 8), const("b", 3)])
    model("keras_nhwc", [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
                         helper.make_node("Flatten", ["t"], ["f"], axis=1),
                         helper.make_node("MatMul", ["f", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])],
          image(2, 2, 2), ["N", 2], [const("w", 8, 2), const("b", 2)])
    model("avgpool_sigmoid", [helper.make_node("AveragePool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
                              helper.make_node("Reshape", ["p", "shape"], ["r"]),
                              helper.make_node("Sigmoid", ["r"], ["y"])],
          image(1, 2, 4), ["N", 2], [numpy_helper.from_array(np.array([-1, 2], np.int64), "shape")])
    model("float64", [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)],
          [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 2])], ["N", 1],
          [const("w", 1, 2, dtype=np.float64), const("b", 1, dtype=np.float64)])
    data = model("unsupported_op", [helper.make_node("Gemm", ["x", "w", "b"], ["g"], transB=1),
                                    helper.make_node("Erf", ["g"], ["y"])],
                 flat(2), ["N", 2], [const("w", 2, 2), const("b", 2)])
    (out / "truncated.onnx").write_bytes(data[: len(data) // 2])


def safetensors_file(tensors, metadata=None):
    """A safetensors file: tensors is a list of (name, dtype, shape, array), written in order."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, values in tensors:
        raw = np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def safetensors_seeds():
    """State dicts of the three specs of fuzz/fuzz_safetensors.c (nn.Sequential names), in
    F32, F16, BF16 and F64, one carrying its spec in the metadata, and a few near misses."""
    out = folder("safetensors")
    rng = np.random.default_rng(0)

    def t(name, shape, dtype="F32"):
        numpy_type = {"F32": np.float32, "F16": np.float16, "F64": np.float64}[dtype]
        values = rng.standard_normal(shape).astype(numpy_type) if shape else np.array(0, numpy_type)
        if name.endswith("running_var"):
            values = np.abs(values) + 0.5
        return (name, dtype, shape, values)

    def counter(name):
        return (name, "I64", (), np.array(3, np.int64))

    def bn(i, c, dtype="F32", affine=True):
        weights = [t(f"{i}.weight", (c,), dtype), t(f"{i}.bias", (c,), dtype)] if affine else []
        return weights + [t(f"{i}.running_mean", (c,), dtype), t(f"{i}.running_var", (c,), dtype), counter(f"{i}.num_batches_tracked")]

    def mlp(dtype="F32"):
        return [t("0.weight", (4, 3), dtype), t("0.bias", (4,), dtype)] + bn(1, 4, dtype) + \
               [t("4.weight", (2, 4), dtype), t("4.bias", (2,), dtype)]

    cnn = [t("0.weight", (2, 1, 3, 3)), t("0.bias", (2,))] + bn(1, 2) + [t("4.weight", (3, 8))]
    f64 = bn(0, 2, "F64", affine=False) + [t("1.weight", (2, 2), "F64"), t("1.bias", (2,), "F64")]
    (out / "mlp.safetensors").write_bytes(safetensors_file(mlp(), {"format": "pt"}))
    (out / "mlp_f16.safetensors").write_bytes(safetensors_file(mlp("F16")))
    bf16 = [(n, "BF16", s, (v.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)) if d == "F32" else (n, d, s, v)
            for n, d, s, v in mlp()]
    (out / "mlp_bf16.safetensors").write_bytes(safetensors_file(bf16))
    (out / "cnn.safetensors").write_bytes(safetensors_file(cnn))
    (out / "float64.safetensors").write_bytes(safetensors_file(f64))
    spec = {"input_size": 2, "layers": [{"type": "linear", "units": 2}, {"type": "relu"}],
            "loss": "mse", "optimizer": {"type": "sgd", "lr": 0.1}}
    (out / "with_spec.safetensors").write_bytes(safetensors_file(
        [t("0.weight", (2, 2)), t("0.bias", (2,))], {"format": "pt", "deeplearning.spec": json.dumps(spec)}))
    # Near misses: a tensor missing, a wrong shape, overlapping offsets, a short file.
    (out / "mlp_missing.safetensors").write_bytes(safetensors_file(mlp()[1:]))
    (out / "mlp_transposed.safetensors").write_bytes(safetensors_file([t("0.weight", (3, 4))] + mlp()[1:]))
    whole = safetensors_file(cnn)
    (out / "cnn_truncated.safetensors").write_bytes(whole[:-5])
    (out / "empty.safetensors").write_bytes(safetensors_file([]))


if __name__ == "__main__":
    spec_seeds()
    spec_dictionary()
    idx_seeds()
    csv_seeds()
    hdf5_seeds()
    abi_seeds()
    onnx_seeds()
    safetensors_seeds()
    for path in sorted(corpus.iterdir()):
        print(f"{path.relative_to(repo)}: {len(list(path.iterdir()))} files")
