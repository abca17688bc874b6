// train_resnet18: trains the engine's ResNet18 from a SuperGradients-style YAML recipe, with
// SG's checkpoint lifecycle (run directories, ckpt_latest / ckpt_best / ckpt_epoch_N /
// average_model) and resume.
//
//   train_resnet18 --recipe examples/recipes/fashion_mnist_resnet18.yaml [key.path=value ...]
//   train_resnet18 --resume --experiment NAME --ckpt-root DIR [key.path=value ...]
//   train_resnet18 --run-id RUN_ID --experiment NAME --ckpt-root DIR
//   train_resnet18 --recipe R --resume-path FILE      (branch: a new run from FILE's weights)
//   train_resnet18 --evaluate ckpt_best.pth --experiment NAME --ckpt-root DIR [--run-id ID]
//   train_resnet18 --evaluate path/to/any.pth [--recipe R] [--metrics-json OUT.json]
//   train_resnet18 --resume-from-remote --remote s3://bucket/runs --experiment NAME --ckpt-root DIR
//
// Remote copies (docs/remote.md): with sg_logger_params.save_checkpoints_remote: true and
// sg_logger_params.remote_store: s3://bucket/prefix (or a directory; remote_endpoint for a
// custom S3 endpoint), every checkpoint, the recipe and the averaging snapshots go to
// <store>/<experiment>/<run_id>/ in the background (save_logs_remote / save_tensorboard_remote
// add the log and the events). --resume-from-remote (or
// training_hyperparams.resume_from_remote: true) downloads a run from the store into the
// local run directory (the newest run, or --run-id) and resumes it in place.
//
// --evaluate is SG's evaluate_checkpoint (a checkpoint of a run, scored with the recipe the run
// stored, unless --recipe) and evaluate_recipe (a checkpoint file by path, with --recipe or the
// recipe.yaml beside it). It scores the EMA weights when the file has them, as SG does, says
// which weights and which recipe it used and what the file itself records, and with
// --metrics-json writes the metrics as JSON.
//
// Overrides use Hydra's dotted syntax: training_hyperparams.max_epochs=3. A resumed run
// (--resume / --run-id) reads the recipe its run stored (recipe.yaml), like SG's
// resume_experiment; overrides still apply (e.g. more epochs). Unknown recipe keys are an
// error, so a typo does not silently train something else.
//
// Output: on a terminal, a progress bar per epoch (batches, running loss and accuracy, img/s,
// elapsed<left); with --log-every N instead one line per N steps ("step epoch=E batch=B/N
// loss=L acc=A img/s=X"); one line per epoch; at the end a summary (time, best epoch, the
// checkpoints), where the run log and the TensorBoard events are, and last "run_dir=<path>".
//
// Recipes are input too: a recipe file is a regular file of at most 1 MiB, without YAML
// anchors or aliases, at most 64 levels deep (so are a stored recipe.yaml and each override
// value). Everything is validated before anything is created on disk: a refused recipe
// leaves no run directory behind.
#include <yaml-cpp/anchor.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "sgckpt/ckpt/remote/pull.hpp"
#include "sgckpt/engine/dist/launch.hpp"
#include "sgckpt/engine/engine.hpp"
#include "sgckpt/engine/train/progress.hpp"
#include "sgckpt/engine/train/trainer.hpp"
#include "sgckpt/lifecycle.hpp"
#ifdef SGCKPT_EXAMPLE_REMOTE
#include "sgckpt/remote.hpp"
#endif
#ifdef SGCKPT_EXAMPLE_MPI
#include "sgckpt/engine/dist/mpi.hpp"
#endif
#ifdef SGCKPT_EXAMPLE_CUDA
#include "sgckpt/cuda/cuda.hpp"
#endif

using namespace sgckpt;
using namespace sgckpt::engine;
namespace fs = std::filesystem;

