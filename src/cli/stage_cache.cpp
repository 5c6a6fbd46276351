#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "cache/cache_catalog.h"
#include "cli/stages.h"
#include "core/error.h"
#include "core/utf8.h"

namespace undo {

namespace {

constexpr const char* kUsage =
    "usage: undo cache ls [DIR]                      caches under DIR (default .): key, size, positions, created,\n"
    "                                                readers\n"
    "       undo cache verify FILE                   re-hash one cache (exit 0 when every row checks)\n"
    "       undo cache gc DIR --keep-referenced [--yes]  delete the caches under DIR that no run read and no\n"
    "                                                unfinished sweep job may need; asks first unless --yes\n";

std::string mib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / (1 << 20));
  return buf;
}

std::string date_of(int64_t t) {
  char buf[32];
  std::time_t tt = std::time_t(t);
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", std::gmtime(&tt));
  return buf;
}

int list(const std::string& root) {
  auto caches = find_caches(root);
  if (caches.empty()) std::cout << "no logit caches under " << root << "\n";
  for (auto& c : caches) {
    std::cout << escape_controls(c.path) << "\n";  // names and keys from files: shown escaped
    if (!c.problem.empty()) {
      std::cout << "  unusable: " << escape_controls(c.problem) << "\n  size " << mib(c.bytes) << "\n";
      continue;
    }
    std::cout << "  format " << c.key.format_name() << ", teacher " << c.key.teacher_sha256.substr(0, 12)
              << ", data " << escape_controls(c.key.stream) << " seed " << c.key.seed << ", key " << c.key.digest().substr(0, 20)
              << "\n  " << c.rows * uint64_t(c.key.window) << " positions, " << mib(c.bytes) << ", created "
              << date_of(c.created) << " UTC\n  read by " << c.read_by.size() << " run(s)";
    for (size_t i = 0; i < c.read_by.size() && i < 3; ++i) std::cout << (i ? ", " : ": ") << escape_controls(c.read_by[i]);
    if (c.read_by.size() > 3) std::cout << ", ...";
    if (!c.needed_by.empty()) std::cout << "; may be needed by " << c.needed_by.size() << " unfinished job(s)";
    std::cout << "\n";
  }
  return 0;
}

int verify(const std::string& file) {
  LogitCacheReader cache(file);
  cache.verify();
  std::cout << file << ": ok, " << cache.key().format_name() << ", " << cache.rows() << " rows, "
            << cache.part_files().size() << " part(s), content_sha256 " << cache.recorded_sha256() << "\n";
  return 0;
}

int collect_garbage(const std::string& root, bool yes) {
  std::vector<CacheEntry> doomed;
  uint64_t bytes = 0;
  for (auto& c : find_caches(root)) {
    // An unreadable cache is kept: it may be one being built (gc never races a build).
    if (!c.problem.empty() || !c.read_by.empty() || !c.needed_by.empty()) continue;
    bytes += c.bytes;
    doomed.push_back(std::move(c));
  }
  if (doomed.empty()) {
    std::cout << "nothing to delete: every cache under " << root << " is read or needed\n";
    return 0;
  }
  for (auto& c : doomed) std::cout << "  " << c.path << " (" << mib(c.bytes) << ")\n";
  std::cout << doomed.size() << " cache(s), " << mib(bytes) << ", that no run under " << root
            << " read and no unfinished job there may need\n";
  if (!yes) {
    std::cout << "delete them? [y/N] " << std::flush;
    std::string answer;
    if (!std::getline(std::cin, answer) || (answer != "y" && answer != "yes")) {
      std::cout << "nothing deleted\n";
      return 1;
    }
  }
  for (auto& c : doomed)
    for (auto& f : c.files) std::filesystem::remove(f);
  std::cout << "deleted " << doomed.size() << " cache(s), " << mib(bytes) << "\n";
  return 0;
}

}  // namespace

// `undo cache`: list, verify and delete logit caches (cache/cache_catalog.h).
int stage_cache(int argc, const char* const* argv) {
  std::vector<std::string> args(argv + std::min(argc, 1), argv + argc);  // after the stage's own name
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    (args.empty() ? std::cerr : std::cout) << kUsage;
    return args.empty() ? 2 : 0;
  }
  const std::string verb = args[0];
  if (verb == "ls") {
    UNDO_INPUT_CHECK(args.size() <= 2, "undo cache ls takes one directory\n", kUsage);
    return list(args.size() == 2 ? args[1] : ".");
  }
  if (verb == "verify") {
    UNDO_INPUT_CHECK(args.size() == 2, "undo cache verify takes one cache file\n", kUsage);
    return verify(args[1]);
  }
  if (verb == "gc") {
    std::string root;
    bool keep = false, yes = false;
    for (size_t i = 1; i < args.size(); ++i) {
      if (args[i] == "--keep-referenced") keep = true;
      else if (args[i] == "--yes") yes = true;
      else if (root.empty() && args[i].rfind("--", 0) != 0) root = args[i];
      else UNDO_INPUT_FAIL("undo cache gc: unknown argument '", args[i], "'\n", kUsage);
    }
    UNDO_INPUT_CHECK(!root.empty(), "undo cache gc needs a directory\n", kUsage);
    // The one policy there is, named so that a later one cannot be chosen by accident.
    UNDO_INPUT_CHECK(keep, "undo cache gc: say --keep-referenced (delete what nothing under ", root, " reads)\n",
                     kUsage);
    UNDO_INPUT_CHECK(std::filesystem::is_directory(root), "undo cache gc: '", root, "' is not a directory");
    return collect_garbage(root, yes);
  }
  UNDO_INPUT_FAIL("undo cache: unknown command '", verb, "'\n", kUsage);
}

}  // namespace undo
