import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("IBTPO_DATA_DIR", REPO.parent / "shared" / "data"))

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tok():
    from ibtpo.model.tokenizer import build_char_tokenizer

    return build_char_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tok):
    from ibtpo.model.tiny import build_tiny_llama

    return build_tiny_llama(tok, n_layer=1, d_model=32, n_head=2, d_mlp=64, max_positions=128, seed=0)