namespace {

// In a data-parallel run only rank 0 speaks (the others' lines would repeat it).
bool g_quiet = false;
[[maybe_unused]] bool g_distributed = false;  // an MPI job is running: an error on one rank must end all

void say(const std::string& line) {
  if (g_quiet) return;
  std::fputs((line + "\n").c_str(), stdout);
  std::fflush(stdout);  // a test reading our output line by line sees each one at once
}

std::string fmt(double v, int digits = 4) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// Per-step output: on a terminal, a progress bar redrawn in place; with --log-every N (or
// where stdout is not a terminal and N is given), a plain line every N steps:
// "step epoch=E batch=B/N loss=L acc=A img/s=X" (running means over the epoch so far).
// `keep` receives what the run log keeps of it: the step lines and each epoch's final bar.
std::function<void(const train::StepInfo&)> progress_printer(int max_epochs, std::int64_t log_every,
                                                             std::function<void(std::string_view)> keep) {
  struct Running {
    int epoch = -1;
    double loss = 0;
    std::int64_t correct = 0, seen = 0;
  };
  auto run = std::make_shared<Running>();
  auto bar = std::make_shared<train::ProgressLine>(stdout);
  const bool tty = ::isatty(::fileno(stdout)) == 1;
  return [=](const train::StepInfo& s) {
    if (s.epoch != run->epoch) *run = {s.epoch, 0, 0, 0};
    run->loss += s.loss * static_cast<double>(s.samples);
    run->correct += s.correct;
    run->seen += s.samples;
    const double elapsed = s.elapsed;  // from the epoch's start: the first batch's time counts
    const double seen = static_cast<double>(run->seen);
    const train::Progress p{s.epoch + 1,
                            max_epochs,
                            s.batch + 1,
                            s.batches,
                            run->loss / seen,
                            run->correct / seen,
                            seen / std::max(elapsed, 1e-9),
                            elapsed};
    if (log_every > 0) {
      if ((s.batch + 1) % log_every == 0 || s.batch + 1 == s.batches) {
        const std::string line = "step epoch=" + std::to_string(p.epoch) +
                                 " batch=" + std::to_string(p.batch) + "/" + std::to_string(p.batches) +
                                 " loss=" + fmt(s.loss) + " acc=" + fmt(p.accuracy) +
                                 " img/s=" + fmt(p.images_per_second, 0);
        say(line);
        keep(line);
      }
    } else if (tty) {
      bar->update(p);
    }
    if (log_every <= 0 && p.batch == p.batches) keep(train::progress_text(p));
  };
}

// The end-of-run summary: time, the best epoch and its metric, where the files are.
std::string run_summary(const train::TrainResult& result, const std::string& metric, double seconds) {
  std::string best = "no improvement recorded";
  for (const auto& e : result.epochs)
    if (e.best)
      for (const auto& [name, value] : e.metrics.valid)
        if (name == metric) best = "best epoch " + std::to_string(e.epoch) + ": " + name + "=" + fmt(value);
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& f : fs::directory_iterator(result.run_dir, ec))
    if (f.path().extension() == ".pth") files.push_back(f.path().filename().string());
  std::sort(files.begin(), files.end());
  std::string list;
  for (const auto& f : files) list += (list.empty() ? "" : ", ") + f;
  return "finished " + std::to_string(result.epochs.size()) + " epoch(s) in " + train::clock_text(seconds) +
         "; " + best + "; checkpoints in " + result.run_dir.string() + ": " + list;
}

// ---- Recipes are input too: bounded, and without aliases -----------------------------------------

constexpr std::uint64_t kMaxRecipeBytes = std::uint64_t{1} << 20;  // SG's recipes are a few KiB
constexpr int kMaxRecipeDepth = 64;
constexpr std::size_t kMaxRecipeNodes = 100'000;

// Walks a recipe's YAML events before any tree is built from them. An alias repeats a whole
// subtree: nested aliases ("billion laughs": b is ten a's, c ten b's, ...) make a 756-byte
// recipe expand into gigabytes when it is walked or dumped. SG's recipes need neither
// anchors nor aliases (Hydra composes with defaults lists), so both are refused outright;
// depth and node count are bounded too. The first offending event stops the parse.
class RecipeGuard : public YAML::EventHandler {
 public:
  explicit RecipeGuard(std::string source) : source_(std::move(source)) {}

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& m, YAML::anchor_t a) override { node(m, a); }
  void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { refuse(m, "an alias"); }
  void OnAnchor(const YAML::Mark& m, const std::string& name) override { refuse(m, "the anchor &" + name); }
  void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t a, const std::string&) override {
    node(m, a);
  }
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t a,
                       YAML::EmitterStyle::value) override {
    open(m, a);
  }
  void OnSequenceEnd() override { --depth_; }
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t a,
                  YAML::EmitterStyle::value) override {
    open(m, a);
  }
  void OnMapEnd() override { --depth_; }

 private:
  void node(const YAML::Mark& m, YAML::anchor_t anchor) {
    if (anchor != YAML::NullAnchor) refuse(m, "an anchor");
    if (++nodes_ > kMaxRecipeNodes) fail(m, "more than " + std::to_string(kMaxRecipeNodes) + " values");
  }
  void open(const YAML::Mark& m, YAML::anchor_t anchor) {
    node(m, anchor);
    if (++depth_ > kMaxRecipeDepth)
      fail(m, "nested deeper than " + std::to_string(kMaxRecipeDepth) + " levels");
  }
  [[noreturn]] void refuse(const YAML::Mark& m, const std::string& what) {
    fail(m, "recipes may not use YAML aliases/anchors (found " + what + ")");
  }
  [[noreturn]] void fail(const YAML::Mark& m, const std::string& why) {
    // yaml-cpp's marks count from 0; editors count lines and columns from 1.
    throw Error(source_ + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1) + ": " + why);
  }

  std::string source_;
  std::size_t nodes_ = 0;
  int depth_ = 0;
};

// Recipe text (a file's, a run's stored recipe.yaml, an override's value) as a YAML tree,
// once it passed the guard. `source` names it in errors.
YAML::Node load_recipe_yaml(const std::string& text, const std::string& source) {
  if (text.size() > kMaxRecipeBytes)
    throw Error(source + ": " + std::to_string(text.size()) + " bytes, more than the " +
                std::to_string(kMaxRecipeBytes) + " bytes a recipe may have");
  try {
    std::istringstream in(text);
    YAML::Parser parser(in);
    RecipeGuard guard(source);
    while (parser.HandleNextDocument(guard)) {
    }
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw Error(source + ": not valid YAML: " + e.what());
  }
}

// A recipe file: a regular file (not a FIFO that blocks the read) of at most kMaxRecipeBytes.
YAML::Node load_recipe_file(const std::string& file) {
  return load_recipe_yaml(read_regular_file(file, kMaxRecipeBytes, "a recipe"), file);
}

// ---- The recipe: a YAML tree read strictly ----------------------------------------------------

// Reads keys of one mapping, remembering which were used, so that leftovers can be reported.
// Levenshtein distance (keys are short: a row at a time is plenty).
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

