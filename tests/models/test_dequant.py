"""GGUF tensor types decode to the right float32 values and shapes."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from misuan.errors import InvalidInput
from misuan.models.gguf_loader import _dequantize, _open

# (type, max abs error allowed relative to max |x|)
CASES = [("F32", 0.0), ("F16", 1e-3), ("BF16", 1e-2), ("Q8_0", 1e-2), ("Q4_0", 0.15), ("Q4_1", 0.1), ("Q5_0", 0.07)]


def write(path, arrays):
    w = gguf.GGUFWriter(str(path), "llama")
    for name, (qtype, arr) in arrays.items():
        quant = getattr(gguf.GGMLQuantizationType, qtype)
        if qtype == "F32":
            w.add_tensor(name, arr)
        elif qtype == "F16":
            w.add_tensor(name, arr.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(arr, quant), raw_dtype=quant)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_types_decode_close_to_source(tmp_path):
    rng = np.random.default_rng(0)
    src = rng.standard_normal((48, 96)).astype(np.float32)  # (out, in): rows of 96 = 3 blocks of 32
    write(tmp_path / "t.gguf", {f"t_{q}": (q, src) for q, _ in CASES})
    reader = _open(tmp_path / "t.gguf")
    tensors = {t.name: t for t in reader.tensors}
    scale = np.abs(src).max()
    for qtype, tol in CASES:
        t = tensors[f"t_{qtype}"]
        assert t.tensor_type.name == qtype
        out = _dequantize(t)
        assert out.dtype == np.float32 and out.shape == src.shape
        err = np.abs(out - src).max() / scale
        assert err <= tol, (qtype, err)
        if qtype != "F32":
            assert err > 0  # it really went through the quantised type


def test_unsupported_type_is_refused(tmp_path):
    ternary = gguf.GGMLQuantizationType.TQ2_0
    src = np.ones((4, 256), np.float32)
    w = gguf.GGUFWriter(str(tmp_path / "t.gguf"), "llama")
    w.add_tensor("t", gguf.quants.quantize(src, ternary), raw_dtype=ternary)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    (t,) = _open(tmp_path / "t.gguf").tensors
    with pytest.raises(InvalidInput, match="TQ2_0"):
        _dequantize(t)
