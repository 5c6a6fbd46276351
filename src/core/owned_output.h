// The one rule for outputs that may already exist: undo replaces only what it
// wrote itself, and never an input. Every writer of a file or directory that a
// rerun, or a user, may have put there first goes through here (export,
// import, data prepare, report, a sweep's tables, the dashboard); run
// directories have their own rule (a run's identity, train/run_dir.h).
//
// How undo knows what it wrote: each directory it writes outputs into holds a
// ledger, `.undo-outputs`, naming every file it wrote there. A name in the
// ledger is undo's to replace (a rerun is asked for by the user, so a file
// edited in place since is replaced too); any other name is the user's and is
// never removed or overwritten. Names, not contents or inodes: a directory
// copied elsewhere (new inodes) or a damaged shard (new contents) stays undo's.
// A marker file alone is not proof (an `undo-export.json` or a manifest can be
// copied next to anything), which is what this replaced.
#pragma once
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace undo {

// The names that DIR's ledger records (empty when it has none).
std::vector<std::string> recorded_outputs(const std::string& dir);

// Refuses (InputError naming `key`, the output and the input) an output path
// that is one of `inputs`, or a directory that holds one (it would be replaced
// or moved). Paths are compared after resolving links, so another spelling of
// the same file is caught; an input that does not exist is skipped.
void check_output_is_not_an_input(const std::string& key, const std::string& out,
                                  const std::vector<std::string>& inputs);

// Writes the file PATH: `write(PATH)` must write it (atomically: every undo
// writer does). PATH may be absent, or a file undo recorded writing; anything
// else there is refused with InputError naming PATH and nothing is written.
// The name is recorded in its directory's ledger, under a lock on the directory
// so that concurrent writers (a sweep runner and `sweep status --watch`) keep
// each other's entries.
void write_output_file(const std::string& path, const std::function<void(const std::string&)>& write);
void write_output_file(const std::string& path, std::string_view bytes);

// A directory output, built whole in a fresh private directory beside DIR and
// then swapped in, so that a cut run never leaves half of one:
//   OutputDirectory out(dir);      // refuses a DIR that is not replaceable
//   write files into out.staging();
//   out.commit();                  // records them and swaps the new DIR in
// DIR may be absent, an empty directory, or an earlier output of undo (it has a
// ledger). On commit, the old DIR's recorded files are dropped and everything
// else in it (a user's notes, a subdirectory) is moved into the new one; a
// user's file with the name of a new output is refused before anything moves.
// The new DIR keeps the old one's mode (a new one gets the umask's). Destroyed
// uncommitted, the staging directory is removed and DIR is as it was.
class OutputDirectory {
 public:
  // `key` names the setting that chose DIR, for messages ("data.dir", "--out").
  OutputDirectory(std::string key, std::string dir);
  ~OutputDirectory();
  OutputDirectory(const OutputDirectory&) = delete;
  OutputDirectory& operator=(const OutputDirectory&) = delete;

  const std::string& staging() const { return staging_; }
  void commit();

 private:
  void check_replaceable() const;
  std::string key_, dir_, staging_;
  bool committed_ = false;
};

}  // namespace undo
