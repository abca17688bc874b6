// sgckpt/ckpt/remote/pull.hpp: bringing a run back from a store (docs/remote.md): the runs an
// experiment has there, a directory's objects into a local directory, and SG's
// resume_from_remote: download the run (ckpt_latest.pth, the recipe, the best file, the
// averaging snapshots, ...) into the local run directory, then resume as usual.
//
// Unlike SG (which resumes a remote checkpoint into a NEW run, so that the next uploads go
// elsewhere than the run they continue), the run keeps its id: local directory and remote
// prefix stay <experiment>/<run_id>, and its next checkpoints replace the ones it resumed from.
#pragma once

#include <algorithm>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sgckpt/ckpt/remote/store.hpp"
#include "sgckpt/ckpt/run_dir.hpp"

namespace sgckpt::remote {

// The run ids of `experiment` in the store that hold a ckpt_latest.pth, newest first (run
// ids are start times, so name order is time order).
inline std::vector<std::string> remote_runs(Store& store, std::string_view experiment) {
  ::sgckpt::detail::check_component(experiment, "experiment_name");
  const std::string prefix = std::string(experiment) + "/";
  std::vector<std::string> runs;
  for (const auto& o : store.list(prefix)) {
    const std::string rest = o.key.substr(prefix.size());
    const auto slash = rest.find('/');
    if (slash == std::string::npos || rest.substr(slash + 1) != kLatestCheckpointName) continue;
    runs.push_back(rest.substr(0, slash));
  }
  std::sort(runs.rbegin(), runs.rend());
  return runs;
}

struct PullReport {
  std::vector<std::string> downloaded;
  std::vector<std::string> kept;     // existed locally and were left alone
  std::vector<std::string> skipped;  // keys that are not plain file names under the prefix
  std::uint64_t bytes = 0;
};

// Downloads every object directly under `prefix` ("<prefix>/<name>") into `dir` (created if
// needed). A name that is not one plain path component (a nested key, a temporary) is
// skipped; a file that already exists locally is kept unless `overwrite`. Each download is
// atomic and verified (Store::get); ckpt_latest.pth comes last.
inline PullReport pull_dir(Store& store, const std::string& prefix, const std::filesystem::path& dir,
                           bool overwrite = false) {
  PullReport out;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    throw ::sgckpt::detail::path_error(ErrorKind::Io, "cannot create the directory: " + ec.message(), dir);
  const std::string base = prefix.empty() ? "" : join_key(prefix, "") + "/";
  // ckpt_latest.pth last: it is what makes a run resumable, so a pull cut short leaves a run
  // that is not (yet) resumable rather than one that lacks its recipe.
  std::vector<ObjectInfo> objects = store.list(base);
  std::stable_partition(objects.begin(), objects.end(), [&](const ObjectInfo& o) {
    return o.key.substr(base.size()) != kLatestCheckpointName;
  });
  for (const auto& o : objects) {
    const std::string name = o.key.substr(base.size());
    bool plain = !name.empty() && name.find('/') == std::string::npos && !is_temporary_name(name);
    try {
      ::sgckpt::detail::check_component(name, "object name");
    } catch (const Error&) {
      plain = false;
    }
    if (!plain) {
      out.skipped.push_back(o.key);
      continue;
    }
    const std::filesystem::path dest = dir / name;
    if (!overwrite && std::filesystem::exists(std::filesystem::symlink_status(dest, ec))) {
      out.kept.push_back(name);
      continue;
    }
    store.get(o.key, dest);
    out.downloaded.push_back(name);
    out.bytes += o.size;
  }
  return out;
}

// SG's resume_from_remote: the run `run_id` (the newest one in the store when none is given)
// is downloaded into <ckpt_root_dir>/<experiment>/<run_id> and the plan resumes it in place.
// A run that already holds a ckpt_latest.pth locally is refused (it may be newer than the
// store's copy: resume it locally, or move it away), so nothing saved is ever replaced.
inline ResumePlan resume_from_remote(Store& store, const std::filesystem::path& ckpt_root_dir,
                                     std::string_view experiment,
                                     std::optional<std::string> run_id = std::nullopt,
                                     const std::function<void(std::string_view)>& log = {}) {
  const std::filesystem::path exp = experiment_dir(ckpt_root_dir, experiment);
  if (!run_id) {
    const auto runs = remote_runs(store, experiment);
    if (runs.empty())
      throw StoreError(ErrorKind::Usage,
                       "cannot resume from the store: no run of experiment \"" + std::string(experiment) +
                           "\" in " + store.url() + " holds a " + std::string(kLatestCheckpointName),
                       false);
    run_id = runs.front();
  }
  ::sgckpt::detail::check_component(*run_id, "run_id");
  const std::filesystem::path run = exp / *run_id;
  if (::sgckpt::detail::is_regular_file(run / std::string(kLatestCheckpointName)))
    throw ::sgckpt::detail::path_error(
        ErrorKind::Usage,
        "cannot resume from the store: the run already has a local " + std::string(kLatestCheckpointName) +
            " (it may be newer than the store's); resume it locally (run_id " + *run_id + ") or move it away",
        run);
  // No local ckpt_latest.pth: what is there is what an earlier pull, cut short, left.
  const PullReport r = pull_dir(store, std::string(experiment) + "/" + *run_id, run, /*overwrite=*/true);
  if (std::find(r.downloaded.begin(), r.downloaded.end(), kLatestCheckpointName) == r.downloaded.end())
    throw StoreError(ErrorKind::Usage,
                     "cannot resume from the store: " + store.url() + "/" + std::string(experiment) + "/" +
                         *run_id + "/" + std::string(kLatestCheckpointName) + " does not exist",
                     false);
  if (log)
    log("Downloaded run " + *run_id + " from " + store.url() + ": " + std::to_string(r.downloaded.size()) +
        " files, " + std::to_string(r.bytes) + " bytes, into \"" + run.string() + "\"");
  ResumeRequest req;
  req.run_id = *run_id;
  return resolve_resume(ckpt_root_dir, experiment, req);
}

}  // namespace sgckpt::remote
