// train_resnet18: trains the engine's ResNet18 from a SuperGradients-style YAML recipe, with
// SG's checkpoint lifecycle (run directories, ckpt_latest / ckpt_best / ckpt_epoch_N /
// average_model) and resume.
//
//   train_resnet18 --recipe examples/recipes/fashion_mnist_resnet18.yaml [key.path=value ...]
//   train_resnet18 --resume --experiment NAME --ckpt-root DIR [key.path=value ...]
//   train_resnet18 --run-id RUN_ID --experiment NAME --ckpt-root DIR
//   train_resnet18 --recipe R --resume-path FILE      (branch: a new run from FILE's weights)
//   train_resnet18 --evaluate ckpt_best.pth --experiment NAME --ckpt-root DIR [--run-id ID]
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
#include <charconv>
#include <chrono>
#include <cstdio>
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

#include "sgckpt/engine/engine.hpp"
#include "sgckpt/engine/train/progress.hpp"
#include "sgckpt/engine/train/trainer.hpp"
#include "sgckpt/lifecycle.hpp"

using namespace sgckpt;
using namespace sgckpt::engine;
namespace fs = std::filesystem;

namespace {

void say(const std::string& line) {
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
std::function<void(const train::StepInfo&)> progress_printer(int max_epochs, std::int64_t log_every) {
  struct Running {
    int epoch = -1;
    double loss = 0;
    std::int64_t correct = 0, seen = 0;
    std::chrono::steady_clock::time_point t0{};
  };
  auto run = std::make_shared<Running>();
  auto bar = std::make_shared<train::ProgressLine>(stdout);
  const bool tty = ::isatty(::fileno(stdout)) == 1;
  return [=](const train::StepInfo& s) {
    if (s.epoch != run->epoch) *run = {s.epoch, 0, 0, 0, std::chrono::steady_clock::now()};
    run->loss += s.loss * static_cast<double>(s.samples);
    run->correct += s.correct;
    run->seen += s.samples;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - run->t0).count();
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
      if ((s.batch + 1) % log_every == 0 || s.batch + 1 == s.batches)
        say("step epoch=" + std::to_string(p.epoch) + " batch=" + std::to_string(p.batch) + "/" +
            std::to_string(p.batches) + " loss=" + fmt(s.loss) + " acc=" + fmt(p.accuracy) +
            " img/s=" + fmt(p.images_per_second, 0));
    } else if (tty) {
      bar->update(p);
    }
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
  // Throws for keys nobody asked for.
  void finish() const {
    if (!node_ || !node_.IsMap()) return;
    for (const auto& kv : node_) {
      const std::string k = kv.first.as<std::string>();
      if (!used_.count(k)) throw Error("recipe: unknown key '" + where(k) + "'");
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
};

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
  top.finish();
  c.ckpt_root_dir = r.ckpt_root_dir;
  c.experiment_name = r.experiment_name;
  c.architecture = "resnet18_cifar";
  return r;
}

data::Dataset load_dataset(const Recipe& r, data::Split split) {
  const std::int64_t limit = split == data::Split::Train ? r.train_samples : r.valid_samples;
  if (r.dataset == "fashion_mnist") return data::fashion_mnist(r.data_root, split, limit, r.arch.in_channels);
  if (r.dataset == "cifar10") return data::cifar10(r.data_root, split, limit);
  throw Error("recipe: dataset_params.name \"" + r.dataset + "\" is not fashion_mnist or cifar10");
}

std::string metrics_text(const MetricList& m) {
  std::string s;
  for (const auto& [k, v] : m) s += (s.empty() ? "" : " ") + k + "=" + fmt(v);
  return s;
}

int run(int argc, char** argv) {
  CLI::App app{"Trains the engine's ResNet18 with SuperGradients' checkpoint lifecycle"};
  std::string recipe_file, experiment, ckpt_root, run_id, resume_path, evaluate;
  bool resume = false;
  int threads = 0;
  std::int64_t log_every = 0;
  std::vector<std::string> overrides;
  app.add_option("--recipe", recipe_file, "YAML recipe (SG-style keys); not needed with --resume/--run-id");
  app.add_option("--experiment", experiment, "experiment_name (overrides the recipe's)");
  app.add_option("--ckpt-root", ckpt_root, "ckpt_root_dir (overrides the recipe's)");
  app.add_flag("--resume", resume, "continue the latest run of the experiment, in place");
  app.add_option("--run-id", run_id, "continue this run (RUN_<time>), in place");
  app.add_option("--resume-path", resume_path, "start a new run from this checkpoint's weights and state");
  app.add_option("--evaluate", evaluate, "evaluate this checkpoint of the run (e.g. ckpt_best.pth) and exit");
  app.add_option("--threads", threads, "CPU threads (default: $SGCKPT_NUM_THREADS or all cores)");
  app.add_option("--log-every", log_every, "print a step line every N steps (0: epochs only)");
  app.add_option("overrides", overrides, "key.path=value recipe overrides");
  CLI11_PARSE(app, argc, argv);
  if (threads > 0) set_num_threads(threads);

  // The recipe: the given file, else the run's stored one when continuing a run.
  YAML::Node root;
  std::optional<ExperimentResume> continued;
  if (resume || !run_id.empty()) {
    if (experiment.empty() || ckpt_root.empty())
      throw Error("--resume and --run-id need --experiment and --ckpt-root (where to look for the run)");
    continued = resume_experiment(ckpt_root, experiment,
                                  run_id.empty() ? std::nullopt : std::optional<std::string>(run_id));
    const fs::path stored = continued->plan.run_dir / std::string(kRecipeFileName);
    root = recipe_file.empty() ? load_recipe_yaml(continued->recipe_text, stored.string())
                               : load_recipe_file(recipe_file);
  } else if (!recipe_file.empty()) {
    root = load_recipe_file(recipe_file);
  } else if (evaluate.empty()) {
    throw Error("give --recipe FILE (or --resume/--run-id with --experiment and --ckpt-root)");
  }
  if (!root || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  for (const auto& o : overrides) apply_override(root, o);
  if (!experiment.empty()) root["experiment_name"] = experiment;
  if (!ckpt_root.empty()) root["ckpt_root_dir"] = ckpt_root;
  Recipe r = parse_recipe(root);
  r.ckpt.log = [](std::string_view line) { say("[sgckpt] " + std::string(line)); };

  const data::Dataset valid = load_dataset(r, data::Split::Test);
  if (!evaluate.empty()) {
    const fs::path file =
        evaluate_checkpoint_path(r.ckpt_root_dir, r.experiment_name, evaluate,
                                 run_id.empty() ? std::nullopt : std::optional<std::string>(run_id));
    // SG's evaluate_checkpoint: the EMA weights when the file has them, else its net (a bare
    // state dict works too).
    const Value ck = load(file, {.mmap = true});
    const std::string_view which = checkpoint_state_dict_key(ck, Weights::PreferEma);
    const Value& sd = checkpoint_state_dict(ck, Weights::PreferEma);
    nn::ResNet18Config arch = nn::ResNet18Config::from_state_dict(sd);
    train::Trainer trainer(arch, r.train, r.ckpt);
    trainer.model().load_state_dict(sd);
    say("evaluate " + file.string() + " [" + std::string(which.empty() ? "state dict" : which) +
        "]: " + metrics_text(trainer.evaluate(trainer.model(), valid)));
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

  train::Trainer trainer(r.arch, r.train, r.ckpt);
  say("ResNet18 width " + fmt(r.width, 3) + ", " + std::to_string(trainer.model().num_parameters()) +
      " parameters; " + r.dataset + ": " + std::to_string(train_set.size()) + " train, " +
      std::to_string(valid.size()) + " valid images; " + std::to_string(num_threads()) + " thread(s)");
  trainer.on_step = progress_printer(r.train.max_epochs, log_every);
  trainer.on_epoch = [&](const train::EpochSummary& e) {
    say("epoch " + std::to_string(e.epoch) + "/" + std::to_string(r.train.max_epochs) +
        " lr=" + fmt(e.lr, 5) + " train: " + metrics_text(e.metrics.train) + " | valid: " +
        metrics_text(e.metrics.valid) + (e.best ? " (best)" : "") + " | " + fmt(e.seconds, 1) + " s");
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
    return 1;
  }
}
