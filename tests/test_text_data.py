"""MLM text data (blocks, line-by-line, cache), corruption rates and deterministic MLM evaluation."""
import math

import pytest
import torch
from conftest import tiny_config, tiny_vocab

from utils.errors import UserError
from utils.text import MLMCollator, evaluate_mlm, load_text_dataset, mask_tokens, resolve_block_size

TEXT = (
    "The cat sat on the mat.\n"
    "\n"
    "Paris is the capital of France, and it is a great city!\n"
    "   \n"
    "What a good film: one, two, three years of the river.\n"
    "Who was the first man? She was not very bad; they sat.\n"
)


def ids_of(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


# ---------------------------------------------------------------- blocks (legacy TextDataset)

def test_blocks_exact_count_and_content(text_file, tokenizer):
    all_ids = ids_of(tokenizer, TEXT)
    assert len(all_ids) == 52  # 52 word pieces: 5 blocks of 10, tail of 2 dropped
    ds = load_text_dataset(text_file, tokenizer, block_size=12)
    assert ds.column_names == ["input_ids"]
    assert len(ds) == len(all_ids) // 10 == 5
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    for i, row in enumerate(ds["input_ids"]):
        assert row == [cls] + all_ids[10 * i : 10 * (i + 1)] + [sep]
    assert ds[1]["input_ids"][1] == all_ids[10]  # second block starts where the first ended
    assert ds[4]["input_ids"][-2] == all_ids[49]  # the last 2 ids (the tail) are dropped


def test_blocks_equal_whole_string_tokenisation_with_crlf(tmp_path, tokenizer):
    path = tmp_path / "crlf.txt"
    path.write_bytes(TEXT.replace("\n", "\r\n").encode("utf-8"))
    ds = load_text_dataset(path, tokenizer, block_size=5)
    flat = [t for row in ds["input_ids"] for t in row[1:-1]]
    whole = ids_of(tokenizer, TEXT)
    assert len(ds) == 17 and flat == whole[:51]


def test_line_by_line_rows_and_truncation(text_file, tokenizer):
    ds = load_text_dataset(text_file, tokenizer, block_size=8, line_by_line=True)
    lines = [ln for ln in TEXT.splitlines() if ln.strip()]
    assert len(ds) == 4
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    for row, line in zip(ds["input_ids"], lines):
        ids = ids_of(tokenizer, line)
        assert row == [cls] + ids[:6] + [sep]
    # a block size larger than every line: nothing truncated, lengths differ
    ds = load_text_dataset(text_file, tokenizer, block_size=100, line_by_line=True)
    assert [len(r) for r in ds["input_ids"]] == [len(ids_of(tokenizer, ln)) + 2 for ln in lines]
    assert [len(r) for r in ds["input_ids"]] == [9, 16, 18, 17]


# ---------------------------------------------------------------- cache

def test_cache_reused_rebuilt_and_keyed(text_file, tokenizer, tmp_path):
    first = load_text_dataset(text_file, tokenizer, block_size=12)
    cache_root = text_file.parent / ".cache"
    (folder,) = [p for p in cache_root.iterdir()]
    assert folder.name.startswith("train.txt.blocks12_")
    assert not [p for p in cache_root.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    marker = folder / "marker"
    marker.write_text("x")
    again = load_text_dataset(text_file, tokenizer, block_size=12)
    assert again.cache_files and again.cache_files[0]["filename"].startswith(str(folder))
    assert again["input_ids"] == first["input_ids"] and marker.exists()
    rebuilt = load_text_dataset(text_file, tokenizer, block_size=12, overwrite_cache=True)
    assert rebuilt["input_ids"] == first["input_ids"] and not marker.exists()
    assert sorted(p.name for p in cache_root.iterdir()) == [folder.name]
    # other parameters, another tokenizer vocabulary, or a changed file: new cache entries
    load_text_dataset(text_file, tokenizer, block_size=10)
    load_text_dataset(text_file, tokenizer, block_size=12, line_by_line=True)
    vocab = tiny_vocab()
    vocab["[unused]"] = len(vocab)
    from transformers import BertTokenizer
    load_text_dataset(text_file, BertTokenizer(vocab=vocab, do_lower_case=True), block_size=12)
    assert len(list(cache_root.iterdir())) == 4
    text_file.write_text(TEXT * 2, encoding="utf-8")
    assert len(load_text_dataset(text_file, tokenizer, block_size=12)) == 104 // 10
    # explicit cache_dir: nothing more next to the data file
    other = tmp_path / "elsewhere"
    load_text_dataset(text_file, tokenizer, block_size=12, cache_dir=other)
    assert len(list(other.iterdir())) == 1 and len(list(cache_root.iterdir())) == 5


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize(
    "content, message",
    [
        (None, "text file not found"),
        (b"", "file is empty"),
        (b"  \n\t\n  \n", "file is empty (only whitespace)"),
        (b"the cat\x00sat", "not a text file (contains NUL bytes)"),
        (b"the cat \xff\xfe sat", "not valid UTF-8 text (byte 8)"),
        (b"the cat sat", "has 3 tokens, fewer than one block of 10 (--block_size 12"),
    ],
)
def test_file_errors_name_the_file(tmp_path, tokenizer, content, message):
    path = tmp_path / "bad.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError) as err:
        load_text_dataset(path, tokenizer, block_size=12)
    assert "bad.txt" in str(err.value) and message in str(err.value)


def test_whitespace_only_file_is_empty_in_line_mode(tmp_path, tokenizer):
    path = tmp_path / "blank.txt"
    path.write_text("\n \n\n")
    with pytest.raises(UserError, match=r"blank\.txt: file is empty"):
        load_text_dataset(path, tokenizer, block_size=12, line_by_line=True)


def test_resolve_block_size(tokenizer):
    assert tokenizer.model_max_length == 128
    assert resolve_block_size(None, tokenizer, 512) == 128
    assert resolve_block_size(-1, tokenizer, 64) == 64
    assert resolve_block_size(0, tokenizer, 512) == 128
    assert resolve_block_size(100, tokenizer, 512) == 100
    assert resolve_block_size(3, tokenizer, 512) == 3
    with pytest.raises(UserError, match=r"^--block_size 1024 is above the model's maximum of 512$"):
        resolve_block_size(1024, tokenizer, 512)
    with pytest.raises(UserError, match=r"--block_size 2 is too small"):
        resolve_block_size(2, tokenizer, 512)


# ---------------------------------------------------------------- corruption

def test_mask_tokens_rates_and_invariants(tokenizer):
    gen = torch.Generator().manual_seed(123)
    ids = torch.randint(5, len(tokenizer), (200, 128), generator=gen)
    ids[:, 0], ids[:, -1] = tokenizer.cls_token_id, tokenizer.sep_token_id
    ids[::2, 100:] = tokenizer.pad_token_id  # half the rows padded at the end
    ids[:, 50] = tokenizer.unk_token_id
    original = ids.clone()
    corrupted, labels = mask_tokens(ids, tokenizer, 0.15, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ids, original)  # input untouched
    selected = labels.ne(-100)
    special = torch.isin(original, torch.tensor(tokenizer.all_special_ids))
    assert not selected[special].any()
    assert torch.equal(labels[selected], original[selected])
    assert torch.equal(corrupted[~selected], original[~selected])  # only selected positions change
    eligible = int((~special).sum())
    assert abs(int(selected.sum()) / eligible - 0.15) < 0.01
    n = int(selected.sum())
    masked = (corrupted.eq(tokenizer.mask_token_id) & selected).sum() / n
    unchanged = (corrupted.eq(original) & selected).sum() / n
    random = (corrupted.ne(original) & corrupted.ne(tokenizer.mask_token_id) & selected).sum() / n
    assert abs(masked - 0.80) < 0.02 and abs(unchanged - 0.10) < 0.02 and abs(random - 0.10) < 0.02
    # the same generator seed gives the same corruption; the global RNG differs call to call
    again = mask_tokens(original, tokenizer, 0.15, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0], corrupted) and torch.equal(again[1], labels)
    a, b = mask_tokens(original, tokenizer), mask_tokens(original, tokenizer)
    assert not torch.equal(a[1], b[1])


def test_collator_pads_and_masks(tokenizer):
    collate = MLMCollator(tokenizer, mlm_probability=1.0, generator=torch.Generator().manual_seed(0))
    batch = collate([{"input_ids": [2, 10, 11, 3]}, {"input_ids": [2, 12, 3]}])
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["input_ids"][1, 3] == tokenizer.pad_token_id
    assert batch["labels"].tolist() == [[-100, 10, 11, -100], [-100, 12, -100, -100]]
    assert batch["input_ids"][:, 0].tolist() == [2, 2] and batch["input_ids"].dtype == torch.long


# ---------------------------------------------------------------- evaluation

def test_evaluate_mlm_seeded_repeats_and_global_rng_differs(text_file, tokenizer):
    from transformers import BertForMaskedLM

    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_config())
    model.train()
    ds = load_text_dataset(text_file, tokenizer, block_size=12)
    cpu = torch.device("cpu")
    first = evaluate_mlm(model, ds, tokenizer, batch_size=4, device=cpu)
    second = evaluate_mlm(model, ds, tokenizer, batch_size=4, device=cpu)
    assert first == second and set(first) == {"perplexity", "acc", "eval_loss"}
    assert all(type(v) is float for v in first.values())
    assert first["perplexity"] == math.exp(first["eval_loss"])
    assert 0.0 <= first["acc"] <= 100.0 and model.training  # train mode restored
    assert evaluate_mlm(model, ds, tokenizer, 4, cpu, seed=1) != first
    torch.manual_seed(5)
    unseeded = [evaluate_mlm(model, ds, tokenizer, 4, cpu, seed=None) for _ in range(2)]
    assert unseeded[0] != unseeded[1]


