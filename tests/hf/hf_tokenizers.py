"""The tokenizers library's side of the BPE tokenizer tests (tests/data_tool/bpe_tokenizer_test.cpp).

  train STYLE TEXT DIR   trains a byte-level BPE tokenizer on TEXT with the
                         tokenizers library and saves DIR/tokenizer.json and
                         DIR/tokenizer_config.json. STYLE is
                           llama3: NFC, Llama 3's split regex, then ByteLevel
                                   without its own regex, ignore_merges
                           gpt2:   no normalizer, ByteLevel with GPT-2's regex
                                   and a prefix space
                           llama2: sentencepiece-style, as Llama 2's file: the
                                   normalizer Prepend "▁" + Replace " " by "▁",
                                   byte fallback, fused unknowns, <s> first
                           llama2-metaspace: the same model as transformers
                                   now writes it: a Metaspace pre-tokenizer
                                   (prepend_scheme first) and no normalizer
                           gemma:  sentencepiece-style, as Gemma's file:
                                   Replace " " by "▁" (no prefix), <bos> first
  cases DIR TEXT OUT     a few hundred strings made from TEXT's lines (Unicode,
                         whitespace runs, digits, the special tokens' text,
                         Korean), each as a JSON line of the tokenizers
                         library's own Tokenizer.from_file(DIR/tokenizer.json):
                         {"text", "ids" (no special tokens), "decoded" (special
                         tokens skipped), "first" (the first id with them)}
  encode DIR TEXT OUT    for each line of TEXT, and the whole text, as JSON
                         lines: {"ids": the ids AutoTokenizer.from_pretrained(DIR)
                         gives without special tokens added, "text": their decoding with special
                         tokens skipped, as undo's decoding table gives them no text}
"""
import json
import os
import sys

import random

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>"]
SPM_SPECIAL = {"llama2": ["<unk>", "<s>", "</s>"], "gemma": ["<pad>", "<eos>", "<bos>", "<unk>"]}
BYTES = [f"<0x{b:02X}>" for b in range(256)]


def train_sentencepiece_style(style, lines, out):
    """A BPE over code points with "▁" for a space and <0xXX> byte tokens, laid out as the family's own file."""
    family = "gemma" if style == "gemma" else "llama2"
    special = SPM_SPECIAL[family]
    bos, eos = ("<bos>", "<eos>") if family == "gemma" else ("<s>", "</s>")
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    space = normalizers.Replace(" ", "\u2581")
    tok.normalizer = space if family == "gemma" else normalizers.Sequence([normalizers.Prepend("\u2581"), space])
    # Trained on words, as sentencepiece is (no merge across a space), then laid out as the family's file.
    tok.pre_tokenizer = pre_tokenizers.Split("\u2581", behavior="merged_with_next")
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=special + BYTES, limit_alphabet=90)
    tok.train_from_iterator(lines * 3 + [l.upper() for l in lines], trainer=trainer)
    tok.pre_tokenizer = None
    if style == "llama2-metaspace":
        tok.normalizer = None
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    steps = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    tok.decoder = decoders.Sequence(steps + ([] if family == "gemma" else [decoders.Strip(" ", 1, 0)]))
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))])
    os.makedirs(out, exist_ok=True)
    doc = json.loads(tok.to_str())
    # The byte tokens are the model's vocabulary, not added tokens (as in the families' files).
    doc["added_tokens"] = [a for a in doc["added_tokens"] if a["content"] not in BYTES]
    json.dump(doc, open(f"{out}/tokenizer.json", "w"), ensure_ascii=False)
    json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": eos, "bos_token": bos},
              open(f"{out}/tokenizer_config.json", "w"))


def train(style, text_file, out):
    lines = open(text_file, encoding="utf-8").read().splitlines()
    if style in ("llama2", "llama2-metaspace", "gemma"):
        return train_sentencepiece_style(style, lines, out)
    if style == "llama3":
        tok = Tokenizer(models.BPE(ignore_merges=True))
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    # Trained on the text repeated with variations, so that merges span both scripts.
    tok.train_from_iterator(lines * 3 + [l.upper() for l in lines], trainer=trainer)
    os.makedirs(out, exist_ok=True)
    tok.save(f"{out}/tokenizer.json")
    json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|end_of_text|>",
               "bos_token": "<|begin_of_text|>"}, open(f"{out}/tokenizer_config.json", "w"))


def encode(model_dir, text_file, out):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    text = open(text_file, encoding="utf-8").read()
    with open(out, "w") as f:
        for piece in text.splitlines() + [text]:
            ids = tok.encode(piece, add_special_tokens=False)
            f.write(json.dumps({"ids": ids, "text": tok.decode(ids, skip_special_tokens=True)}) + "\n")


def case_strings(lines, special):
    """Deterministic strings that stress what tokenizers differ on."""
    rng = random.Random(0)
    words = [w for l in lines for w in l.split()]
    spaces = [" ", "  ", "   ", "\t", "\n", " \n ", "\n\n", "\u3000", " \t "]
    extra = ["12345", "3.14159", "2026-12-05", "007", "1,000,000", "\U0001F642", "e\u0301", "\u00e9", "na\u00efve",
             "\u00c5ngstr\u00f6m", "\u4e2d\u6587", "\u0645\u0631\u062d\u0628\u0627", "\U0001D400", "\u00a0", "#!",
             "don't", "I'M", "<unk>"] + special
    out = list(lines) + ["", " ", "  ", "x", " x", "x ", "  leading", "trailing  ", "\n", "a\n\nb"]
    for i in range(320):
        n = rng.randint(1, 6)
        parts = [rng.choice(words + extra) if rng.random() < 0.8 else rng.choice(extra) for _ in range(n)]
        text = ""
        for p in parts:
            text += p + (rng.choice(spaces) if rng.random() < 0.4 else " ")
        if rng.random() < 0.3:
            text = rng.choice(spaces) + text
        out.append(text if rng.random() < 0.5 else text.rstrip())
    return out


def cases(model_dir, text_file, out):
    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    special = [a.content for a in tok.get_added_tokens_decoder().values()]
    lines = open(text_file, encoding="utf-8").read().splitlines()
    with open(out, "w") as f:
        for text in case_strings(lines, special):
            ids = tok.encode(text, add_special_tokens=False).ids
            with_special = tok.encode(text, add_special_tokens=True).ids
            f.write(json.dumps({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=True),
                                "first": with_special[0] if with_special else None}) + "\n")


if __name__ == "__main__":
    {"train": train, "encode": encode, "cases": cases}[sys.argv[1]](*sys.argv[2:])
