import pytest
import torch  # noqa: F401  (a test dependency: missing, the run fails, no silent skip)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from tests.models.tinymodels import make_llama, save_hf

    return save_hf(tmp_path_factory.mktemp("inf") / "tiny", make_llama(seed=11, tie=False))


@pytest.fixture(scope="session")
def tiny_hosted(client3, tiny_model_dir):
    from misuan.hosting import publish_model

    publish_model(client3, tiny_model_dir, "chatty", receipt=False)
    return "chatty"


@pytest.fixture(scope="session")
def plain_tiny(tiny_model_dir):
    from misuan.inference.plain import PlainModel

    return PlainModel(tiny_model_dir)
