// tools/sgckpt/cmd_average.cpp: `sgckpt average OUT CKPT... [--ema]`.
//
// Averages the weights of the given checkpoints (their `net`, or `ema_net` with --ema; a file
// without `net` is taken as a bare state dict) and writes {"net": <average>} to OUT
// (atomically), a checkpoint torch.load reads. Floating tensors: the mean over the inputs
// (summed in double, rounded once); integer and bool buffers (num_batches_tracked): the FIRST
// input's, so they stay integral. Key order, dict kind and _metadata: the first input's.
// Every input must have the same keys, dtypes and shapes. Prints nothing on success.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cli_common.hpp"
#include "commands.hpp"
#include "expansion_budget.hpp"
#include "sgckpt/ckpt/averaging.hpp"
#include "sgckpt/ckpt/load.hpp"
#include "sgckpt/io/pth.hpp"

namespace sgckpt::tool {

namespace {

struct AverageOptions {
  std::string output;
  std::vector<std::string> inputs;
  bool ema = false;
  LoadOptions load;
};

// The state dict to average from one loaded file (moved out of it, not copied): the library's
// one rule for which weights a checkpoint holds (sgckpt::checkpoint_state_dict).
Value weights_of(Value root, const std::string& path, bool ema) {
  try {
    return std::move(checkpoint_state_dict(root, ema ? Weights::Ema : Weights::Net));
  } catch (const Error& e) {
    throw e.with_file(path);
  }
}

void run_average(const AverageOptions& o) {
  std::vector<Value> states;
  states.reserve(o.inputs.size());
  for (const auto& path : o.inputs) {
    states.push_back(weights_of(load(path, o.load), path, o.ema));
    // Name the file, not "state i", when the inputs do not match.
    if (states.size() > 1) check_same_structure(states.front(), states.back(), "'" + path + "'");
  }
  // The average is written contiguously: a stride-0 view of a few bytes would become
  // gigabytes (730-byte inputs made a 512 MB output). Bounded by the inputs' size.
  std::uint64_t out_bytes = 0;
  states.front().visit_tensors([&](const std::string&, const auto& tv) { out_bytes += tv.tensor.nbytes(); });
  ExpansionBudget::for_files(o.inputs).check(out_bytes, "the averaged weights");
  Value root = Value::make_dict();
  root["net"] = average_states(std::span<const Value>(states));
  save(root, o.output);
}

}  // namespace

void register_average(CLI::App& app) {
  auto opts = std::make_shared<AverageOptions>();
  CLI::App* cmd = app.add_subcommand(
      "average", "Average the weights of checkpoints (floats: mean; integer buffers: the first's)");
  cmd->add_option("OUT", opts->output, "The checkpoint to write: {\"net\": <average>} (replaced atomically)")
      ->required();
  cmd->add_option("CKPT", opts->inputs, "The checkpoints (or bare state dicts) to average")->required();
  cmd->add_flag("--ema", opts->ema, "Average the checkpoints' ema_net instead of their net");
  add_load_options(*cmd, opts->load, /*with_crc_flag=*/true);
  cmd->callback([opts] { run_average(*opts); });
}

}  // namespace sgckpt::tool
