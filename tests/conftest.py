import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One thread per test process (and per script a test starts): the tests' models are tiny, where a second thread
# costs more in synchronisation than it gains (a learning test: 31 s on one thread, 79 s on two, busy 2-core
# EPYC); `make test` runs one pytest worker per core instead.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402

from tests.tiny import gpt2_tokenizer, tiny_assets  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


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