def test_evaluate_mlm_counts_accuracy_over_tokens(tokenizer):
    """A model that always predicts the label scores 100 %; loss is the mean of batch losses."""

    class Oracle(torch.nn.Module):
        def forward(self, input_ids, attention_mask, labels):
            logits = torch.zeros(*labels.shape, len(tokenizer))
            logits.scatter_(-1, labels.clamp(min=0).unsqueeze(-1), 1.0)
            loss = torch.tensor(float(labels.shape[0]))  # batch sizes 2 and 1 → mean 1.5
            return type("Out", (), {"loss": loss, "logits": logits})()

    rows = [{"input_ids": [2] + list(range(10, 40)) + [3]} for _ in range(3)]
    out = evaluate_mlm(Oracle(), rows, tokenizer, batch_size=2, device=torch.device("cpu"))
    assert out["acc"] == 100.0 and out["eval_loss"] == 1.5 and out["perplexity"] == math.exp(1.5)


# ---------------------------------------------------------------- real data

@pytest.mark.integration
def test_wikitext_valid_blocks(shared_data, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(shared_data / "models/all-MiniLM-L6-v2")
    path = shared_data / "wikitext-2/valid.txt"
    total = len(tok(path.read_text(encoding="utf-8"), add_special_tokens=False, verbose=False)["input_ids"])
    ds = load_text_dataset(path, tok, block_size=128, cache_dir=tmp_path)
    assert len(ds) == total // 126 > 1000
    flat = [t for row in ds["input_ids"] for t in row[1:-1]]
    assert len(flat) == len(ds) * 126
    rows = ds["input_ids"]
    assert all(len(r) == 128 and r[0] == tok.cls_token_id and r[-1] == tok.sep_token_id for r in rows)
    assert not (path.parent / ".cache").exists()