class Section {
 public:
  Section(YAML::Node node, std::string path) : node_(std::move(node)), path_(std::move(path)) {
    if (node_ && !node_.IsNull() && !node_.IsMap()) throw Error("recipe: '" + path_ + "' must be a mapping");
  }
  YAML::Node get(const std::string& key) {
    used_.insert(key);
    return node_ && node_.IsMap() ? node_[key] : YAML::Node();
  }
  template <class T>
  T value(const std::string& key, T dflt) {
    const YAML::Node n = get(key);
    if (!n || n.IsNull()) return dflt;
    try {
      return n.as<T>();
    } catch (const YAML::Exception&) {
      throw Error("recipe: '" + where(key) + "' has the wrong type (" + YAML::Dump(n) + ")");
    }
  }
  Section sub(const std::string& key) { return Section(get(key), where(key)); }
  std::string where(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  // Throws for keys nobody asked for, suggesting the known key closest to a typo.
  void finish() const {
    if (!node_ || !node_.IsMap()) return;
    for (const auto& kv : node_) {
      const std::string k = kv.first.as<std::string>();
      if (used_.count(k)) continue;
      std::string best;
      std::size_t best_distance = 3;  // suggest only within 2 edits
      for (const auto& known : used_)
        if (const std::size_t d = edit_distance(k, known); d < best_distance) best = known, best_distance = d;
      throw Error("recipe: unknown key '" + where(k) + "'" +
                  (best.empty() ? std::string() : " (did you mean '" + where(best) + "'?)"));
    }
  }

 private:
  YAML::Node node_;
  std::string path_;
  std::set<std::string> used_;
};

// A YAML scalar or sequence as a sgckpt value (a torch keyword argument): bool, int, float,
// string; sequences become tuples, as torch's defaults (betas=(0.9, 0.999)) are.
Value to_value(const YAML::Node& n, const std::string& where) {
  if (n.IsSequence()) {
    Value t = Value::make_tuple({});
    for (const auto& item : n) t.items().push_back(to_value(item, where));
    return t;
  }
  if (!n.IsScalar()) throw Error("recipe: '" + where + "' must be a scalar or a list");
  const std::string s = n.Scalar();
  if (s == "true" || s == "True") return Value(true);
  if (s == "false" || s == "False") return Value(false);
  std::int64_t i = 0;
  if (auto r = std::from_chars(s.data(), s.data() + s.size(), i);
      r.ec == std::errc() && r.ptr == s.data() + s.size())
    return Value(Int(i));
  double d = 0;
  if (auto r = std::from_chars(s.data(), s.data() + s.size(), d);
      r.ec == std::errc() && r.ptr == s.data() + s.size())
    return Value(d);
  return Value(s);
}

// Applies "a.b.c=value" to the tree (value parsed as YAML).
void apply_override(YAML::Node& root, const std::string& text) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) throw Error("override \"" + text + "\" is not key.path=value");
  const std::string path = text.substr(0, eq);
  const YAML::Node value = load_recipe_yaml(text.substr(eq + 1), "override \"" + text + "\"");
  std::vector<std::string> keys;
  std::stringstream ss(path);
  for (std::string k; std::getline(ss, k, '.');) keys.push_back(k);
  // yaml-cpp nodes are handles: descend with copies of the handle, assign at the leaf.
  std::vector<YAML::Node> chain{root};
  for (std::size_t i = 0; i + 1 < keys.size(); ++i) {
    YAML::Node next = chain.back()[keys[i]];
    if (!next.IsDefined() || next.IsNull()) {
      chain.back()[keys[i]] = YAML::Node(YAML::NodeType::Map);
      next = chain.back()[keys[i]];
    }
    if (!next.IsMap()) throw Error("override \"" + text + "\": '" + keys[i] + "' is not a mapping");
    chain.push_back(next);
  }
  chain.back()[keys.back()] = value;
}

struct Recipe {
  std::string experiment_name;
  fs::path ckpt_root_dir;
  std::string dataset = "fashion_mnist";
  fs::path data_root;
  std::int64_t train_samples = -1, valid_samples = -1;
  nn::ResNet18Config arch;
  double width = 1.0;
  train::TrainConfig train;
  CheckpointConfig ckpt;
  // sg_logger_params: remote copies of the run.
  bool save_checkpoints_remote = false;
  std::string remote_store;     // s3://bucket[/prefix], file:///dir or a directory
  std::string remote_endpoint;  // a custom S3 endpoint ("": the AWS_* environment)
  bool resume_from_remote = false;
};

// The store the recipe (or the command line) names; an Error when this build has none.
std::shared_ptr<remote::Store> open_remote_store(const std::string& url, const std::string& endpoint) {
  if (url.empty())
    throw Error(
        "remote copies need a store: set sg_logger_params.remote_store (s3://bucket/prefix or a directory)");
#ifdef SGCKPT_EXAMPLE_REMOTE
  return remote::open_store(url, endpoint);
#else
  (void)endpoint;
  throw Error(
      "this train_resnet18 was built without libcurl: no remote store (install libcurl4-openssl-dev)");
#endif
}

