// tools/sgckpt/cmd_convert.cpp: `sgckpt convert IN OUT [--mmap]`.
//
// Reads IN (any format sgckpt::load reads, including the legacy pre-1.6 stream) and writes
// it as a current torch zip checkpoint to OUT (atomically). Sharing of storages between
// tensors is kept. Prints nothing on success.
#include <memory>
#include <string>

#include "cli_common.hpp"
#include "commands.hpp"
#include "sgckpt/io/pth.hpp"

namespace sgckpt::tool {

namespace {

struct ConvertOptions {
  std::string input;
  std::string output;
  LoadOptions load;
  SaveOptions save;
};

void run_convert(const ConvertOptions& o) {
  const Value root = load(o.input, o.load);
  save(root, o.output, o.save);
}

}  // namespace

void register_convert(CLI::App& app) {
  auto opts = std::make_shared<ConvertOptions>();
  CLI::App* cmd = app.add_subcommand("convert", "Read a checkpoint and write it again in torch's zip format");
  cmd->add_option("IN", opts->input, "The .pth file to read")->required();
  cmd->add_option("OUT", opts->output, "The .pth file to write (replaced atomically)")->required();
  add_load_options(*cmd, opts->load, /*with_crc_flag=*/false);
  cmd->callback([opts] { run_convert(*opts); });
}

}  // namespace sgckpt::tool
