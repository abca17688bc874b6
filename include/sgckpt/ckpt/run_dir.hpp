// sgckpt/ckpt/run_dir.hpp: SuperGradients' run directories and resume resolution.
//
// Layout (SG >= 3.2): <ckpt_root_dir>/<experiment_name>/RUN_YYYYMMDD_HHMMSS_ffffff/, the run
// id being the local start time with microseconds (docs/supergradients.md §2). This header answers
// "where does a run live, which run is the latest one, and which directory and file does a
// resume use" (docs/supergradients.md §2) with SG's semantics and these deliberate differences:
//
//   - Looking something up never creates a directory (SG's get_checkpoints_dir_path does,
//     docs/supergradients.md §2). Only create_run_dir() creates, and the CheckpointManager calls it when a
//     run starts.
//   - Run ids are unique even when two runs start in the same microsecond, in one process or
//     in two: the directory is made with mkdir(2), which fails with EEXIST for the loser, who
//     takes the next microsecond.
//   - A run directory name must have the exact RUN_ form (SG accepts any "RUN_" prefix): a
//     stray "RUN_notes" folder would otherwise sort after every real run and be "latest".
//     An explicit run_id may still name any existing directory, as in SG.
//   - `resume` with no resumable run is an Error naming the directory searched. SG silently
//     falls back to the pre-3.2 layout (<root>/<experiment>/ckpt_latest.pth); users who have
//     such files pass them as resume_path instead.
//   - Every error names the path it looked for and the directory it searched (SG's "This
//     should be an absolute path" message, issue #1604, misled users).
//   - evaluate_checkpoint_path() returns exactly the file asked for (SG ignores ckpt_name
//     and evaluates random weights when the file is missing, docs/supergradients.md §7).
//   - A run (or experiment) directory must lie inside the checkpoint root once its symbolic
//     links are resolved: a RUN_ link to elsewhere would have a resume write checkpoints and
//     delete "stale temporaries" there. Latest-run selection skips such a link with a
//     warning; naming it (run_id) is an Error. Links that stay inside the root are fine.
//   - A checkpoint or recipe name that is not a regular file (a FIFO, a device) is an Error
//     saying what it is; opening a FIFO would otherwise block forever.
//
// Nothing here prints: warnings are returned in the results, log text in log_line().
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "sgckpt/core/error.hpp"
#include "sgckpt/io/file.hpp"

namespace sgckpt {

// The file whose presence makes a run resumable (SG hard-codes it, whatever ckpt_name is).
inline constexpr std::string_view kLatestCheckpointName = "ckpt_latest.pth";
// The recipe a run was started with, stored verbatim (SG keeps a frozen .hydra/ copy).
inline constexpr std::string_view kRecipeFileName = "recipe.yaml";

namespace detail {

inline Error path_error(ErrorKind kind, const std::string& message, const std::filesystem::path& p) {
  ErrorContext c;
  c.file = p.string();
  return Error(kind, message, c);
}

inline bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// One path component that cannot escape its parent: a run id or experiment name comes from
// users and command lines, and "../x" must not address another tree.
inline void check_component(std::string_view name, std::string_view what) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string_view::npos ||
      name.find('\0') != std::string_view::npos)
    throw Error("invalid " + std::string(what) + " \"" + std::string(name) +
                "\": it must be a single directory name (no '/', not '.' or '..')");
}

// Microseconds since the Unix epoch -> "RUN_YYYYMMDD_HHMMSS_ffffff" in local time (SG uses
// datetime.now(), i.e. local time).
inline std::string format_run_id(std::int64_t unix_us) {
  const std::time_t secs = static_cast<std::time_t>(unix_us / 1'000'000);
  const auto micros = static_cast<long>(unix_us % 1'000'000);
  std::tm tm{};
  if (::localtime_r(&secs, &tm) == nullptr)
    throw Error(ErrorKind::Io, "cannot convert the current time to local time");
  char buf[64];
  const int n = std::snprintf(buf, sizeof buf, "RUN_%04d%02d%02d_%02d%02d%02d_%06ld", tm.tm_year + 1900,
                              tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, micros);
  return std::string(buf, static_cast<std::size_t>(n));
}

inline std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The next run time this process may use: never earlier than `t` and always after every
// time handed out before, so one process never proposes the same id twice even when the
// clock does not move (or moves back) between calls.
inline std::int64_t claim_run_time(std::int64_t t) {
  static std::atomic<std::int64_t> last{0};
  std::int64_t prev = last.load();
  std::int64_t next;
  do next = std::max(t, prev + 1);
  while (!last.compare_exchange_weak(prev, next));
  return next;
}

