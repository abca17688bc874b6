// tools/sgckpt/cmd_inspect.cpp: `sgckpt inspect FILE [--json] [--depth N] [--key PATTERN]...
// [--mmap] [--no-crc] [--no-numpy]`.
//
// Shows what a checkpoint holds: by default the file's format, a readable tree, the totals and
// the element count of each state dict (tree_printer.hpp); with --json one JSON document
// mirroring the object tree (json_writer.hpp). --key keeps only the entries whose key path
// matches (as convert's --key, state_edit.hpp), in both; --depth limits the tree's levels.
// FILE may be a torch.distributed.checkpoint directory: its format line counts entries, chunks
// and files, and the tree is the merged state (every tensor whole).
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cli_common.hpp"
#include "commands.hpp"
#include "json_writer.hpp"
#include "load_any.hpp"
#include "sgckpt/detail/fs/file.hpp"
#include "sgckpt/detail/zip/reader.hpp"
#include "sgckpt/io/pth.hpp"
#include "state_edit.hpp"
#include "tree_printer.hpp"

namespace sgckpt::tool {

namespace {

struct InspectOptions {
  std::string file;
  bool json = false;
  LoadOptions load;
  TreeOptions tree;
  EditOptions edit;  // --key
};

// "format: torch.distributed.checkpoint directory, 3 ranks' files, 12 entries (10 tensors in 20 chunks)".
std::string dcp_format_line(const std::string& dir, const LoadOptions& opt) {
  const dcp::Metadata md = dcp::read_metadata(dir, opt);
  std::set<std::string> files;
  std::size_t tensors = 0, chunks = 0;
  for (const auto& e : md.entries()) {
    for (const auto& s : e.storage) files.insert(s.relative_path);
    if (e.tensor) {
      ++tensors;
      chunks += e.tensor->chunks.size();
    }
  }
  return "format: torch.distributed.checkpoint directory, " + std::to_string(files.size()) + " data files, " +
         std::to_string(md.entries().size()) + " entries (" + std::to_string(tensors) + " tensors in " +
         std::to_string(chunks) + " chunks)";
}

// "format: torch zip (.pth), version 3, 12 records, torch 2.x layout" and the like: what the
// first bytes and, for an archive, its records say (the loader has checked them already).
std::string format_line(const std::string& file, const LoadOptions& opt) {
  if (dcp::is_checkpoint(file)) return dcp_format_line(file, opt);
  const auto mapped = sgckpt::detail::fs::MappedFile::open(file);
  const std::span<const std::byte> bytes = mapped->bytes();
  using sgckpt::detail::FileFormat;
  switch (sgckpt::detail::sniff(bytes)) {
    case FileFormat::Legacy:
      return "format: torch legacy stream (.pth written before torch 1.6)";
    case FileFormat::Safetensors:
      return "format: safetensors";
    case FileFormat::Tar:
      return "format: torch tar archive (torch < 0.4)";
    case FileFormat::Unknown:
      return "format: unknown";
    case FileFormat::Zip:
      break;
  }
  const sgckpt::detail::zip::ZipReader zip(bytes, opt.limits, file);
  std::string version = "?";
  bool torch2 = false;
  for (const auto& e : zip.entries()) {
    const auto slash = e.name.find('/');
    const std::string rest = slash == std::string::npos ? e.name : e.name.substr(slash + 1);
    if ((rest == "version" || rest == ".data/version") && e.size <= 64)
      version = std::to_string(sgckpt::detail::parse_version(zip.read(e, opt.verify_crc)));
    torch2 |= rest == ".format_version" || rest == ".storage_alignment" || rest == ".data/serialization_id";
  }
  return "format: torch zip (.pth), version " + version + ", " + std::to_string(zip.entries().size()) +
         " records, " + (torch2 ? "torch 2.x layout" : "torch 1.x layout");
}

void run_inspect(const InspectOptions& o) {
  const Value root = edit(load_any(o.file, o.load), o.edit);
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
    out = format_line(o.file, o.load) + "\n" + render_tree(root, tree);
  }
  write_stdout(out);
}

}  // namespace

void register_inspect(CLI::App& app) {
  auto opts = std::make_shared<InspectOptions>();
  CLI::App* cmd =
      app.add_subcommand("inspect", "Show what a checkpoint holds: its object tree and tensor totals");
  cmd->add_option("FILE", opts->file, "The checkpoint file, or a torch.distributed.checkpoint directory")
      ->required();
  cmd->add_flag("--json", opts->json,
                "Print one JSON document mirroring the object tree (tensors as dtype, shape and SHA-256)");
  cmd->add_option("--depth", opts->tree.max_depth, "Show this many levels below the root (totals count all)");
  cmd->add_option("--key", opts->edit.keep,
                  "Show only the dict entries whose key path matches (fnmatch; '*' crosses '/'); repeatable");
  add_load_options(*cmd, opts->load, /*with_crc_flag=*/true);
  cmd->callback([opts] { run_inspect(*opts); });
}

}  // namespace sgckpt::tool
