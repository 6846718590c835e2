import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402

from tests.tiny import gpt2_tokenizer, tiny_assets  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer():
    return gpt2_tokenizer()


@pytest.fixture(scope="session")
def accelerator():
    """The CPU, or the GPU when CORY_TEST_DEVICE=cuda (scripts/gpu_check.sh runs the core tests there)."""
    return Accelerator(cpu=os.environ.get("CORY_TEST_DEVICE", "cpu") == "cpu")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def assets(tmp_path_factory, tokenizer):
    """On disk: a tiny GPT-2 (`lm`), a tiny random sentiment classifier, 40 long reviews, 8 arithmetic problems."""
    return tiny_assets(tmp_path_factory.mktemp("assets"), tokenizer)
