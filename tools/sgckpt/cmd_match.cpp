// tools/sgckpt/cmd_match.cpp: `sgckpt match MODEL CKPT [--strict MODE] [--backbone PREFIX]
// [--ema] [--json]`.
//
// Would CKPT load into the model whose state dict MODEL holds, under SG's StrictLoad MODE
// (on, off, no_key_matching, key_matching; default on)? A dry run of
// sgckpt::load_checkpoint_to_model (ckpt/load.hpp): prints what would be loaded, and every
// missing, unexpected and shape-mismatched key; exit status 0 if the load would succeed, 1 if
// not (with one error line on stderr).
//
// MODEL is a .pth holding the target model's state dict (a checkpoint with a `net` entry
// works too: its `net` is the target). CKPT is a checkpoint (its `net`, or `ema_net` with
// --ema) or a bare state dict.
//
// --json prints one line:
//   {"ok": true|false, "loaded": {"<model key>": "<ckpt key>", ...}, "missing": [...],
//    "unexpected": [...], "mismatched": [{"model": k, "ckpt": k, "model_shape": [...],
//    "ckpt_shape": [...]}, ...]}
#include <memory>
#include <string>

#include "cli_common.hpp"
#include "commands.hpp"
#include "json_writer.hpp"
#include "sgckpt/ckpt/load.hpp"
#include "sgckpt/io/pth.hpp"

namespace sgckpt::tool {

namespace {

struct MatchOptions {
  std::string model;
  std::string ckpt;
  std::string strict = "on";
  std::string backbone;
  bool ema = false;
  bool json = false;
  LoadOptions load;
};

void append_shape(std::string& out, const Shape& s) {
  out += '[';
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  out += ']';
}

void append_strings(std::string& out, const std::vector<std::string>& v) {
  out += '[';
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) out += ", ";
    json::append_string(out, v[i]);
  }
  out += ']';
}

std::string report_json(const LoadReport& r) {
  std::string out = "{\"ok\": ";
  out += r.ok ? "true" : "false";
  out += ", \"loaded\": {";
  for (std::size_t i = 0; i < r.loaded.size(); ++i) {
    if (i) out += ", ";
    json::append_string(out, r.loaded[i].first);
    out += ": ";
    json::append_string(out, r.loaded[i].second);
  }
  out += "}, \"missing\": ";
  append_strings(out, r.missing);
  out += ", \"unexpected\": ";
  append_strings(out, r.unexpected);
  out += ", \"mismatched\": [";
  for (std::size_t i = 0; i < r.mismatched.size(); ++i) {
    const auto& m = r.mismatched[i];
    if (i) out += ", ";
    out += "{\"model\": ";
    json::append_string(out, m.model);
    out += ", \"ckpt\": ";
    json::append_string(out, m.ckpt);
    out += ", \"model_shape\": ";
    append_shape(out, m.model_shape);
    out += ", \"ckpt_shape\": ";
    append_shape(out, m.ckpt_shape);
    out += '}';
  }
  out += "]}\n";
  return out;
}

void run_match(const MatchOptions& o) {
  const StrictLoad mode = parse_strict_load(o.strict);  // before any file is read
  const Value model_file = load(o.model, o.load);
  const Value ckpt = load(o.ckpt, o.load);
  const LoadReport r = plan_checkpoint_load(
      checkpoint_state_dict(model_file), ckpt,
      {.strict = mode, .weights = o.ema ? Weights::Ema : Weights::Net, .backbone_prefix = o.backbone});
  write_stdout(o.json ? report_json(r) : r.message() + "\n");
  if (!r.ok)
    throw Error("'" + o.ckpt + "' does not load into the model of '" + o.model +
                "' (strict=" + std::string(to_string(mode)) + ")");
}

}  // namespace

void register_match(CLI::App& app) {
  auto opts = std::make_shared<MatchOptions>();
  CLI::App* cmd = app.add_subcommand(
      "match",
      "Check whether a checkpoint loads into a model (SG's StrictLoad modes); exit 1 if it does not");
  cmd->add_option("MODEL", opts->model, "A .pth holding the target model's state dict")->required();
  cmd->add_option("CKPT", opts->ckpt, "The checkpoint (its net / ema_net) or a bare state dict")->required();
  cmd->add_option("--strict", opts->strict, "on (default), off, no_key_matching or key_matching")
      ->check(
          CLI::IsMember({"on", "off", "no_key_matching", "key_matching", "true", "false"}, CLI::ignore_case));
  cmd->add_option("--backbone", opts->backbone,
                  "Load only the model keys under this prefix (e.g. 'backbone.'), matched without it");
  cmd->add_flag("--ema", opts->ema, "Load the checkpoint's ema_net instead of its net");
  cmd->add_flag("--json", opts->json, "Print the report as one JSON line");
  add_load_options(*cmd, opts->load, /*with_crc_flag=*/true);
  cmd->callback([opts] { run_match(*opts); });
}

}  // namespace sgckpt::tool
