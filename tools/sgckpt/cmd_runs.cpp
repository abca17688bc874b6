// tools/sgckpt/cmd_runs.cpp: `sgckpt runs ROOT EXPERIMENT [--json] [--ckpt-best-name NAME]`.
//
// Lists the run directories of an experiment, newest first (the order SuperGradients uses to
// find the latest run), with the checkpoint files each holds and its best metric, read from
// the best checkpoint (best_metric_name / best_metric_value as sgckpt writes them; else
// SG's metrics.tracked_metric_name and acc). Temporaries of interrupted saves are not
// listed. Creates nothing; an experiment without runs prints an empty list, but a ROOT or an
// experiment directory that does not exist is an error that names it (a typo must not read
// as "0 runs"), listing the experiments ROOT does hold.
//
// --json prints one object:
//   {"ckpt_root_dir": "...", "experiment_name": "...", "experiment_dir": "...",
//    "runs": [{"run_id": "RUN_...", "path": "...", "resumable": bool, "recipe": bool,
//              "checkpoints": ["average_model.pth", ...],
//              "best": null | {"file": "ckpt_best.pth", "metric": str|null, "value": number|null,
//                              "epoch": int|null} | {"file": ..., "error": "..."}}]}
#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "cli_common.hpp"
#include "commands.hpp"
#include "json_writer.hpp"
#include "sgckpt/ckpt/run_dir.hpp"
#include "sgckpt/io/pth.hpp"

namespace sgckpt::tool {

namespace {

struct RunsOptions {
  std::string root;
  std::string experiment;
  std::string best_name = "ckpt_best.pth";
  bool json = false;
};

struct BestInfo {
  std::optional<std::string> metric;
  std::optional<double> value;
  std::optional<std::int64_t> epoch;
  std::string error;  // the file exists but cannot be read
};

struct RunInfo {
  std::filesystem::path path;
  std::vector<std::string> checkpoints;
  bool resumable = false;
  bool recipe = false;
  std::optional<BestInfo> best;
};

// Only the few scalars are needed: map the file (tensors stay unread views) and skip the
// CRC pass over the records.
BestInfo read_best(const std::filesystem::path& file) {
  BestInfo b;
  try {
    LoadOptions lo;
    lo.mmap = true;
    lo.verify_crc = false;
    const Value v = load(file, lo);
    if (!v.is_dict()) {
      b.error = std::string("not a dict of entries (a ") + kind_name(v.kind()) + ")";
      return b;
    }
    const Dict& d = v.dict();
    if (const Value* n = d.find("best_metric_name"); n && n->is_str()) {
      b.metric = n->as_str();
    } else if (const Value* m = d.find("metrics"); m && m->is_dict()) {
      if (const Value* t = m->dict().find("tracked_metric_name"); t && t->is_str()) b.metric = t->as_str();
    }
    if (const Value* x = d.find("best_metric_value"); x && x->is_number())
      b.value = x->as_number();
    else if (const Value* a = d.find("acc"); a && a->is_number())
      b.value = a->as_number();
    if (const Value* e = d.find("epoch"); e && e->is_int() && e->as_big_int().fits_int64())
      b.epoch = e->as_int();
  } catch (const Error& e) {
    b.error = e.what();
  }
  return b;
}

RunInfo describe_run(const std::filesystem::path& dir, const std::string& best_name) {
  RunInfo r;
  r.path = dir;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (is_temporary_name(name) || !entry.is_regular_file(ec)) continue;
    if (entry.path().extension() == ".pth") r.checkpoints.push_back(name);
    if (name == kLatestCheckpointName) r.resumable = true;
    if (name == kRecipeFileName) r.recipe = true;
  }
  std::sort(r.checkpoints.begin(), r.checkpoints.end());
  if (std::find(r.checkpoints.begin(), r.checkpoints.end(), best_name) != r.checkpoints.end())
    r.best = read_best(dir / best_name);
  return r;
}

void append_best_json(std::string& out, const RunInfo& r, const std::string& best_name) {
  if (!r.best) {
    out += "null";
    return;
  }
  const BestInfo& b = *r.best;
  out += "{\"file\": ";
  json::append_string(out, best_name);
  if (!b.error.empty()) {
    out += ", \"error\": ";
    json::append_string(out, b.error);
    out += '}';
    return;
  }
  out += ", \"metric\": ";
  if (b.metric)
    json::append_string(out, *b.metric);
  else
    out += "null";
  out += ", \"value\": ";
  if (b.value)
    json::append_double(out, *b.value);
  else
    out += "null";
  out += ", \"epoch\": ";
  out += b.epoch ? std::to_string(*b.epoch) : std::string("null");
  out += '}';
}

// The experiments (directories) under root, sorted, for the error that names a missing one.
std::string experiments_in(const std::filesystem::path& root) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(root, ec))
    if (e.is_directory(ec)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  std::string out;
  for (std::size_t i = 0; i < names.size() && i < 20; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > 20) out += ", ... (" + std::to_string(names.size()) + " in all)";
  return names.empty() ? "none" : out;
}