// mkdir(2), so that exactly one creator wins a name. Returns false on EEXIST.
inline bool make_directory(const std::filesystem::path& p) {
  if (::mkdir(p.c_str(), 0777) == 0) return true;
  if (errno == EEXIST) return false;
  throw detail::fs::file_error("cannot create the run directory", p, errno);
}

// The new entry in `dir` survives a power loss only once `dir` itself is synced.
inline void sync_directory_best_effort(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

inline bool is_regular_file(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::is_regular_file(p, ec);
}

inline bool is_directory(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::is_directory(p, ec);
}

// Whether canonical path `p` is `root` or below it (component-wise: "/a/bc" is not in "/a/b").
inline bool is_within(const std::filesystem::path& p, const std::filesystem::path& root) {
  auto i = p.begin();
  for (auto r = root.begin(); r != root.end(); ++r, ++i)
    if (i == p.end() || *i != *r) return false;
  return true;
}

// The first symbolic link on the way from `root` down to `dir`, described for a message.
inline std::string first_link_below(const std::filesystem::path& root, const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::path cur = root;
  for (const auto& part : dir.lexically_relative(root)) {
    cur /= part;
    if (std::filesystem::is_symlink(std::filesystem::symlink_status(cur, ec))) {
      const std::filesystem::path target = std::filesystem::read_symlink(cur, ec);
      return "\"" + cur.string() + "\" is a symbolic link to \"" + target.string() + "\"";
    }
  }
  return "a symbolic link on the way resolves elsewhere";
}

// Refuses a directory that, once its symbolic links are resolved, lies outside `root`: a
// RUN_ (or experiment) directory that is a link out of the checkpoint root would make a
// resume write checkpoints, and remove "stale temporaries", wherever the link points. Links
// that stay inside the root are fine. A directory that does not exist is left to the caller.
inline void require_inside_root(const std::filesystem::path& dir, const std::filesystem::path& root,
                                std::string_view what) {
  std::error_code ec;
  const std::filesystem::path real_dir = std::filesystem::canonical(dir, ec);
  if (ec) return;
  const std::filesystem::path real_root = std::filesystem::canonical(root.empty() ? "." : root, ec);
  if (ec) throw path_error(ErrorKind::Io, "cannot resolve the checkpoint root: " + ec.message(), root);
  if (is_within(real_dir, real_root)) return;
  throw path_error(ErrorKind::Refused,
                   "refusing to use the " + std::string(what) + " \"" + dir.string() +
                       "\": it resolves to \"" + real_dir.string() + "\", outside the checkpoint root \"" +
                       real_root.string() + "\" (" + first_link_below(root.empty() ? "." : root, dir) +
                       "); checkpoints are never written or deleted through such a link",
                   dir);
}

}  // namespace detail

// ---- Run ids and directories ---------------------------------------------------------------

// "RUN_YYYYMMDD_HHMMSS_ffffff" exactly: the form SG generates and that sorts chronologically.
inline bool is_run_dir_name(std::string_view name) {
  // RUN_ + 8 + _ + 6 + _ + 6
  if (name.size() != 4 + 8 + 1 + 6 + 1 + 6 || name.substr(0, 4) != "RUN_") return false;
  return detail::all_digits(name.substr(4, 8)) && name[12] == '_' && detail::all_digits(name.substr(13, 6)) &&
         name[19] == '_' && detail::all_digits(name.substr(20, 6));
}

// The run id for a time (local time, microseconds). Does not reserve anything.
inline std::string make_run_id(std::chrono::system_clock::time_point t) {
  return detail::format_run_id(
      std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count());
}

// <root>/<experiment>, checked to be a plain name. Never touches the file system.
inline std::filesystem::path experiment_dir(const std::filesystem::path& ckpt_root_dir,
                                            std::string_view experiment_name) {
  if (ckpt_root_dir.empty()) throw Error("ckpt_root_dir is empty: set the checkpoints root directory");
  detail::check_component(experiment_name, "experiment_name");
  return ckpt_root_dir / std::string(experiment_name);
}

// The path a new run starting now would get. Nothing is created; within this process each
// call proposes a different (later) name. create_run_dir(path) makes it real.
inline std::filesystem::path propose_run_dir(const std::filesystem::path& ckpt_root_dir,
                                             std::string_view experiment_name) {
  return experiment_dir(ckpt_root_dir, experiment_name) /
         detail::format_run_id(detail::claim_run_time(detail::now_us()));
}

