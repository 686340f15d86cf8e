from pathlib import Path

import pytest
import torch  # noqa: F401  (a test dependency: missing, the run fails, no silent skip)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    from tests.models.tinymodels import make_llama, save_hf

    return save_hf(tmp_path_factory.mktemp("tiny") / "tiny-llama", make_llama(seed=0, tie=False))


@pytest.fixture(scope="session")
def other_dir(tmp_path_factory) -> Path:
    from tests.models.tinymodels import make_llama, save_hf

    return save_hf(tmp_path_factory.mktemp("other") / "other-llama", make_llama(seed=5, tie=False))


@pytest.fixture(scope="session")
def hosted(client3, tiny_dir, tmp_path_factory):
    """The tiny model published once as 'tiny' by the admin principal."""
    from misuan.hosting import publish_model

    receipt = tmp_path_factory.mktemp("receipts") / "tiny.json"
    res = publish_model(client3, tiny_dir, "tiny", receipt=receipt)
    return res