// Numbers that would only fail after the run directory exists are refused here, before
// anything is written.
void validate(const Recipe& r) {
  auto positive = [](const char* key, double v) {
    if (!(v > 0)) throw Error(std::string("recipe: ") + key + " must be positive (got " + fmt(v) + ")");
  };
  auto count = [](const char* key, std::int64_t v) {
    if (v == 0 || v < -1)
      throw Error(std::string("recipe: ") + key + " must be a positive count, or -1 for all (got " +
                  std::to_string(v) + ")");
  };
  positive("training_hyperparams.max_epochs", r.train.max_epochs);
  positive("training_hyperparams.batch_size", static_cast<double>(r.train.batch_size));
  positive("training_hyperparams.valid_batch_size", static_cast<double>(r.train.valid_batch_size));
  positive("training_hyperparams.initial_lr", r.train.lr.initial_lr);
  positive("arch_params.num_classes", static_cast<double>(r.arch.num_classes));
  positive("arch_params.in_channels", static_cast<double>(r.arch.in_channels));
  positive("arch_params.width_mult (each layer's width int(64 * width_mult) and up)",
           static_cast<double>(r.arch.planes[0]));
  positive("training_hyperparams.n_models_to_average", static_cast<double>(r.ckpt.n_models_to_average));
  count("dataset_params.train_samples", r.train_samples);
  count("dataset_params.valid_samples", r.valid_samples);
}

Recipe parse_recipe(const YAML::Node& root) {
  Recipe r;
  Section top(root, "");
  r.experiment_name = top.value<std::string>("experiment_name", "resnet18");
  r.ckpt_root_dir = top.value<std::string>("ckpt_root_dir", "checkpoints");

  Section ds = top.sub("dataset_params");
  r.dataset = ds.value<std::string>("name", "fashion_mnist");
  r.data_root = ds.value<std::string>(
      "root", r.dataset == "cifar10" ? "data/cifar-10-batches-bin" : "/usr/share/datasets/fashion-mnist");
  r.train_samples = ds.value<std::int64_t>("train_samples", -1);
  r.valid_samples = ds.value<std::int64_t>("valid_samples", -1);
  ds.finish();

  Section arch = top.sub("arch_params");
  const auto classes = arch.value<std::int64_t>("num_classes", 10);
  r.width = arch.value<double>("width_mult", 1.0);
  const auto in_channels = arch.value<std::int64_t>("in_channels", 3);
  arch.finish();
  r.arch = nn::ResNet18Config::cifar(classes, r.width, in_channels);

  Section th = top.sub("training_hyperparams");
  auto& t = r.train;
  t.max_epochs = th.value<int>("max_epochs", 10);
  t.batch_size = th.value<std::int64_t>("batch_size", 64);
  t.valid_batch_size = th.value<std::int64_t>("valid_batch_size", 256);
  const auto mode = th.value<std::string>("lr_mode", "cosine");
  if (mode == "step" || mode == "StepLRScheduler")
    t.lr.mode = SGLRConfig::Mode::Step;
  else if (mode == "cosine" || mode == "CosineLRScheduler")
    t.lr.mode = SGLRConfig::Mode::Cosine;
  else if (mode == "poly" || mode == "PolyLRScheduler")
    t.lr.mode = SGLRConfig::Mode::Poly;
  else
    throw Error("recipe: training_hyperparams.lr_mode \"" + mode + "\" is not step, cosine or poly");
  t.lr.initial_lr = th.value<double>("initial_lr", 0.1);
  t.lr.lr_updates = th.value<std::vector<int>>("lr_updates", {});
  t.lr.lr_decay_factor = th.value<double>("lr_decay_factor", 0.1);
  t.lr.cosine_final_lr_ratio = th.value<double>("cosine_final_lr_ratio", 0.01);
  t.lr.lr_warmup_epochs = th.value<int>("lr_warmup_epochs", 0);
  t.lr.warmup_initial_lr = th.value<double>("warmup_initial_lr", 0.0);
  t.optimizer = th.value<std::string>("optimizer", "SGD");
  {
    const YAML::Node op = th.get("optimizer_params");
    if (op && !op.IsNull()) {
      if (!op.IsMap()) throw Error("recipe: 'training_hyperparams.optimizer_params' must be a mapping");
      for (const auto& kv : op) {
        const std::string k = kv.first.as<std::string>();
        t.optimizer_params[k] = to_value(kv.second, "training_hyperparams.optimizer_params." + k);
      }
    }
  }
  t.zero_weight_decay_on_bias_and_bn = th.value<bool>("zero_weight_decay_on_bias_and_bn", false);
  t.mixed_precision = th.value<bool>("mixed_precision", false);
  t.batch_accumulate = th.value<int>("batch_accumulate", 1);
  t.ema = th.value<bool>("ema", false);
  {
    Section ep = th.sub("ema_params");
    t.ema_params.decay = ep.value<double>("decay", 0.9999);
    t.ema_params.type = parse_ema_decay_type(ep.value<std::string>("decay_type", "exp"));
    t.ema_params.beta = ep.value<double>("beta", 15.0);
    ep.finish();
  }
  {
    Section cp = th.sub("criterion_params");
    t.label_smoothing = cp.value<float>("label_smoothing", 0.0f);
    cp.finish();
  }
  {
    Section au = th.sub("augment");
    t.augment.crop_padding = au.value<std::int64_t>("crop_padding", 0);
    t.augment.horizontal_flip = au.value<bool>("horizontal_flip", false);
    au.finish();
  }
  t.logging.tensorboard = th.value<bool>("tensorboard", true);
  t.logging.step_loss_every = th.value<std::int64_t>("tensorboard_step_loss_every", 0);
  t.seed = th.value<std::uint64_t>("seed", 42);
  // SG's name and the short one; the command line's --resume-from-remote does the same.
  r.resume_from_remote =
      th.value<bool>("resume_from_remote", false) || th.value<bool>("resume_from_remote_sg_logger", false);
  t.shuffle = th.value<bool>("shuffle", true);
  t.prefetch_batches = th.value<std::size_t>("prefetch_batches", 2);
  auto& c = r.ckpt;
  c.metric_to_watch = th.value<std::string>("metric_to_watch", "Accuracy");
  c.greater_metric_to_watch_is_better = th.value<bool>("greater_metric_to_watch_is_better", true);
  c.save_ckpt_epoch_list = th.value<std::vector<std::int64_t>>("save_ckpt_epoch_list", {});
  c.average_best_models = th.value<bool>("average_best_models", true);
  c.n_models_to_average = th.value<std::size_t>("n_models_to_average", 10);
  c.durable = th.value<bool>("durable_checkpoints", true);
  th.finish();
  {
    Section sg = top.sub("sg_logger_params");
    r.save_checkpoints_remote = sg.value<bool>("save_checkpoints_remote", false);
    t.logging.save_logs_remote = sg.value<bool>("save_logs_remote", false);
    t.logging.save_tensorboard_remote = sg.value<bool>("save_tensorboard_remote", false);
    r.remote_store = sg.value<std::string>("remote_store", "");
    r.remote_endpoint = sg.value<std::string>("remote_endpoint", "");
    // How hard one checkpoint's upload tries before it waits for the next checkpoint, and how
    // long the end of the run waits for the uploads.
    auto bounded = [&](const char* key, std::int64_t dflt, std::int64_t lo, std::int64_t hi) {
      const auto v = sg.value<std::int64_t>(key, dflt);
      if (v < lo || v > hi)
        throw Error("recipe: sg_logger_params." + std::string(key) + " must be " + std::to_string(lo) + ".." +
                    std::to_string(hi) + " (got " + std::to_string(v) + ")");
      return v;
    };
    r.ckpt.remote_options.attempts_per_round = static_cast<int>(bounded("remote_attempts", 4, 1, 1000));
    r.ckpt.remote_options.backoff = std::chrono::milliseconds(bounded("remote_backoff_ms", 1000, 1, 3600000));
    r.ckpt.remote_finish_timeout = std::chrono::seconds(bounded("remote_finish_timeout", 600, 0, 604800));
    sg.finish();
  }
  top.finish();
  validate(r);
  c.ckpt_root_dir = r.ckpt_root_dir;
  c.experiment_name = r.experiment_name;
  c.architecture = "resnet18_cifar";
  return r;
}

