"""Shared fixtures: a tiny WordPiece tokenizer and tiny pre-trained BERT folders made on the spot.

Nothing here reads ../shared/data; integration tests that do use the ``shared_data`` fixture,
which skips when the folder is absent.
"""
import os
import string
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = ROOT.parent / "shared" / "data"

WORDS = (
    "the a an is are was of in on to and what who where when which how why paris france capital "
    "city cat dog sat mat good bad movie film great not very it this that he she they man woman "
    "river year first one two three"
).split()


def tiny_vocab():
    """Specials, single characters, ##-continuations and a few whole words: no text needs [UNK]."""
    toks = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    toks += chars + ["##" + c for c in string.ascii_lowercase + string.digits] + WORDS
    seen, out = set(), []
    for t in toks:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return {t: i for i, t in enumerate(out)}


def make_tokenizer():
    from transformers import BertTokenizer

    tok = BertTokenizer(vocab=tiny_vocab(), do_lower_case=True)
    tok.model_max_length = 128
    return tok


def tiny_config(num_layers=2, hidden=32, heads=2, intermediate=64, vocab_size=None, **kw):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size or len(tiny_vocab()),
        hidden_size=hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=128,
        **kw,
    )


def save_pretrained_bert(path, seed=0, **cfg):
    """Write a tiny pre-trained BertModel (with pooler) and its tokenizer to ``path``."""
    from transformers import BertModel

    torch.manual_seed(seed)
    model = BertModel(tiny_config(**cfg))
    model.save_pretrained(path)
    make_tokenizer().save_pretrained(path)
    return Path(path)


@pytest.fixture(autouse=True, scope="session")
def record_index(tmp_path_factory):
    """Mask provenance records go to a per-session index, never to the user's cache."""
    old = os.environ.get("BERT_TICKETS_CACHE")
    os.environ["BERT_TICKETS_CACHE"] = str(tmp_path_factory.mktemp("bert_tickets_cache"))
    yield Path(os.environ["BERT_TICKETS_CACHE"])
    if old is None:
        del os.environ["BERT_TICKETS_CACHE"]
    else:
        os.environ["BERT_TICKETS_CACHE"] = old


@pytest.fixture(autouse=True)
def one_thread(request):
    """Tiny models gain nothing from threads, and on a busy 2-core machine they cost up to 5x;
    integration tests (MiniLM) keep every thread."""
    if request.node.get_closest_marker("integration"):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """A folder usable as --model_name_or_path: 2 layers, hidden 32 (15 prunable matrices)."""
    return save_pretrained_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def pytest_collection_modifyitems(config, items):
    """Integration runs (MiniLM on ../shared/data) are slow too: ``-m "not slow"`` leaves them out."""
    for item in items:
        if item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.slow)