// Creates a new, unique run directory <root>/<experiment>/RUN_... (and the experiment
// directory when missing). When the name of this microsecond is taken (another process, or
// an earlier run), the next microsecond is tried. With `durable`, the experiment directory
// is fsync'ed so that the new entry survives a power loss (about 5-10 ms on a disk).
inline std::filesystem::path create_run_dir(const std::filesystem::path& ckpt_root_dir,
                                            std::string_view experiment_name, bool durable = true) {
  const std::filesystem::path exp = experiment_dir(ckpt_root_dir, experiment_name);
  std::error_code ec;
  std::filesystem::create_directories(exp, ec);
  if (ec)
    throw detail::path_error(ErrorKind::Io, "cannot create the experiment directory: " + ec.message(), exp);
  detail::require_inside_root(exp, ckpt_root_dir, "experiment directory");
  std::int64_t t = detail::claim_run_time(detail::now_us());
  for (int attempt = 0; attempt < 1'000'000; ++attempt) {
    const std::filesystem::path dir = exp / detail::format_run_id(t);
    if (detail::make_directory(dir)) {
      if (durable) detail::sync_directory_best_effort(exp);
      return dir;
    }
    t = detail::claim_run_time(t + 1);
  }
  throw detail::path_error(ErrorKind::Limit,
                           "cannot find a free run directory name (a million names are taken)", exp);
}

// Creates the run directory proposed earlier (propose_run_dir, ResumePlan::run_dir). If that
// name was taken meanwhile, a fresh unique one is created instead: the returned path is the
// one to use. A proposal that is not of the RUN_ form must be free.
inline std::filesystem::path create_run_dir(const std::filesystem::path& proposed, bool durable = true) {
  const std::filesystem::path exp = proposed.parent_path();
  const std::string name = proposed.filename().string();
  detail::check_component(name, "run directory name");
  std::error_code ec;
  if (!exp.empty()) std::filesystem::create_directories(exp, ec);
  if (ec)
    throw detail::path_error(ErrorKind::Io, "cannot create the experiment directory: " + ec.message(), exp);
  if (!exp.empty()) detail::require_inside_root(exp, exp.parent_path(), "experiment directory");
  if (detail::make_directory(proposed)) {
    if (durable) detail::sync_directory_best_effort(exp.empty() ? std::filesystem::path(".") : exp);
    return proposed;
  }
  if (!is_run_dir_name(name))
    throw detail::path_error(ErrorKind::Usage,
                             "the new run directory already exists and is not a RUN_ directory", proposed);
  return create_run_dir(exp.parent_path(), exp.filename().string(), durable);
}

namespace detail {

struct RunScan {
  std::vector<std::filesystem::path> runs;  // newest first
  std::vector<std::string> refused;         // RUN_ entries that resolve outside the root, why
};

// The RUN_ directories of an experiment, newest first (descending name = descending start
// time), without those that resolve outside the checkpoint root (see require_inside_root);
// an experiment directory that itself leaves the root is an Error. Creates nothing.
inline RunScan scan_runs(const std::filesystem::path& ckpt_root_dir, std::string_view experiment_name) {
  const std::filesystem::path exp = experiment_dir(ckpt_root_dir, experiment_name);
  RunScan scan;
  std::error_code ec;
  std::filesystem::directory_iterator it(exp, ec);
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory || ec == std::errc::not_a_directory) return scan;
    throw path_error(ErrorKind::Io, "cannot list the experiment directory: " + ec.message(), exp);
  }
  require_inside_root(exp, ckpt_root_dir, "experiment directory");
  for (const auto& entry : it) {
    const std::string name = entry.path().filename().string();
    if (!is_run_dir_name(name) || !detail::is_directory(entry.path())) continue;
    try {
      require_inside_root(entry.path(), ckpt_root_dir, "run directory");
      scan.runs.push_back(entry.path());
    } catch (const Error& e) {
      scan.refused.push_back(e.message() + "; skipped");
    }
  }
  std::sort(scan.runs.begin(), scan.runs.end(),
            [](const auto& a, const auto& b) { return a.filename().string() > b.filename().string(); });
  return scan;
}

}  // namespace detail

