// The INI and command-line parser. The first byte chooses: an INI file given
// with --config, or command-line words separated by NUL bytes.
#include <exception>
#include <vector>

#include "core/config.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string rest = undo::fuzz::text(data + 1, size - 1);
  std::vector<std::string> words;
  if (data[0] & 1) {
    words = {"--config", undo::fuzz::scratch_file(rest, ".ini")};
  } else {
    size_t at = 0;
    while (at <= rest.size()) {
      size_t nul = rest.find('\0', at);
      words.push_back(rest.substr(at, nul == std::string::npos ? std::string::npos : nul - at));
      if (nul == std::string::npos) break;
      at = nul + 1;
    }
  }
  std::vector<const char*> argv = {"pretrain"};
  for (auto& w : words) argv.push_back(w.c_str());
  undo::Config cfg;
  try {
    undo::parse_config(int(argv.size()), argv.data(), "pretrain", cfg);
  } catch (const std::exception&) {
  }
  return 0;
}
