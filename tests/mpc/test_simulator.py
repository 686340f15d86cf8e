"""The in-process SPU simulator harness (misuan.mpc.simulator)."""

import jax.numpy as jnp
import numpy as np
import pytest
from spu import libspu

from misuan.errors import ComputeError, ConfigError
from misuan.mpc.simulator import run_program, runtime_config, sim_program, simulate

RNG = np.random.default_rng(0)
X = RNG.normal(size=(3, 4)).astype(np.float32)
Y = RNG.normal(size=(3, 4)).astype(np.float32)


@pytest.mark.parametrize("protocol", ["ABY3", "CHEETAH"])
def test_simulate_matches_plaintext(protocol):
    out = simulate(lambda a, b: {"sum": a + b, "prod": [a * b]}, X, Y, protocol=protocol)
    np.testing.assert_allclose(out["sum"], X + Y, atol=1e-5)
    np.testing.assert_allclose(out["prod"][0], X * Y, atol=1e-4)


def test_public_argnums_make_inputs_public():
    secret = sim_program(jnp.multiply, X, Y)
    mixed = sim_program(jnp.multiply, X, Y, public_argnums=(1,))
    assert mixed.visibility == (libspu.Visibility.VIS_SECRET, libspu.Visibility.VIS_PUBLIC)
    assert "%arg1: tensor<3x4x!pphlo.secret<f32>>" in secret.executable.code.decode()
    assert "%arg1: tensor<3x4xf32>" in mixed.executable.code.decode()
    out = run_program(mixed, X, Y, config=runtime_config())
    np.testing.assert_allclose(out, X * Y, atol=1e-4)


def test_program_reuse_and_fraction_bits():
    prog = sim_program(lambda a: a * 3.0, X)
    coarse = run_program(prog, X, config=runtime_config(fxp_fraction_bits=6))
    fine, seconds = run_program(prog, X + 1, config=runtime_config(), with_run_seconds=True)
    assert 0 < seconds < 10
    np.testing.assert_allclose(fine, (X + 1) * 3, atol=1e-4)
    assert 1e-4 < np.abs(coarse - X * 3).max() < 0.1  # 6 fractional bits are visibly coarse


def test_runtime_config_enums_by_name_or_member():
    sigmoid = libspu.RuntimeConfig.SIGMOID_REAL
    cfg = runtime_config("CHEETAH", "FM64", 16, fxp_exp_mode="exp_pade", sigmoid_mode=sigmoid)
    assert cfg.protocol == libspu.ProtocolKind.CHEETAH
    assert cfg.fxp_fraction_bits == 16
    assert cfg.fxp_exp_mode == libspu.RuntimeConfig.ExpMode.EXP_PADE
    assert cfg.sigmoid_mode == libspu.RuntimeConfig.SigmoidMode.SIGMOID_REAL


@pytest.mark.parametrize(
    "kwargs",
    [
        {"protocol": "ABY4"},
        {"field": "FM63"},
        {"no_such_option": 1},
        {"fxp_exp_mode": "EXP_MAGIC"},
        {"fxp_exp_iters": "eight"},
    ],
)
def test_bad_config_is_a_config_error(kwargs):
    with pytest.raises(ConfigError):
        runtime_config(**kwargs)


def test_wrong_world_size_is_a_config_error():
    with pytest.raises(ConfigError, match="3 parties"):
        simulate(jnp.add, X, Y, world_size=2)
    with pytest.raises(ConfigError, match="inputs"):
        run_program(sim_program(jnp.add, X, Y), X, config=runtime_config())


def test_spu_runtime_errors_are_compute_errors():
    with pytest.raises(ComputeError, match="exp_a is not implemented"):
        simulate(jnp.exp, X, fxp_exp_mode="EXP_PRIME")  # ABY3 has no exp_prime kernel