// The run directories of an experiment, newest first (descending name = descending start
// time). An experiment directory that does not exist has no runs; a RUN_ entry that is a
// link out of the checkpoint root is not a run of it. Creates nothing.
inline std::vector<std::filesystem::path> list_runs(const std::filesystem::path& ckpt_root_dir,
                                                    std::string_view experiment_name) {
  return detail::scan_runs(ckpt_root_dir, experiment_name).runs;
}

struct LatestRun {
  std::optional<std::filesystem::path> run_dir;  // nullopt: no run holds the marker file
  std::vector<std::string> warnings;             // one per run that was skipped
};

// SG's get_latest_run_id: the newest run directory that holds `marker` (ckpt_latest.pth).
// Newer runs without it (crashed before their first validation) are skipped, each with a
// warning in the result, and so are RUN_ links out of the checkpoint root. Creates nothing.
inline LatestRun latest_resumable_run(const std::filesystem::path& ckpt_root_dir,
                                      std::string_view experiment_name,
                                      std::string_view marker = kLatestCheckpointName) {
  LatestRun out;
  detail::RunScan scan = detail::scan_runs(ckpt_root_dir, experiment_name);
  out.warnings = std::move(scan.refused);
  for (const auto& run : scan.runs) {
    if (detail::is_regular_file(run / std::string(marker))) {
      out.run_dir = run;
      return out;
    }
    out.warnings.push_back("Run directory \"" + run.string() + "\" does not contain a `" +
                           std::string(marker) +
                           "` file, so it cannot be resumed; trying the next most recent run.");
  }
  return out;
}

// <root>/<experiment>/<run_id> when it is an existing directory; otherwise an Error naming
// the directory searched. Like SG, it does not require a checkpoint inside.
inline std::filesystem::path validate_run_id(const std::filesystem::path& ckpt_root_dir,
                                             std::string_view experiment_name, std::string_view run_id) {
  const std::filesystem::path exp = experiment_dir(ckpt_root_dir, experiment_name);
  const auto describe = [&](ErrorKind kind, const std::filesystem::path& dir, const std::string& why) {
    return Error(kind, "Invalid run directory \"" + dir.string() + "\" (ckpt_root_dir=" +
                           ckpt_root_dir.string() + ", experiment_name=" + std::string(experiment_name) +
                           ", run_id=" + std::string(run_id) + "): " + why);
  };
  try {
    detail::check_component(run_id, "run_id");
  } catch (const Error& e) {
    throw describe(e.kind(), exp / std::string(run_id), e.message());
  }
  const std::filesystem::path dir = exp / std::string(run_id);
  if (!detail::is_directory(dir)) throw describe(ErrorKind::Usage, dir, "no such directory");
  try {
    detail::require_inside_root(dir, ckpt_root_dir, "run directory");
  } catch (const Error& e) {
    throw describe(e.kind(), dir, e.message());
  }
  return dir;
}

// ---- Temporary files -----------------------------------------------------------------------

// A temporary of an atomic save: "<final>.tmp.<pid>.<n>" (detail/fs/file.hpp). Listings skip them.
inline bool is_temporary_name(std::string_view name) {
  const auto pos = name.rfind(".tmp.");
  if (pos == std::string_view::npos || pos == 0) return false;
  const std::string_view rest = name.substr(pos + 5);
  const auto dot = rest.find('.');
  return dot != std::string_view::npos && detail::all_digits(rest.substr(0, dot)) &&
         detail::all_digits(rest.substr(dot + 1));
}

// Removes the stale temporaries in `dir` (those whose writer process is gone), for every
// final name they belong to; returns how many were removed. A missing directory has none.
inline std::size_t remove_stale_temporaries_in(const std::filesystem::path& dir) {
  std::set<std::string> finals;
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory) return 0;
    throw detail::path_error(
        ErrorKind::Io, "cannot list the directory to remove stale temporary files: " + ec.message(), dir);
  }
  for (const auto& entry : it) {
    const std::string name = entry.path().filename().string();
    if (is_temporary_name(name)) finals.insert(name.substr(0, name.rfind(".tmp.")));
  }
  std::size_t removed = 0;
  for (const auto& f : finals) removed += remove_stale_temporaries(dir / f);
  return removed;
}

// ---- Resume resolution (docs/supergradients.md §2)
// ------------------------------------------------------------

struct ResumeRequest {
  bool resume = false;                                         // resume the latest run (or run_id)
  std::optional<std::string> run_id{};                         // resume this run, in its own directory
  std::optional<std::filesystem::path> resume_path{};          // load this file, start a NEW run directory
  std::string ckpt_name = std::string(kLatestCheckpointName);  // file inside the chosen run directory
};

