// A question file's tokens (data/mcq.h), made by undo-data, which has the
// tokenizer, for the evaluator, which has the model: each context encoded
// alone and each choice as what "context + continuation" adds to it, the way
// lm-evaluation-harness splits a context and a continuation for a causal
// model (the whole encoded, then cut at the context's length), so that undo
// and the harness score the same tokens.
#pragma once
#include <string>
#include <vector>

#include "core/config.h"
#include "data/mcq.h"
#include "prepare/text_tokenizer.h"

namespace undo {

// InputError naming the file, line and choice where a choice adds no tokens.
std::vector<McqTokens> tokenize_mcq(const std::vector<McqQuestion>& questions, const TextTokenizer& tok,
                                    const std::string& file);

// The question metrics of a preparation (data.forget_mcq, data.retain_mcq;
// data/mcq.h): checked before anything is written (each file reads, and none
// is also a training corpus: an evaluation never scores what a model trained
// on), then each split by `seed` into validation and test halves (at least
// one question each) and written, tokenized, under `out`.
void check_mcq_metrics(const DataConfig& d);
void write_mcq_metrics(const DataConfig& d, uint64_t seed, const TextTokenizer& tok, const std::string& out);

// `undo data mcq --data.dir DIR --questions FILE --out TOKENS`: FILE's tokens
// by DIR's tokenizer, written to TOKENS (what `undo eval --mcq` runs).
void tokenize_mcq_file(const std::string& data_dir, const std::string& questions, const std::string& out);

}  // namespace undo