data::Dataset load_dataset(const Recipe& r, data::Split split) {
  const std::int64_t limit = split == data::Split::Train ? r.train_samples : r.valid_samples;
  // A root that holds the other dataset (a name overridden, the recipe's root kept) is named as such.
  auto require = [&](const char* file, const char* what) {
    if (!fs::exists(r.data_root / file) && !fs::exists(r.data_root / (std::string(file) + ".gz")))
      throw Error("recipe: dataset_params.root '" + r.data_root.string() + "' holds no " + what + " (" +
                  file + "): set dataset_params.root to the " + r.dataset + " directory");
  };
  if (r.dataset == "fashion_mnist") {
    require("t10k-images-idx3-ubyte", "Fashion-MNIST");
    return data::fashion_mnist(r.data_root, split, limit, r.arch.in_channels);
  }
  if (r.dataset == "cifar10") {
    require("test_batch.bin", "CIFAR-10 binary batches");
    return data::cifar10(r.data_root, split, limit);
  }
  throw Error("recipe: dataset_params.name \"" + r.dataset + "\" is not fashion_mnist or cifar10");
}

std::string metrics_text(const MetricList& m) {
  std::string s;
  for (const auto& [k, v] : m) s += (s.empty() ? "" : " ") + k + "=" + fmt(v);
  return s;
}

// ---- Ctrl-C ---------------------------------------------------------------------------------

// What SIGINT prints before exiting with 130: what is saved and how to continue. Rebuilt
// after each epoch; the handler only reads the current text (write(2) is async-signal-safe).
std::atomic<const char*> g_interrupt_text{nullptr};
std::deque<std::string> g_interrupt_texts;  // keeps every published text alive

void set_interrupt_text(std::string text) {
  g_interrupt_texts.push_back(std::move(text));
  g_interrupt_text.store(g_interrupt_texts.back().c_str());
}

extern "C" void on_interrupt(int) {
  if (const char* t = g_interrupt_text.load()) {
    const ssize_t ignored = ::write(STDERR_FILENO, t, std::strlen(t));
    (void)ignored;
  }
  ::_exit(130);
}

// ---- --evaluate ---------------------------------------------------------------------------