struct ResumePlan {
  enum Mode {
    Fresh,       // no checkpoint: new run directory
    Resume,      // latest resumable run: same directory
    RunId,       // the given run: same directory
    ResumePath,  // the given file: NEW run directory (a branch; the original run is untouched)
  } mode = Fresh;
  // The run directory. For new_run_dir it is the proposed path, not created yet: the manager
  // creates it when the run starts (and picks the next free name if it was taken meanwhile).
  std::filesystem::path run_dir;
  std::optional<std::filesystem::path> checkpoint;  // the file to load; nullopt for Fresh
  bool new_run_dir = true;
  std::vector<std::string> warnings;  // Resume: the newer runs skipped for lack of ckpt_latest.pth

  static const char* mode_name(Mode m) {
    switch (m) {
      case Fresh:
        return "fresh";
      case Resume:
        return "resume";
      case RunId:
        return "run_id";
      case ResumePath:
        return "resume_path";
    }
    return "?";
  }

  // One line saying which directory and which file were chosen, and why (issue #940: users
  // did not know that resume_path starts a new run directory).
  std::string log_line() const {
    const std::string dir = "\"" + run_dir.string() + "\"";
    const std::string file = checkpoint ? "\"" + checkpoint->string() + "\"" : std::string("none");
    switch (mode) {
      case Fresh:
        return "Fresh training: new run directory " + dir + ", no checkpoint loaded";
      case Resume:
        return "Resuming the latest run: run directory " + dir + " (continued in place), checkpoint " + file;
      case RunId:
        return "Resuming run " + run_dir.filename().string() + ": run directory " + dir +
               " (continued in place), checkpoint " + file;
      case ResumePath:
        return "Resuming from checkpoint " + file + " into the NEW run directory " + dir +
               " (resume_path branches; the run the file came from is left untouched)";
    }
    return {};
  }
};

namespace detail {

inline std::filesystem::path require_checkpoint_file(const std::filesystem::path& file,
                                                     const std::string& what) {
  struct stat st;
  if (::stat(file.c_str(), &st) == 0) {
    if (S_ISREG(st.st_mode)) return file;
    // A FIFO or device under a checkpoint's name: say so, rather than "not found".
    throw path_error(
        ErrorKind::Refused,
        what + " \"" + file.string() + "\" is not a regular file (" + fs::file_type_name(st.st_mode) + ")",
        file);
  }
  std::filesystem::path dir = file.parent_path();
  if (dir.empty()) dir = ".";
  throw path_error(
      ErrorKind::Usage,
      what + " \"" + file.string() + "\" not found (searched the directory \"" + dir.string() + "\")", file);
}

}  // namespace detail

// Which run directory and which checkpoint file a training start uses, with exactly SG's
// modes (docs/supergradients.md §2):
//   run_id given        -> that run (validated), same directory; file = resume_path if
//                          given, else <run>/<ckpt_name>
//   resume, no run_id,  -> the latest resumable run, same directory; file <run>/<ckpt_name>
//   no resume_path         (Error when there is none, naming the experiment dir searched)
//   resume_path given   -> that file, and a NEW run directory (proposed, not created)
//   none of them        -> fresh: a new run directory, no file
// A missing file is an Error naming the path and the directory searched. Creates nothing.
inline ResumePlan resolve_resume(const std::filesystem::path& ckpt_root_dir, std::string_view experiment_name,
                                 const ResumeRequest& request) {
  const std::filesystem::path exp = experiment_dir(ckpt_root_dir, experiment_name);
  ResumePlan plan;
  detail::check_component(request.ckpt_name, "ckpt_name");
  if (request.run_id) {
    plan.mode = ResumePlan::RunId;
    plan.run_dir = validate_run_id(ckpt_root_dir, experiment_name, *request.run_id);
    plan.new_run_dir = false;
    if (request.resume_path)
      plan.checkpoint = detail::require_checkpoint_file(std::filesystem::absolute(*request.resume_path),
                                                        "Checkpoint file (resume_path)");
    else
      plan.checkpoint = detail::require_checkpoint_file(plan.run_dir / request.ckpt_name, "Checkpoint file");
    return plan;
  }
  if (request.resume_path) {
    plan.mode = ResumePlan::ResumePath;
    plan.checkpoint = detail::require_checkpoint_file(std::filesystem::absolute(*request.resume_path),
                                                      "Checkpoint file (resume_path)");
    plan.run_dir = propose_run_dir(ckpt_root_dir, experiment_name);
    plan.new_run_dir = true;
    return plan;
  }
  if (request.resume) {
    const LatestRun latest = latest_resumable_run(ckpt_root_dir, experiment_name);
    if (!latest.run_dir) {
      const std::size_t n = list_runs(ckpt_root_dir, experiment_name).size();
      throw detail::path_error(
          ErrorKind::Usage,
          "Cannot resume experiment \"" + std::string(experiment_name) + "\": no run directory in \"" +
              exp.string() + "\" contains `" + std::string(kLatestCheckpointName) + "` (" +
              std::to_string(n) +
              " RUN_* directories found). Pass run_id to pick a run, or resume_path to start from a file.",
          exp);
    }
    plan.mode = ResumePlan::Resume;
    plan.run_dir = *latest.run_dir;
    plan.warnings = latest.warnings;
    plan.new_run_dir = false;
    plan.checkpoint = detail::require_checkpoint_file(plan.run_dir / request.ckpt_name, "Checkpoint file");
    return plan;
  }
  plan.mode = ResumePlan::Fresh;
  plan.run_dir = propose_run_dir(ckpt_root_dir, experiment_name);
  plan.new_run_dir = true;
  return plan;
}

