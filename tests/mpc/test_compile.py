import jax
import jax.numpy as jnp
import numpy as np
import pytest

from misuan.errors import InvalidInput
from misuan.mpc.compile import compile_program, spec_of
from misuan.mpc.program import parse_executable


def f(x, w):
    return jax.nn.softmax(x @ w, axis=-1)


def test_compilation_is_deterministic_and_needs_only_shapes():
    specs = [jax.ShapeDtypeStruct((4, 8), jnp.float32), jax.ShapeDtypeStruct((8, 8), jnp.float32)]
    a = compile_program(f, specs)
    b = compile_program(f, [spec_of(np.zeros((4, 8))), spec_of(np.zeros((8, 8)))])
    assert a.executable == b.executable and a.sha256 == b.sha256
    assert a.input_names == ("in0", "in1") and a.output_names == ("out0",)
    assert a.out_shapes == (((4, 8), "float32"),)


def test_different_shapes_give_different_programs():
    a = compile_program(f, [spec_of(np.zeros((4, 8))), spec_of(np.zeros((8, 8)))])
    b = compile_program(f, [spec_of(np.zeros((5, 8))), spec_of(np.zeros((8, 8)))])
    assert a.sha256 != b.sha256


def test_untraceable_function_is_a_misuan_error():
    def bad(x):
        return x @ np.zeros((3, 3))  # shape mismatch

    with pytest.raises(InvalidInput, match="cannot compile"):
        compile_program(bad, [spec_of(np.zeros((2, 2)))])


def test_parse_executable_refuses_garbage():
    with pytest.raises(InvalidInput):
        parse_executable(b"\x00\x01garbage")
