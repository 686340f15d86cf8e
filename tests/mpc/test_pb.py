"""The daemon's protobuf reader agrees with libspu on SPU's own messages."""

import numpy as np
import pytest
from spu import api as spu_api
from spu import libspu

from misuan.errors import InvalidInput
from misuan.mpc import _pb
from misuan.mpc.compile import compile_program, spec_of


@pytest.mark.parametrize("protocol,n", [(libspu.ProtocolKind.ABY3, 3), (libspu.ProtocolKind.CHEETAH, 2)])
@pytest.mark.parametrize("shape", [(3, 4), (7,), (2, 3, 5), ()])
def test_value_meta(protocol, n, shape):
    io = spu_api.Io(n, libspu.RuntimeConfig(protocol=protocol, field=libspu.FieldType.FM64))
    s = io.make_shares(np.zeros(shape, np.float32), libspu.Visibility.VIS_SECRET)[0]
    ref = libspu.ValueMeta()
    ref.ParseFromString(s.meta)
    assert _pb.value_meta(s.meta) == (tuple(ref.shape.dims), int(ref.visibility), ref.storage_type)


def test_executable_names():
    p = compile_program(lambda a, b: (a @ b, a + 1), [spec_of(np.zeros((2, 2))), spec_of(np.zeros((2, 2)))])
    exe = libspu.Executable()
    exe.ParseFromString(p.executable)
    assert _pb.executable_names(p.executable) == (tuple(exe.input_names), tuple(exe.output_names), True)


@pytest.mark.parametrize("junk", [b"\xff\xff\xff", b"\x0a\x10abc", b"\x07"])
def test_malformed(junk):
    with pytest.raises(InvalidInput):
        _pb.fields(junk)
