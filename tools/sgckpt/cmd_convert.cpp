// tools/sgckpt/cmd_convert.cpp: `sgckpt convert IN OUT [--mmap] [--layout torch1|torch2]
//   [--format auto|pth|safetensors] [--flatten] [--select PATH] [--key PATTERN]...
//   [--drop PATTERN]... [--cast FROM=TO]...`.
//
// Reads IN (any format sgckpt::load reads: .pth, the legacy pre-1.6 stream, safetensors) and
// writes it to OUT (atomically) as a current torch zip checkpoint, or as safetensors when OUT
// ends in .safetensors or --format says so (--flatten joins nested dict keys with '.'). Sharing of storages
// between tensors is kept. --layout torch2 adds the records torch 2.x writes (docs/pth-format.md).
// --select/--key/--drop/--cast change the state on the way (state_edit.hpp), e.g. to give a
// float8 or uint16 checkpoint to a torch that lacks those dtypes, or to slice out a state
// dict. IN may also be a torch.distributed.checkpoint directory (merged into one state, every
// tensor whole); --dcp N writes OUT as such a directory instead, each tensor of one or more
// dimensions split along its first dimension as N ranks would hold it (docs/dcp.md).
// Prints nothing on success.
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cli_common.hpp"
#include "commands.hpp"
#include "load_any.hpp"
#include "sgckpt/io/pth.hpp"
#include "state_edit.hpp"

namespace sgckpt::tool {

namespace {

struct ConvertOptions {
  std::string input;
  std::string output;
  LoadOptions load;
  SaveOptions save;
  EditOptions edit;
  std::vector<std::string> casts;  // FROM=TO, parsed into edit.casts
  int dcp_ranks = 0;               // --dcp N; 0: a file
};

std::pair<DType, DType> parse_cast(const std::string& spec) {
  const auto eq = spec.find('=');
  const auto dtype = [&](const std::string& n) {
    const auto d = dtype_from_name(n);
    if (!d)
      throw Error("--cast '" + spec + "': unknown dtype '" + n +
                  "' (torch's names: float32, bfloat16, uint16, ...)");
    return *d;
  };
  if (eq == std::string::npos)
    throw Error("--cast '" + spec + "': expected FROM=TO, e.g. float8_e4m3fn=float32");
  const std::pair<DType, DType> c{dtype(spec.substr(0, eq)), dtype(spec.substr(eq + 1))};
  if (!can_cast(c.first, c.second))
    throw Error("--cast '" + spec + "': casting into " + std::string(name(c.second)) + " is not supported");
  return c;
}

void run_convert(ConvertOptions o) {
  for (const auto& spec : o.casts) o.edit.casts.push_back(parse_cast(spec));
  Value root = load_any(o.input, o.load);
  if (!o.edit.empty()) {
    try {
      root = edit(std::move(root), o.edit);
    } catch (const Error& e) {
      throw e.with_file(o.input);
    }
  }
  if (o.dcp_ranks > 0)
    dcp::save_split(root, o.output, o.dcp_ranks, o.save);
  else
    save(root, o.output, o.save);
}

}  // namespace

void register_convert(CLI::App& app) {
  auto opts = std::make_shared<ConvertOptions>();
  CLI::App* cmd =
      app.add_subcommand("convert", "Read a checkpoint and write it again (.pth or .safetensors)");
  cmd->add_option(
         "IN", opts->input,
         "The file to read (.pth, legacy torch or safetensors) or a torch.distributed.checkpoint directory")
      ->required();
  cmd->add_option("OUT", opts->output, "The file to write (replaced atomically)")->required();
  cmd->add_option(
         "--format", opts->save.format,
         "auto (the default: safetensors when OUT ends in .safetensors, else .pth), pth or safetensors")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, SaveFormat>{
              {"auto", SaveFormat::Auto}, {"pth", SaveFormat::Pth}, {"safetensors", SaveFormat::Safetensors}},
          CLI::ignore_case));
  cmd->add_flag(
      "--flatten", opts->save.flatten,
      "safetensors: write nested dicts as 'a.b' names (e.g. a whole checkpoint) instead of refusing them");
  add_load_options(*cmd, opts->load, /*with_crc_flag=*/false);
  cmd->add_option("--layout", opts->save.layout,
                  "Archive records: torch1 (byteorder; the default) or torch2 (+ .format_version, "
                  ".storage_alignment, .data/serialization_id)")
      ->transform(
          CLI::CheckedTransformer(std::map<std::string, ArchiveLayout>{{"torch1", ArchiveLayout::Torch1},
                                                                       {"torch2", ArchiveLayout::Torch2}},
                                  CLI::ignore_case));
  cmd->add_option("--dcp", opts->dcp_ranks,
                  "Write OUT as a torch.distributed.checkpoint directory, tensors split along their first "
                  "dimension as N ranks would hold them")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--select", opts->edit.select,
                  "Write only the value at this key path (e.g. net: the state dict)");
  cmd->add_option("--key", opts->edit.keep,
                  "Keep only the dict entries whose key path matches (fnmatch; '*' crosses '/'); repeatable");
  cmd->add_option("--drop", opts->edit.drop, "Remove the dict entries whose key path matches; repeatable");
  cmd->add_option("--cast", opts->casts,
                  "FROM=TO: every FROM tensor becomes TO, converted as torch's Tensor.to does; repeatable");
  cmd->callback([opts] { run_convert(*opts); });
}

}  // namespace sgckpt::tool