void require_experiment(const RunsOptions& o, const std::filesystem::path& exp) {
  std::error_code ec;
  if (!std::filesystem::is_directory(o.root, ec))
    throw Error(ErrorKind::Io, "the checkpoint root directory '" + o.root + "' does not exist");
  if (!std::filesystem::is_directory(exp, ec))
    throw Error(ErrorKind::Io, "no experiment '" + o.experiment + "' in '" + o.root +
                                   "' (experiments there: " + experiments_in(o.root) + ")");
}

void run_runs(const RunsOptions& o) {
  const std::filesystem::path exp = experiment_dir(o.root, o.experiment);
  require_experiment(o, exp);
  std::vector<RunInfo> runs;
  for (const auto& dir : list_runs(o.root, o.experiment)) runs.push_back(describe_run(dir, o.best_name));

  std::string out;
  if (o.json) {
    out += "{\"ckpt_root_dir\": ";
    json::append_string(out, o.root);
    out += ", \"experiment_name\": ";
    json::append_string(out, o.experiment);
    out += ", \"experiment_dir\": ";
    json::append_string(out, exp.string());
    out += ", \"runs\": [";
    for (std::size_t i = 0; i < runs.size(); ++i) {
      const RunInfo& r = runs[i];
      if (i) out += ", ";
      out += "{\"run_id\": ";
      json::append_string(out, r.path.filename().string());
      out += ", \"path\": ";
      json::append_string(out, r.path.string());
      out += ", \"resumable\": ";
      out += r.resumable ? "true" : "false";
      out += ", \"recipe\": ";
      out += r.recipe ? "true" : "false";
      out += ", \"checkpoints\": [";
      for (std::size_t k = 0; k < r.checkpoints.size(); ++k) {
        if (k) out += ", ";
        json::append_string(out, r.checkpoints[k]);
      }
      out += "], \"best\": ";
      append_best_json(out, r, o.best_name);
      out += '}';
    }
    out += "]}\n";
  } else {
    out += "Experiment \"" + o.experiment + "\" in \"" + exp.string() + "\": " + std::to_string(runs.size()) +
           (runs.size() == 1 ? " run" : " runs") + (runs.empty() ? "\n" : ", newest first\n");
    for (const RunInfo& r : runs) {
      out += "  " + r.path.filename().string() + (r.resumable ? "  resumable" : "  not resumable");
      if (r.best) {
        const BestInfo& b = *r.best;
        if (!b.error.empty()) {
          out += "  best: unreadable (" + b.error + ")";
        } else {
          out += "  best " + b.metric.value_or("?") + " = " +
                 (b.value ? json::format_double(*b.value) : std::string("?"));
          if (b.epoch) out += " (epoch " + std::to_string(*b.epoch) + ")";
        }
      }
      out += "\n    ";
      if (r.checkpoints.empty()) out += "(no checkpoints)";
      for (std::size_t k = 0; k < r.checkpoints.size(); ++k) out += (k ? ", " : "") + r.checkpoints[k];
      if (r.recipe) out += "  [" + std::string(kRecipeFileName) + "]";
      out += '\n';
    }
  }
  write_stdout(out);
}

}  // namespace

void register_runs(CLI::App& app) {
  auto opts = std::make_shared<RunsOptions>();
  CLI::App* cmd = app.add_subcommand(
      "runs", "List an experiment's run directories, newest first, with their checkpoints and best metric");
  cmd->add_option("ROOT", opts->root, "The checkpoints root directory (ckpt_root_dir)")->required();
  cmd->add_option("EXPERIMENT", opts->experiment, "The experiment name")->required();
  cmd->add_option("--ckpt-best-name", opts->best_name, "The best checkpoint's file name")
      ->capture_default_str();
  cmd->add_flag("--json", opts->json, "Print one JSON object");
  cmd->callback([opts] { run_runs(*opts); });
}

}  // namespace sgckpt::tool
