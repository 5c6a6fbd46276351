"""The real transformers library's side of the Hugging Face tests (tests/hf_test.cpp).

  make FAMILY DIR [TOKENIZER_DIR]
                     a small random-weight model of FAMILY (llama, qwen2, gemma,
                     gemma2) saved with save_pretrained into DIR, with the tokens
                     DIR/tokens.safetensors and transformers' fp32 logits on them
                     in DIR/reference.safetensors; with TOKENIZER_DIR, the model
                     has that tokenizer's vocabulary and its files beside it
  logits DIR TOKENS OUT
                     loads DIR with AutoModelForCausalLM (as a user would), runs
                     it on TOKENS' "tokens" and writes the logits to OUT
  prompts DIR EVAL_PROMPTS
                     AutoTokenizer.from_pretrained(DIR) must give each prompt of
                     a prepared eval_prompts.jsonl the ids undo-data gave it

Each family's model turns on what sets it apart (grouped-query attention,
untied heads, llama3 rotary scaling, Qwen2's biases, Gemma's head size,
Gemma-2's soft-caps, query scalar and a window shorter than the tokens), and
its weights are drawn wide enough that every norm and cap matters.
"""
import sys

import torch
import transformers as T
from safetensors.torch import load_file, save_file

COMMON = dict(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
FAMILIES = {
    "llama": (T.LlamaConfig, dict(tie_word_embeddings=False, rope_parameters=dict(
        rope_type="llama3", rope_theta=5000.0, factor=4.0, low_freq_factor=1.0, high_freq_factor=2.0,
        original_max_position_embeddings=16))),
    "qwen2": (T.Qwen2Config, dict(tie_word_embeddings=False)),
    "gemma": (T.GemmaConfig, dict(head_dim=16, hidden_act="gelu_pytorch_tanh")),
    "gemma2": (T.Gemma2Config, dict(head_dim=16, sliding_window=4, attn_logit_softcapping=3.0,
                                    final_logit_softcapping=5.0, query_pre_attn_scalar=24)),
}


def make(family, out, tokenizer_dir=None):
    torch.manual_seed(0)
    cls, extra = FAMILIES[family]
    sizes = dict(COMMON)
    if tokenizer_dir:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(tokenizer_dir)
        sizes["vocab_size"] = len(tok)
        extra = dict(extra, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    config = cls(**sizes, **extra)
    model = T.AutoModelForCausalLM.from_config(config).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0.0, 0.3 if p.dim() == 1 else 0.2)
    # Qwen2's weights go into shards listed by model.safetensors.index.json, as large models' do.
    model.save_pretrained(out, max_shard_size="40KB" if family == "qwen2" else "5GB")
    if tokenizer_dir:
        tok.save_pretrained(out)
    tokens = torch.randint(0, sizes["vocab_size"], (2, 12), generator=torch.Generator().manual_seed(1))
    save_file({"tokens": tokens}, f"{out}/tokens.safetensors")
    save_file({"logits": run(model, tokens)}, f"{out}/reference.safetensors")


def run(model, tokens):
    with torch.no_grad():
        return model(input_ids=tokens).logits.float().contiguous()


def logits(model_dir, tokens_file, out):
    model = T.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    save_file({"logits": run(model, load_file(tokens_file)["tokens"])}, out)


def prompts(model_dir, eval_prompts):
    import json
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    n = 0
    for line in open(eval_prompts, encoding="utf-8"):
        p = json.loads(line)
        want = [int(i) for i in p["ids"].split()]
        got = tok.encode(p["prompt"], add_special_tokens=False)
        if got != want:
            sys.exit(f"{p['prompt']!r}: transformers {got}, undo-data {want}")
        n += 1
    print(f"{n} prompts tokenized alike")


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(*sys.argv[2:])
    elif sys.argv[1] == "logits":
        logits(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "prompts":
        prompts(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
