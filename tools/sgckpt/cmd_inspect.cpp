// tools/sgckpt/cmd_inspect.cpp: `sgckpt inspect FILE [--json] [--mmap] [--no-crc]`.
//
// Shows what a checkpoint holds: by default a readable tree with totals (tree_printer.hpp),
// with --json one JSON document mirroring the object tree (json_writer.hpp).
#include <memory>
#include <string>

#include "cli_common.hpp"
#include "commands.hpp"
#include "json_writer.hpp"
#include "sgckpt/io/pth.hpp"
#include "tree_printer.hpp"

namespace sgckpt::tool {

namespace {

struct InspectOptions {
  std::string file;
  bool json = false;
  LoadOptions load;
  TreeOptions tree;
};

void run_inspect(const InspectOptions& o) {
  const Value root = load(o.file, o.load);
  const ExpansionBudget budget = ExpansionBudget::for_files({o.file});
  std::string out;
  if (o.json) {
    json::Context ctx{
        budget, ExpansionBudget::for_files({o.file}, ExpansionBudget::kHashAllowance), 0, {}, {}};
    json::append_value(out, root, ctx);
    out += '\n';
  } else {
    TreeOptions tree = o.tree;
    tree.budget = budget;
    out = render_tree(root, tree);
  }
  write_stdout(out);
}

}  // namespace

void register_inspect(CLI::App& app) {
  auto opts = std::make_shared<InspectOptions>();
  CLI::App* cmd =
      app.add_subcommand("inspect", "Show what a checkpoint holds: its object tree and tensor totals");
  cmd->add_option("FILE", opts->file, "The .pth file")->required();
  cmd->add_flag("--json", opts->json,
                "Print one JSON document mirroring the object tree (tensors as dtype, shape and SHA-256)");
  add_load_options(*cmd, opts->load, /*with_crc_flag=*/true);
  cmd->callback([opts] { run_inspect(*opts); });
}

}  // namespace sgckpt::tool