// ---- Experiments started from a recipe, and evaluation ----------------------------------------

struct ExperimentResume {
  ResumePlan plan;          // mode RunId (run_id given) or Resume (the latest run)
  std::string recipe_text;  // the recipe.yaml stored when that run started, verbatim
};

namespace detail {

// A recipe or other text record: a regular file of at most max_bytes (a FIFO planted under
// its name would otherwise block the read forever).
inline std::string read_text_file(const std::filesystem::path& p, std::uintmax_t max_bytes) {
  return read_regular_file(p, max_bytes, "a recipe");
}

}  // namespace detail

// SG's Trainer.resume_experiment: the run (the latest resumable one when no id is given), its
// stored recipe, and the plan that resumes it in place. Error if the run has no recipe.yaml.
inline ExperimentResume resume_experiment(const std::filesystem::path& ckpt_root_dir,
                                          std::string_view experiment_name,
                                          const std::optional<std::string>& run_id = std::nullopt) {
  ResumeRequest req;
  req.resume = true;
  req.run_id = run_id;
  ExperimentResume out;
  out.plan = resolve_resume(ckpt_root_dir, experiment_name, req);
  const std::filesystem::path recipe = out.plan.run_dir / std::string(kRecipeFileName);
  std::error_code ec;
  if (!std::filesystem::exists(recipe, ec))  // anything else present is read, or refused, below
    throw detail::path_error(
        ErrorKind::Usage,
        "The run directory \"" + out.plan.run_dir.string() + "\" does not include " +
            std::string(kRecipeFileName) +
            ", so the experiment cannot be resumed from its recipe (only runs started with "
            "a recipe text store one)",
        recipe);
  out.recipe_text = detail::read_text_file(recipe, std::uintmax_t{64} << 20);
  return out;
}

// SG's evaluate_checkpoint, fixed: exactly <run>/<ckpt_name> (run = run_id, else the latest
// resumable run), or an Error naming the file and the directory searched. SG ignores
// ckpt_name and evaluates an unloaded model when the file is missing (docs/supergradients.md §7).
inline std::filesystem::path evaluate_checkpoint_path(
    const std::filesystem::path& ckpt_root_dir, std::string_view experiment_name, std::string_view ckpt_name,
    const std::optional<std::string>& run_id = std::nullopt) {
  detail::check_component(ckpt_name, "ckpt_name");
  std::filesystem::path run;
  if (run_id) {
    run = validate_run_id(ckpt_root_dir, experiment_name, *run_id);
  } else {
    const LatestRun latest = latest_resumable_run(ckpt_root_dir, experiment_name);
    if (!latest.run_dir) {
      const std::filesystem::path exp = experiment_dir(ckpt_root_dir, experiment_name);
      throw detail::path_error(ErrorKind::Usage,
                               "Cannot evaluate \"" + std::string(ckpt_name) + "\" of experiment \"" +
                                   std::string(experiment_name) + "\": no run directory in \"" +
                                   exp.string() + "\" contains `" + std::string(kLatestCheckpointName) +
                                   "`; pass run_id",
                               exp);
    }
    run = *latest.run_dir;
  }
  return detail::require_checkpoint_file(run / std::string(ckpt_name), "Checkpoint file");
}

}  // namespace sgckpt
