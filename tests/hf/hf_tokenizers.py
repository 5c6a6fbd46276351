"""The tokenizers library's side of the BPE tokenizer tests (tests/data_tool/bpe_tokenizer_test.cpp).

  train STYLE TEXT DIR   trains a byte-level BPE tokenizer on TEXT with the
                         tokenizers library and saves DIR/tokenizer.json and
                         DIR/tokenizer_config.json. STYLE is
                           llama3: NFC, Llama 3's split regex, then ByteLevel
                                   without its own regex, ignore_merges
                           gpt2:   no normalizer, ByteLevel with GPT-2's regex
                                   and a prefix space
  encode DIR TEXT OUT    for each line of TEXT, and the whole text, as JSON
                         lines: {"ids": the ids AutoTokenizer.from_pretrained(DIR)
                         gives without special tokens added, "text": their decoding with special
                         tokens skipped, as undo's decoding table gives them no text}
"""
import json
import os
import sys

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>"]


def train(style, text_file, out):
    lines = open(text_file, encoding="utf-8").read().splitlines()
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


if __name__ == "__main__":
    {"train": train, "encode": encode}[sys.argv[1]](*sys.argv[2:])
