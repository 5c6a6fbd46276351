// A model's tokenizer.json, as `undo data prepare --data.tokenizer` reads it
// (prepare/bpe_tokenizer). An accepted tokenizer must be consistent: every id
// it gives any text lies inside its vocabulary, its end-of-text id too, and
// it has a piece for every id (what training and decoding index by).
#include <exception>

#include "core/error.h"
#include "fuzz_util.h"
#include "prepare/bpe_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = undo::fuzz::scratch_file(undo::fuzz::text(data, size), ".tokenizer.json");
  try {
    undo::BpeTokenizer tok(path, "</s>", -1);
    const int n = tok.vocab_size();
    UNDO_CHECK(n > 0 && tok.eos_id() >= 0 && tok.eos_id() < n, "an end-of-text id outside the vocabulary");
    UNDO_CHECK(tok.pieces().size() == size_t(n), "a vocabulary without a piece for every id");
    std::string every_byte;
    for (int b = 1; b < 256; ++b) every_byte += char(b);
    for (const std::string& text : {std::string("Hello, world! 123"), std::string("\xed\x95\x9c\xea\xb5\xad </s>"),
                                    every_byte})
      for (int id : tok.encode(text)) UNDO_CHECK(id >= 0 && id < n, "an id outside the vocabulary");
  } catch (const undo::InputError&) {
  }
  return 0;
}