// The file --evaluate names: a path (it has a '/'), or a checkpoint name in the run
// (--run-id, else the latest run of the experiment).
fs::path evaluation_file(const std::string& evaluate, const fs::path& ckpt_root,
                         const std::string& experiment, const std::string& run_id) {
  if (evaluate.find('/') != std::string::npos) {
    if (!fs::is_regular_file(evaluate)) throw Error("--evaluate: no checkpoint file \"" + evaluate + "\"");
    return evaluate;
  }
  if (experiment.empty() || ckpt_root.empty())
    throw Error("--evaluate " + evaluate +
                " needs --experiment and --ckpt-root (or --recipe naming them), or a path to the file");
  return evaluate_checkpoint_path(ckpt_root, experiment, evaluate,
                                  run_id.empty() ? std::nullopt : std::optional<std::string>(run_id));
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

struct Evaluation {
  fs::path file;
  std::string weights;  // "ema_net", "net" or "state dict"
  std::string recipe;   // where the recipe came from
  MetricList metrics;
  std::optional<double> recorded;  // the file's own "acc"
  std::optional<std::int64_t> epoch;
};

void write_metrics_json(const fs::path& out, const Evaluation& e, const std::string& metric_name) {
  std::string j = "{\"checkpoint\": " + json_string(e.file.string()) +
                  ", \"weights\": " + json_string(e.weights) + ", \"recipe\": " + json_string(e.recipe) +
                  ", \"metrics\": {";
  bool first = true;
  for (const auto& [k, v] : e.metrics) {
    j += (first ? "" : ", ") + json_string(k) + ": " + float_text(v);
    first = false;
  }
  j += "}, \"recorded\": {";
  if (e.recorded) j += json_string(metric_name) + ": " + float_text(*e.recorded);
  if (e.epoch) j += std::string(e.recorded ? ", " : "") + "\"epoch\": " + std::to_string(*e.epoch);
  j += "}}\n";
  std::ofstream f(out, std::ios::binary);
  if (!(f << j) || !f.flush()) throw Error("cannot write " + out.string());
}

// Scores `file` on the recipe's validation set with the EMA weights when it has them.
Evaluation evaluate_file(const fs::path& file, const Recipe& r, const data::Dataset& valid) {
  Evaluation e;
  e.file = file;
  const Value ck = load(file, {.mmap = true});
  const std::string_view which = checkpoint_state_dict_key(ck, Weights::PreferEma);
  e.weights = which.empty() ? "state dict" : std::string(which);
  const Value& sd = checkpoint_state_dict(ck, Weights::PreferEma);
  train::Trainer trainer(nn::ResNet18Config::from_state_dict(sd), r.train, r.ckpt);
  trainer.model().load_state_dict(sd);
  e.metrics = trainer.evaluate(trainer.model(), valid);
  if (ck.is_dict() && ck.contains("acc") && ck.at("acc").is_number()) e.recorded = ck.at("acc").as_number();
  if (ck.is_dict() && ck.contains("epoch") && ck.at("epoch").is_int()) e.epoch = ck.at("epoch").as_int();
  return e;
}

// The collective of a data-parallel run when a launcher started several processes, else null.
// Rank 0 keeps the terminal. Errors name the launcher's missing variable (dist/launch.hpp).
std::unique_ptr<dist::Collective> data_parallel(int& argc, char**& argv, int timeout_seconds) {
  const dist::LaunchInfo launch = dist::launch_info_from_env();
  if (launch.world_size == 1) return nullptr;
  if (launch.launcher == "torchrun")
    throw Error(
        "torchrun's environment (RANK, WORLD_SIZE, ...) needs the NCCL backend, which comes with CUDA; "
        "on CPUs launch with mpirun -np N");
#ifdef SGCKPT_EXAMPLE_MPI
  static dist::MpiSession session(&argc, &argv);
  auto c = std::make_unique<dist::MpiCollective>(
      session, dist::MpiOptions{.timeout = std::chrono::seconds(timeout_seconds)});
  g_quiet = c->rank() != 0;
  g_distributed = true;
  return c;
#else
  (void)argc;
  (void)argv;
  (void)timeout_seconds;
  throw Error("launched as rank " + std::to_string(launch.rank) + " of " + std::to_string(launch.world_size) +
              " by " + launch.launcher +
              ", but this train_resnet18 was built without MPI (install libopenmpi-dev)");
#endif
}

// --resume-from-remote, or training_hyperparams.resume_from_remote in the given recipe: the
// run comes from the store into <ckpt_root>/<experiment>/<run_id> (the newest run in the
// store unless run_id is given), and run_id, experiment and ckpt_root then name it, so that
// it resumes like any local run (recipe: the given file, else the one the run stored).
void pull_remote_run(const std::string& recipe_file, const std::vector<std::string>& overrides,
                     bool resume_from_remote, std::string url, std::string endpoint, std::string& experiment,
                     std::string& ckpt_root, std::string& run_id) {
  std::string exp = experiment, root_dir = ckpt_root;
  if (!recipe_file.empty()) {
    YAML::Node given = load_recipe_file(recipe_file);
    for (const auto& o : overrides) apply_override(given, o);
    if (!experiment.empty()) given["experiment_name"] = experiment;
    if (!ckpt_root.empty()) given["ckpt_root_dir"] = ckpt_root;
    const Recipe g = parse_recipe(given);
    resume_from_remote = resume_from_remote || g.resume_from_remote;
    if (url.empty()) url = g.remote_store;
    if (endpoint.empty()) endpoint = g.remote_endpoint;
    exp = g.experiment_name;
    root_dir = g.ckpt_root_dir.string();
  }
  if (!resume_from_remote) return;
  // Every rank would download into the same directory at once (and each node would need the
  // files): under a launcher, fetch the run first, then continue it with --run-id.
  if (const dist::LaunchInfo launch = dist::launch_info_from_env(); launch.world_size > 1)
    throw Error(
        "--resume-from-remote runs in one process: fetch the run first (sgckpt pull "
        "<store>/<experiment>/<run_id> <ckpt_root>/<experiment>/<run_id>), then launch the ranks with "
        "--run-id");
  if (exp.empty() || root_dir.empty())
    throw Error("--resume-from-remote needs --experiment and --ckpt-root (or a --recipe that names them)");
  const auto store = open_remote_store(url, endpoint);
  const ResumePlan plan =
      remote::resume_from_remote(*store, root_dir, exp, run_id.empty() ? std::nullopt : std::optional(run_id),
                                 [](std::string_view line) { say("[sgckpt] " + std::string(line)); });
  run_id = plan.run_dir.filename().string();
  experiment = exp;
  ckpt_root = root_dir;
}

// --device: cpu; cuda (an error naming the reason when no GPU is usable); auto (cuda when usable).
Device choose_device(const std::string& d) {
  if (d == "cpu") return Device::CPU;
  if (d != "cuda" && d != "auto") throw Error("--device must be cpu, cuda or auto (got '" + d + "')");
#ifdef SGCKPT_EXAMPLE_CUDA
  const sgckpt::cuda::DeviceStatus st = sgckpt::cuda::probe();
  if (st.usable) {
    sgckpt::cuda::install();
    say("[sgckpt] device: " + st.name + " (float32)");
    return Device::CUDA;
  }
  if (d == "cuda") throw Error("--device cuda: " + st.reason);
  say("[sgckpt] --device auto: " + st.reason + "; training on the CPU");
#else
  if (d == "cuda")
    throw Error("--device cuda: this build has no CUDA backend (configure with -DSGCKPT_CUDA=ON)");
#endif
  return Device::CPU;
}

int run(int argc, char** argv) {
  CLI::App app{"Trains the engine's ResNet18 with SuperGradients' checkpoint lifecycle"};
  std::string recipe_file, experiment, ckpt_root, run_id, resume_path, evaluate, metrics_json;
  bool resume = false;
  int threads = 0;
  std::int64_t log_every = 0;
  std::vector<std::string> overrides;
  std::string device = "cpu";
  app.add_option("--recipe", recipe_file, "YAML recipe (SG-style keys); not needed with --resume/--run-id");
  app.add_option("--experiment", experiment, "experiment_name (overrides the recipe's)");
  app.add_option("--ckpt-root", ckpt_root, "ckpt_root_dir (overrides the recipe's)");
  app.add_flag("--resume", resume, "continue the latest run of the experiment, in place");
  app.add_option("--run-id", run_id, "continue this run (RUN_<time>), in place");
  app.add_option("--resume-path", resume_path, "start a new run from this checkpoint's weights and state");
  app.add_option(
      "--evaluate", evaluate,
      "evaluate this checkpoint of the run (e.g. ckpt_best.pth), or a checkpoint file by path, and exit");
  app.add_option("--metrics-json", metrics_json, "with --evaluate: also write the metrics to this JSON file");
  bool print_config = false;
  app.add_flag("--print-config", print_config,
               "print the effective recipe (file or stored recipe, overrides applied), checked, and exit");
  app.add_option("--threads", threads, "CPU threads (default: $SGCKPT_NUM_THREADS or all cores)");
  app.add_option("--log-every", log_every, "print a step line every N steps (0: epochs only)");
  int dist_timeout = 1800;
  app.add_option("--dist-timeout", dist_timeout,
                 "under mpirun: seconds a rank waits for the others before the run stops (default 1800)");
  bool resume_from_remote = false;
  std::string remote_url, remote_endpoint;
  app.add_flag("--resume-from-remote", resume_from_remote,
               "download the run (the newest, or --run-id) from the store into --ckpt-root, then resume it");
  app.add_option("--remote", remote_url,
                 "the store: s3://bucket[/prefix] or a directory (sets sg_logger_params.remote_store)");
  app.add_option("--remote-endpoint", remote_endpoint,
                 "S3 endpoint URL (sets sg_logger_params.remote_endpoint; default: the AWS_* environment)");
  app.add_option("--device", device,
                 "where to train: cpu (default), cuda or auto (cuda when a GPU is usable)");
  app.add_option("overrides", overrides, "key.path=value recipe overrides");
  CLI11_PARSE(app, argc, argv);
  if (threads > 0) set_num_threads(threads);

  if (!metrics_json.empty() && evaluate.empty()) throw Error("--metrics-json goes with --evaluate");

  if (evaluate.empty() && (resume_from_remote || !recipe_file.empty()))
    pull_remote_run(recipe_file, overrides, resume_from_remote, remote_url, remote_endpoint, experiment,
                    ckpt_root, run_id);

  // The recipe: the given file, else the run's stored one when continuing or evaluating a run.
  YAML::Node root;
  std::string recipe_source = recipe_file;
  std::optional<ExperimentResume> continued;
  std::optional<fs::path> eval_file;
  if (!evaluate.empty() && recipe_file.empty()) {
    eval_file = evaluation_file(evaluate, ckpt_root, experiment, run_id);
    const fs::path stored = eval_file->parent_path() / std::string(kRecipeFileName);
    if (!fs::is_regular_file(stored))
      throw Error("--evaluate " + eval_file->string() + ": its directory holds no " +
                  std::string(kRecipeFileName) + " (the run's recipe): give --recipe");
    root = load_recipe_file(stored.string());
    recipe_source = stored.string();
  } else if (evaluate.empty() && (resume || !run_id.empty())) {
    if (experiment.empty() || ckpt_root.empty())
      throw Error("--resume and --run-id need --experiment and --ckpt-root (where to look for the run)");
    continued = resume_experiment(ckpt_root, experiment,
                                  run_id.empty() ? std::nullopt : std::optional<std::string>(run_id));
    const fs::path stored = continued->plan.run_dir / std::string(kRecipeFileName);
    root = recipe_file.empty() ? load_recipe_yaml(continued->recipe_text, stored.string())
                               : load_recipe_file(recipe_file);
  } else if (!recipe_file.empty()) {
    root = load_recipe_file(recipe_file);
  } else {
    throw Error("give --recipe FILE (or --resume/--run-id with --experiment and --ckpt-root)");
  }
  if (!root || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  for (const auto& o : overrides) apply_override(root, o);
  if (!experiment.empty()) root["experiment_name"] = experiment;
  if (!ckpt_root.empty()) root["ckpt_root_dir"] = ckpt_root;
  if (!remote_url.empty()) root["sg_logger_params"]["remote_store"] = remote_url;
  if (!remote_endpoint.empty()) root["sg_logger_params"]["remote_endpoint"] = remote_endpoint;
  Recipe r = parse_recipe(root);
  if (print_config) {
    std::cout << YAML::Dump(root) << "\n";
    return 0;
  }
  r.ckpt.log = [](std::string_view line) { say("[sgckpt] " + std::string(line)); };
  if (r.save_checkpoints_remote) r.ckpt.remote = open_remote_store(r.remote_store, r.remote_endpoint);

  const data::Dataset valid = load_dataset(r, data::Split::Test);
  if (!evaluate.empty()) {
    const fs::path file =
        eval_file ? *eval_file : evaluation_file(evaluate, r.ckpt_root_dir, r.experiment_name, run_id);
    Evaluation e = evaluate_file(file, r, valid);
    e.recipe = recipe_source;
    say("evaluate " + file.string() + " [" + e.weights + "]: " + metrics_text(e.metrics));
    say("  recipe " + recipe_source + "; " + r.dataset + ", " + std::to_string(valid.size()) + " images" +
        (e.recorded ? "; the file records " + r.ckpt.metric_to_watch + "=" + fmt(*e.recorded) +
                          (e.epoch ? " (epoch " + std::to_string(*e.epoch) + ")" : "")
                    : ""));
    if (!metrics_json.empty()) write_metrics_json(metrics_json, e, r.ckpt.metric_to_watch);
    return 0;
  }
  const data::Dataset train_set = load_dataset(r, data::Split::Train);

  ResumePlan plan;
  if (continued) {
    plan = continued->plan;
  } else {
    ResumeRequest req;
    if (!resume_path.empty()) req.resume_path = resume_path;
    plan = resolve_resume(r.ckpt_root_dir, r.experiment_name, req);
  }
  std::string recipe_text = YAML::Dump(root) + "\n";

  const std::string resume_command = "train_resnet18 --resume --experiment " + r.experiment_name +
                                     " --ckpt-root " + r.ckpt_root_dir.string();
  set_interrupt_text(
      "\ntrain_resnet18: interrupted before an epoch finished: no new checkpoint was saved" +
      std::string(plan.checkpoint ? " (the run continues from " + plan.checkpoint->string() + ")" : "") +
      "\n");
  std::signal(SIGINT, on_interrupt);

  r.train.device = choose_device(device);
  train::Trainer trainer(r.arch, r.train, r.ckpt);
  const std::unique_ptr<dist::Collective> collective = data_parallel(argc, argv, dist_timeout);
  if (collective) {
    trainer.distribute(*collective);
    say(std::to_string(collective->world_size()) + " ranks (" + collective->backend() +
        "): each trains on its share of every epoch; rank 0 writes the run");
  }
  say("ResNet18 width " + fmt(r.width, 3) + ", " + std::to_string(trainer.model().num_parameters()) +
      " parameters; " + r.dataset + ": " + std::to_string(train_set.size()) + " train, " +
      std::to_string(valid.size()) + " valid images; " + std::to_string(num_threads()) + " thread(s)");
  trainer.on_step = progress_printer(r.train.max_epochs, log_every,
                                     [&trainer](std::string_view line) { trainer.note(line); });
  trainer.on_epoch = [&](const train::EpochSummary& e) {
    say("epoch " + std::to_string(e.epoch) + "/" + std::to_string(r.train.max_epochs) +
        " lr=" + fmt(e.lr, 5) + " train: " + metrics_text(e.metrics.train) + " | valid: " +
        metrics_text(e.metrics.valid) + (e.best ? " (best)" : "") + " | " + fmt(e.seconds, 1) + " s");
    set_interrupt_text("\ntrain_resnet18: interrupted; epoch " + std::to_string(e.epoch) + " of " +
                       std::to_string(r.train.max_epochs) +
                       " is saved in ckpt_latest.pth. Continue with:\n  " + resume_command + "\n");
  };
  const auto started = std::chrono::steady_clock::now();
  const train::TrainResult result = trainer.fit(train_set, valid, plan, recipe_text);
  if (result.epochs.empty())
    say("nothing to do: the checkpoint already finished " + std::to_string(result.start_epoch) + " of " +
        std::to_string(r.train.max_epochs) + " epochs");
  else
    say(run_summary(result, r.ckpt.metric_to_watch,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()));
  say("log=" + result.log.string());
  if (result.events)
    say("events=" + result.events->string() + " (tensorboard --logdir " +
        result.run_dir.parent_path().string() + ")");
  say("run_dir=" + result.run_dir.string());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_resnet18: error: %s\n", e.what());
#ifdef SGCKPT_EXAMPLE_MPI
    // One rank's failure ends the others too, instead of leaving them waiting for it.
    if (g_distributed) {
      std::fflush(stderr);
      sgckpt::engine::dist::MpiSession::abort(1);
    }
#endif
    return 1;
  }
}
