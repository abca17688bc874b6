// tools/sgckpt/cmd_resolve.cpp:
//   `sgckpt resolve ROOT EXPERIMENT [--run-id ID] [--resume-path FILE] [--ckpt-name NAME] [--json]`
//
// Says which run directory and which checkpoint file a resume would use, with
// SuperGradients' rules (sgckpt/ckpt/run_dir.hpp, resolve_resume with resume=true):
//   --run-id ID         that run, continued in place            (mode "run_id")
//   --resume-path FILE  that file, into a NEW run directory      (mode "resume_path")
//   neither             the latest run holding ckpt_latest.pth  (mode "resume")
// --ckpt-name picks the file inside the run directory (default ckpt_latest.pth).
// Creates nothing: for resume_path the new run directory is only the path it would get.
//
// Output: one line saying the choice; with --json one object
//   {"mode": "resume"|"run_id"|"resume_path", "run_dir": "...", "checkpoint": "...", "new_run_dir": bool}
// Newer runs skipped because they hold no ckpt_latest.pth are reported on stderr as
// "sgckpt: warning: ..." lines. A missing run or file exits 1 with the message.
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "cli_common.hpp"
#include "commands.hpp"
#include "json_writer.hpp"
#include "sgckpt/ckpt/run_dir.hpp"

namespace sgckpt::tool {

namespace {

struct ResolveOptions {
  std::string root;
  std::string experiment;
  std::optional<std::string> run_id;
  std::optional<std::string> resume_path;
  std::string ckpt_name = std::string(kLatestCheckpointName);
  bool json = false;
};

void run_resolve(const ResolveOptions& o) {
  ResumeRequest req;
  req.resume = true;
  req.run_id = o.run_id;
  if (o.resume_path) req.resume_path = *o.resume_path;
  req.ckpt_name = o.ckpt_name;
  const ResumePlan plan = resolve_resume(o.root, o.experiment, req);
  for (const auto& w : plan.warnings) {
    std::string line = "sgckpt: warning: " + w + "\n";
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
  std::string out;
  if (o.json) {
    out += "{\"mode\": ";
    json::append_string(out, ResumePlan::mode_name(plan.mode));
    out += ", \"run_dir\": ";
    json::append_string(out, plan.run_dir.string());
    out += ", \"checkpoint\": ";
    if (plan.checkpoint)
      json::append_string(out, plan.checkpoint->string());
    else
      out += "null";
    out += ", \"new_run_dir\": ";
    out += plan.new_run_dir ? "true" : "false";
    out += "}\n";
  } else {
    out = plan.log_line() + "\n";
  }
  write_stdout(out);
}

}  // namespace

void register_resolve(CLI::App& app) {
  auto opts = std::make_shared<ResolveOptions>();
  CLI::App* cmd = app.add_subcommand(
      "resolve", "Show which run directory and checkpoint a resume would use (SuperGradients' rules)");
  cmd->add_option("ROOT", opts->root, "The checkpoints root directory (ckpt_root_dir)")->required();
  cmd->add_option("EXPERIMENT", opts->experiment, "The experiment name")->required();
  cmd->add_option("--run-id", opts->run_id, "Resume this run (RUN_... directory), in place");
  cmd->add_option("--resume-path", opts->resume_path, "Resume from this file, into a new run directory");
  cmd->add_option("--ckpt-name", opts->ckpt_name, "The checkpoint file inside the run directory")
      ->capture_default_str();
  cmd->add_flag("--json", opts->json, "Print one JSON object (mode, run_dir, checkpoint, new_run_dir)");
  cmd->callback([opts] { run_resolve(*opts); });
}

}  // namespace sgckpt::tool
