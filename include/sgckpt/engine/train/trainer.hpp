// sgckpt/engine/train/trainer.hpp: SuperGradients' training loop for the engine's ResNet18,
// with its checkpoint lifecycle (sgckpt::CheckpointManager) and a bit-exact resume.
//
//   TrainConfig cfg;                                  // SG's training_hyperparams
//   cfg.max_epochs = 5; cfg.lr.initial_lr = 0.1; ...
//   Trainer trainer(nn::ResNet18Config::cifar(10, 0.25), cfg, ckpt_config);
//   TrainResult r = trainer.fit(train_set, valid_set, resolve_resume(root, name, request), recipe);
//
// One epoch, in SG's order: the LR schedule sets the epoch's lr; each batch runs zero_grad,
// forward, cross-entropy, backward, optimizer step and the EMA update (decay from the EMA
// schedule at SG's step (batch + 1) + batches_per_epoch * epoch; with mixed_precision the
// backward starts from the scaled loss and GradScaler decides the step); then the model (the EMA
// model when EMA is on, as SG validates) is evaluated, and the manager writes ckpt_latest /
// ckpt_best / ckpt_epoch_N / average_model.
//
// What makes a resume bit-exact: the checkpoint holds everything that feeds the next epoch:
// the weights and buffers (net), the optimizer's state, the EMA weights, the GradScaler, the data
// generator's {seed, offset} (rng_state; the loader draws the epoch's order and every
// augmentation from it). The LR and EMA schedules are pure functions of the epoch and step.
// The CPU kernels are deterministic for a given thread count, so a run resumed from epoch k
// with the same thread count reproduces the uninterrupted run bit for bit. A run killed in
// the middle of an epoch resumes from the last finished epoch and repeats the part it lost.
#pragma once

#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sgckpt/ckpt/checked_int.hpp"
#include "sgckpt/ckpt/ema.hpp"
#include "sgckpt/ckpt/manager.hpp"
#include "sgckpt/ckpt/run_dir.hpp"
#include "sgckpt/engine/data/dataset.hpp"
#include "sgckpt/engine/data/loader.hpp"
#include "sgckpt/engine/data/prefetcher.hpp"
#include "sgckpt/engine/dist/collective.hpp"
#include "sgckpt/engine/dist/sampler.hpp"
#include "sgckpt/engine/grad_mode.hpp"
#include "sgckpt/engine/nn/functional.hpp"
#include "sgckpt/engine/nn/loss.hpp"
#include "sgckpt/engine/nn/resnet.hpp"
#include "sgckpt/engine/optim/adam.hpp"
#include "sgckpt/engine/optim/grad_scaler.hpp"
#include "sgckpt/engine/optim/lr_schedule.hpp"
#include "sgckpt/engine/optim/sgd.hpp"
#include "sgckpt/engine/parallel.hpp"
#include "sgckpt/engine/random.hpp"
#include "sgckpt/engine/train/device_ema.hpp"
#include "sgckpt/engine/train/run_logger.hpp"

namespace sgckpt::engine::train {

// SG's training_hyperparams, the subset this engine implements.
struct TrainConfig {
  int max_epochs = 10;
  std::int64_t batch_size = 64;
  std::int64_t valid_batch_size = 256;
  SGLRConfig lr;                  // lr_mode, initial_lr, lr_updates, ...; max_epochs is set from above
  std::string optimizer = "SGD";  // "SGD", "Adam" or "AdamW"
  Value optimizer_params =
      Value::make_dict();  // torch's keyword arguments: momentum, weight_decay, nesterov, betas, ...
  bool zero_weight_decay_on_bias_and_bn = false;
  float label_smoothing = 0.0f;
  // SG's mixed_precision: dynamic loss scaling (GradScaler). The CPU backend computes in
  // float32, so this only scales and unscales (by powers of two: exact) and skips steps with
  // inf/NaN gradients; the CUDA backend adds float16 compute.
  bool mixed_precision = false;
  GradScalerOptions scaler;
  // SG's batch_accumulate: the optimizer steps (and the EMA updates) only when
  // global_step % batch_accumulate == 0; the gradients of the batches in between add up (SG
  // does not divide the loss). With world size > 1 they are averaged over ranks once, before
  // the step (DDP averages each backward; the same sum, one all-reduce instead of N).
  int batch_accumulate = 1;
  bool ema = false;
  EmaSchedule ema_params;
  std::uint64_t seed = 42;  // model initialization; the data generator uses a derived seed
  bool shuffle = true;
  bool drop_last = false;
  data::Augment augment;
  // Batches prepared ahead on a background thread while one trains (data/prefetcher.hpp);
  // 0 prepares each in turn. The batches and the data generator are the same either way.
  std::size_t prefetch_batches = 2;
  // Where the model trains: the CPU, or the device of a registered backend (engine/backend.hpp).
  // Batches are made in host memory and copied there; checkpoints are written from host copies.
  Device device = Device::CPU;
  // TensorBoard events and SG's experiment log in the run directory (run_logger.hpp).
  RunLogger::Options logging{};
};

// Progress of one training step, for a caller's log.
struct StepInfo {
  int epoch = 0;             // 0-based
  std::int64_t batch = 0;    // 0-based
  std::int64_t batches = 0;  // per epoch
  double loss = 0;           // this batch's mean loss
  double lr = 0;
  std::int64_t samples = 0;  // in this batch
  std::int64_t correct = 0;  // of them, predicted right (top-1)
  double elapsed = 0;        // seconds since the epoch started (its first batch included)
};

struct EpochSummary {
  int epoch = 0;  // finished epochs (SG's e + 1)
  Metrics metrics;
  bool best = false;
  double seconds = 0;
  double lr = 0;
};

struct TrainResult {
  std::filesystem::path run_dir;
  std::filesystem::path log;                    // experiment_logs_<stamp>.txt
  std::optional<std::filesystem::path> events;  // this run's TensorBoard event file
  int start_epoch = 0;                          // 0 for a fresh run, the checkpoint's epoch for a resumed one
  std::vector<EpochSummary> epochs;
};

// The data generator's seed: a different stream of the same family as the model's.
inline std::uint64_t data_seed(std::uint64_t seed) {
  return seed ^ 0x5DEECE66DULL;
}

// A state dict whose tensors are read-only views of the module's live memory (no copy): what
// the EMA reads after every step.
inline Value live_state_view(nn::Module& m) {
  Value sd = Value::make_ordered_dict();
  auto add = [&](const std::string& name, const Tensor& t) {
    auto keep = std::make_shared<Tensor>(t);  // shares the engine buffer: keeps it alive
    const auto* data = static_cast<const std::byte*>(keep->raw_data());
    auto storage = Storage::view(keep, data, keep->nbytes());
    sd.dict().set(name, Value(sgckpt::Tensor::view_of(storage, t.dtype(), 0, t.shape(),
                                                      contiguous_strides(t.shape()))));
  };
  for (auto& p : m.named_parameters()) add(p.name, p.value);
  for (auto& b : m.named_buffers()) add(b.name, b.value);
  return sd;
}

// One training step's loss and correct count: written on the device by the step, read by the
// host one step later (Backend::copy_to_host_later / wait_copy).
struct LateStep {
  std::int64_t b = 0, n = 0;
  Tensor loss_dev, correct_dev;  // one float32, one int64, on the training device
  float loss = 0;
  std::int64_t correct = 0;
  std::uint64_t ticket = 0;  // the second of the two copies

  void start(std::int64_t batch, std::int64_t samples, Device device) {
    b = batch;
    n = samples;
    if (!loss_dev.defined() || loss_dev.device() != device) {
      loss_dev = Tensor::empty({1}, DType::Float32, device);
      correct_dev = Tensor::empty({1}, DType::Int64, device);
    }
  }
  std::uint64_t read_later(Backend& dev) {
    dev.copy_to_host_later(&loss, loss_dev.data_ptr<float>(), sizeof(float));
    ticket = dev.copy_to_host_later(&correct, correct_dev.data_ptr<std::int64_t>(), sizeof(std::int64_t));
    return ticket;
  }
};

class Trainer {
 public:
  Trainer(const nn::ResNet18Config& arch, TrainConfig config, CheckpointConfig ckpt)
      : arch_(arch), cfg_(std::move(config)), ckpt_(std::move(ckpt)) {
    if (cfg_.max_epochs <= 0) throw Error("TrainConfig: max_epochs must be positive");
    if (cfg_.batch_accumulate < 1) throw Error("TrainConfig: batch_accumulate must be at least 1");
    cfg_.lr.max_epochs = cfg_.max_epochs;
    ckpt_.ema = cfg_.ema;
    ckpt_.scheduler = false;  // SG's lr schedules are functions of the epoch: nothing to save
    if (ckpt_.architecture.empty()) ckpt_.architecture = "resnet18_cifar";
    ckpt_.num_classes = arch_.num_classes;
    ckpt_.in_channels = arch_.in_channels;
    model_ = std::make_unique<nn::ResNet18>(arch_, cfg_.seed);
    model_->to(cfg_.device);
    GradScalerOptions so = cfg_.scaler;
    so.enabled = cfg_.mixed_precision;
    scaler_ = GradScaler(so);
    build_optimizer();
  }

  nn::ResNet18& model() { return *model_; }
  Optimizer& optimizer() { return *opt_; }
  const std::optional<Value>& ema_state() const { return ema_; }
  const Generator& data_generator() const { return data_gen_; }

  // Called after every optimizer step (e.g. to print progress).
  std::function<void(const StepInfo&)> on_step;
  // Called after every epoch's checkpoint was handed to the manager.
  std::function<void(const EpochSummary&)> on_epoch;

  // Makes this trainer one rank of a data-parallel run (docs/distributed.md), as torch's DDP:
  // rank 0's weights and buffers to every rank at start, each rank's share of every epoch
  // (DistributedSampler's indices), gradients averaged after backward (before unscaling),
  // rank 0's BatchNorm buffers on every rank after each step, metrics summed over ranks, and
  // rank 0 alone writing the checkpoints, events and log. Every rank resumes from rank 0's
  // checkpoint. The collective must outlive fit(); CPU only for now.
  void distribute(dist::Collective& collective) { collective_ = &collective; }
  bool is_rank0() const noexcept { return !collective_ || collective_->rank() == 0; }

  // Writes a line to the run log of the fit in progress: what a caller shows on the terminal
  // (progress, step lines) and wants kept beside the lifecycle's lines. A no-op outside fit().
  void note(std::string_view line) {
    if (run_log_) run_log_->note(line);
  }

  // Trains from the plan's checkpoint (or from scratch) to max_epochs. The recipe text, when
  // given, is stored in a new run directory (recipe.yaml) for resume_experiment().
  TrainResult fit(const data::Dataset& train, const data::Dataset& valid, const ResumePlan& plan,
                  std::optional<std::string_view> recipe_text = std::nullopt) {
    if (train.channels() != arch_.in_channels || valid.channels() != arch_.in_channels)
      throw Error("Trainer: the model takes " + std::to_string(arch_.in_channels) +
                  " input channels, the data has " + std::to_string(train.channels()));
    if (world() > 1 && cfg_.device != Device::CPU)
      throw Error(
          "Trainer: data-parallel training runs on the CPU for now (the NCCL backend comes with CUDA)");
    // What the lifecycle and the resume say (the resume decision, skipped runs, warnings) goes
    // to the run log too: held until the log exists, then written as it comes.
    std::vector<std::string> early_lines;
    const auto user_log = ckpt_.log;
    struct Restore {
      CheckpointConfig& c;
      std::function<void(std::string_view)> f;
      ~Restore() { c.log = std::move(f); }
    } restore_log{ckpt_, user_log};
    ckpt_.log = [&, user_log](std::string_view line) {
      if (user_log) user_log(line);
      if (run_log_)
        run_log_->note(line);
      else
        early_lines.emplace_back(line);
    };
    CheckpointManager manager(ckpt_);
    TrainResult result;
    const ResumeState rs = manager.restore(plan);
    // The loop counts epochs in int, as max_epochs: a larger epoch in the file is refused
    // (a cast would wrap 2^32 + 1 to 1 and train other epochs than the log says).
    result.start_epoch =
        checked_in_file(checkpoint_name(rs), [&] { return int_in_range<int>(rs.start_epoch, "epoch", 0); });
    if (rs.resumed) resume_from(rs);
    if (world() > 1) broadcast_state();  // every rank restored (or not) before this point
    // Rank 0 alone writes the run directory, its checkpoints, events and log.
    const bool writer = is_rank0();
    std::optional<RunLogger> logger;
    if (writer) {
      result.run_dir = manager.start_run(plan, recipe_text);
      logger.emplace(result.run_dir, cfg_.max_epochs, recipe_text.value_or(""), cfg_.logging);
      result.log = logger->log_path();
      result.events = logger->events_path();
    }
    auto note = [&](const std::string& line) {
      if (logger) logger->note(line);
    };
    note("Environment: " + std::to_string(num_threads()) + " CPU thread(s), CPU features " +
         ops::cpu_features_text() + ", GEMM kernels " + ops::gemm_kernels() + ", device " +
         device_name(cfg_.device) + ", " + std::to_string(world()) + " rank(s)" +
         (collective_ ? std::string(" (") + collective_->backend() + ")" : std::string()));
    for (const auto& line : early_lines) note(line);
    // Detached before the logger goes out of scope, also when an exception leaves (the
    // manager's destructor may still report).
    struct Detach {
      RunLogger*& log;
      ~Detach() { log = nullptr; }
    } detach{run_log_};
    run_log_ = logger ? &*logger : nullptr;
    if (plan.mode == ResumePlan::ResumePath && plan.checkpoint)
      note("Branched from " + plan.checkpoint->string() + " (run " +
           plan.checkpoint->parent_path().filename().string() + " of experiment " +
           plan.checkpoint->parent_path().parent_path().filename().string() +
           "); that run is left untouched");
    if (rs.resumed)
      note("Resumed from " + checkpoint_name(rs) + " at epoch " + std::to_string(result.start_epoch) +
           (logger && logger->repaired_bytes()
                ? " (cut a torn tail of " + std::to_string(logger->repaired_bytes()) +
                      " bytes off the event files)"
                : ""));
    if (!ema_ && cfg_.ema && !rs.ema_missing) ema_ = clone_state(model_->state_dict());

    data::DataLoader loader(train, {cfg_.batch_size, cfg_.shuffle, cfg_.drop_last, cfg_.augment});
    // A rank's share of each epoch is torch's DistributedSampler's (the same on every resume).
    std::optional<dist::DistributedSampler> sampler;
    if (world() > 1) {
      sampler.emplace(train.size(), dist::DistributedSampler::Options{.num_replicas = world(),
                                                                      .rank = collective_->rank(),
                                                                      .shuffle = cfg_.shuffle,
                                                                      .seed = cfg_.seed});
      loader.set_order(sampler->indices(result.start_epoch));
    }
    const std::int64_t batches = loader.num_batches();
    const std::int64_t total_steps = batches * cfg_.max_epochs;
    SGLRSchedule schedule(cfg_.lr);
    nn::CrossEntropyLoss criterion(cfg_.label_smoothing);
    // On the CPU the EMA reads the live weights; on a device it stays there (DeviceEma: one
    // fused launch per step) and comes to the host once an epoch.
    const bool on_host = cfg_.device == Device::CPU;
    const Value live = on_host ? live_state_view(*model_) : Value();
    std::optional<DeviceEma> device_ema;
    if (ema_ && !on_host) device_ema.emplace(*ema_, *model_);
    std::optional<data::DeviceImages> train_images;
    if (!on_host) train_images = loader.upload(cfg_.device);

    // A run (and a resume) starts a fresh accumulation window: the checkpoint holds no gradients.
    bool window_start = true;
    for (int epoch = result.start_epoch; epoch < cfg_.max_epochs; ++epoch) {
      const auto t0 = std::chrono::steady_clock::now();
      schedule.apply(*opt_, epoch);
      const double lr = opt_->param_groups().front().lr();
      model_->train();
      if (sampler)
        loader.set_order(sampler->indices(epoch));
      else
        loader.start_epoch(data_gen_);
      double loss_sum = 0;
      std::int64_t seen = 0, correct = 0;
      // The loss and the correct count of a step stay on the device; the host reads them one
      // step late (while the device runs the next step), so a step never waits for the device.
      Backend& dev = backend(cfg_.device);
      LateStep late[2];
      // Leaving the epoch early (a diverged loss, any error) still waits for the copies queued
      // into late[] before it goes away.
      struct WaitForLateCopies {
        Backend& dev;
        std::uint64_t last = 0;
        ~WaitForLateCopies() {
          try {
            dev.wait_copy(last);
          } catch (...) {  // the error that left the loop is the one to report
          }
        }
      } pending_copies{dev};
      auto finish = [&](LateStep& r) {  // step r.b's numbers, read: check, sum, report
        dev.wait_copy(r.ticket);
        if (!std::isfinite(r.loss))
          throw Error("training diverged: the loss of epoch " + std::to_string(epoch) + " batch " +
                      std::to_string(r.b) + " is " + std::to_string(r.loss) + " (lower initial_lr?)");
        loss_sum += static_cast<double>(r.loss) * static_cast<double>(r.n);
        correct += r.correct;
        seen += r.n;
        if (logger) logger->step(batches * epoch + r.b + 1, "CrossEntropyLoss", r.loss);
        if (on_step)
          on_step({epoch, r.b, batches, r.loss, lr, r.n, r.correct,
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()});
      };
      {  // the prefetcher owns data_gen_ until its thread is joined here
        // On a device the batches are made there, from the images uploaded once, with the
        // draws the host loader would make (in the same order, on this thread: no prefetcher).
        std::optional<data::Prefetcher> prefetched;
        if (on_host) prefetched.emplace(loader, data_gen_, cfg_.prefetch_batches);
        for (std::int64_t b = 0; b < batches; ++b) {
          const data::Batch batch =
              on_host ? prefetched->next() : loader.batch_on(loader.plan(b, data_gen_), *train_images);
          // SG: global_step = (batch_idx + 1) + len(train_loader) * epoch (docs/supergradients.md §5).
          const std::int64_t step = (b + 1) + batches * epoch;
          const bool steps = step % cfg_.batch_accumulate == 0;
          if (window_start) model_->zero_grad();  // the gradients of a window add up
          window_start = steps;
          LateStep& r = late[b % 2];
          r.start(b, batch.y.shape()[0], cfg_.device);
          const Tensor logits = model_->forward(batch.x.to(cfg_.device));
          criterion.forward_to(logits, batch.y, r.loss_dev);
          // d(scale * loss): the gradients come out scaled (scale 1 without mixed precision).
          model_->backward(criterion.backward(scaler_.get_scale()));
          if (steps) {
            if (world() > 1) synchronize_step();  // gradients averaged before unscaling
            scaler_.step(*opt_);                  // unscales; skips the step when a gradient is inf/NaN
            scaler_.update();
            if (ema_) {  // after every optimizer step (GradScaler may have skipped it), as SG does
              const double decay = cfg_.ema_params.at(step, total_steps);
              if (device_ema)
                device_ema->update(decay);
              else
                ema_update(*ema_, live, decay);
            }
          }
          nn::functional::topk_correct_to(logits, batch.y, 1, r.correct_dev);
          pending_copies.last = r.read_later(dev);
          if (b > 0) finish(late[(b - 1) % 2]);
        }
        if (batches > 0) finish(late[(batches - 1) % 2]);
      }

      // An epoch that ends inside an accumulation window has run forward passes since the last
      // step's broadcast: every rank takes rank 0's BatchNorm buffers again before it evaluates
      // and rank 0 saves (the window's gradients carry on into the next epoch, as in SG).
      if (world() > 1 && !window_start) broadcast_buffers();
      Metrics metrics;
      double train_sums[3] = {loss_sum, static_cast<double>(correct), static_cast<double>(seen)};
      if (world() > 1) collective_->all_reduce(std::span<double>(train_sums), dist::ReduceOp::Sum);
      metrics.train = {{"CrossEntropyLoss", train_sums[0] / train_sums[2]},
                       {"Accuracy", train_sums[1] / train_sums[2]}};
      if (device_ema) device_ema->to_host();
      if (ema_) {
        if (!ema_model_) {
          ema_model_ = std::make_unique<nn::ResNet18>(arch_, cfg_.seed);
          ema_model_->to(cfg_.device);
        }
        ema_model_->load_state_dict(*ema_);
        metrics.valid = evaluate(*ema_model_, valid);
      } else {
        metrics.valid = evaluate(*model_, valid);
      }

      TrainingState state;
      state.net = model_->state_dict();
      state.optimizer = opt_->state_dict();
      state.scaler = scaler_.state_dict();  // {} without mixed precision, as SG writes
      if (ema_) state.ema = *ema_;
      state.extra.emplace_back("rng_state", rng_state());
      const EpochResult er =
          writer ? manager.on_epoch_end(epoch + 1, metrics, std::move(state)) : EpochResult{};
      if (logger) logger->epoch(epoch, metrics, lr);
      for (const auto& f : er.files) note("Checkpoint saved in " + f.string());
      if (logger) upload_logs(manager, *logger);
      EpochSummary s;
      s.epoch = epoch + 1;
      s.metrics = std::move(metrics);
      s.best = er.best;
      s.lr = lr;
      s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      note("Epoch " + std::to_string(epoch) + " took " + float_text(s.seconds) + " s");
      if (on_epoch) on_epoch(s);
      result.epochs.push_back(std::move(s));
    }
    if (logger) upload_logs(manager, *logger);
    manager.finish();
    if (world() > 1) collective_->barrier();  // rank 0's last files are written when every rank returns
    return result;
  }

  // The log and the event file as they are now, to the remote store (when asked; the
  // uploader supersedes the previous epoch's copies still waiting).
  void upload_logs(CheckpointManager& manager, const RunLogger& logger) const {
    if (cfg_.logging.save_logs_remote) manager.upload(logger.log_path());
    if (cfg_.logging.save_tensorboard_remote && logger.events_path()) manager.upload(*logger.events_path());
  }

  // Loss, top-1 ("Accuracy") and top-5 of a model in evaluation mode over a dataset. In a
  // data-parallel fit each rank scores a contiguous share and the sums are added over ranks.
  MetricList evaluate(nn::ResNet18& m, const data::Dataset& ds) const {
    const std::int64_t n = ds.size(), r = world(), rank = collective_ ? collective_->rank() : 0;
    std::array<double, 4> sums = evaluate_sums(m, ds, n * rank / r, n * (rank + 1) / r);
    if (r > 1) collective_->all_reduce(std::span<double>(sums), dist::ReduceOp::Sum);
    const double N = sums[3];
    return {{"CrossEntropyLoss", sums[0] / N}, {"Accuracy", sums[1] / N}, {"Top5", sums[2] / N}};
  }

 private:
  int world() const noexcept { return collective_ ? collective_->world_size() : 1; }

  // {loss sum, top-1 hits, top-5 hits, samples} over samples [begin, end) of ds.
  std::array<double, 4> evaluate_sums(nn::ResNet18& m, const data::Dataset& ds, std::int64_t begin,
                                      std::int64_t end) const {
    std::array<double, 4> sums{};
    if (begin >= end) return sums;
    NoGradGuard no_grad;
    const bool was_training = m.training();
    m.eval();
    data::DataLoader loader(ds, {cfg_.valid_batch_size, false, false, {}});
    std::vector<std::int64_t> share(static_cast<std::size_t>(end - begin));
    std::iota(share.begin(), share.end(), begin);
    loader.set_order(std::move(share));
    nn::CrossEntropyLoss criterion(cfg_.label_smoothing);
    Generator unused(0);
    for (std::int64_t b = 0; b < loader.num_batches(); ++b) {
      const data::Batch batch = loader.batch(b, unused);
      const Tensor logits = m.forward(batch.x.to(m.device()));
      const std::int64_t n = batch.y.shape()[0], C = logits.shape()[1];
      sums[0] += static_cast<double>(criterion.forward(logits, batch.y)) * static_cast<double>(n);
      sums[1] += static_cast<double>(nn::functional::topk_correct(logits, batch.y, 1));
      sums[2] +=
          static_cast<double>(nn::functional::topk_correct(logits, batch.y, std::min<std::int64_t>(5, C)));
      sums[3] += static_cast<double>(n);
    }
    m.train(was_training);
    return sums;
  }

  // Rank 0's parameters and buffers to every rank (DDP's broadcast at construction).
  void broadcast_state() {
    auto send = [&](Tensor& t) {
      collective_->broadcast(std::span<std::byte>(static_cast<std::byte*>(t.raw_data()), t.nbytes()), 0);
    };
    for (auto& p : model_->named_parameters()) send(p.value);
    for (auto& b : model_->named_buffers()) send(b.value);
  }

  // After backward: gradients averaged over ranks (DDP), and rank 0's BatchNorm buffers on every
  // rank (DDP broadcasts them before the next forward; here before the EMA reads them, so that
  // every rank's EMA, and so its validation share, is rank 0's: docs/distributed.md).
  void synchronize_step() {
    for (auto& p : model_->named_parameters())
      collective_->all_reduce(std::span<float>(p.grad.data<float>(), p.grad.numel()), dist::ReduceOp::Mean);
    broadcast_buffers();
  }
  void broadcast_buffers() {
    for (auto& b : model_->named_buffers())
      collective_->broadcast(
          std::span<std::byte>(static_cast<std::byte*>(b.value.raw_data()), b.value.nbytes()), 0);
  }

  void build_optimizer() {
    refs_.clear();
    for (auto& p : model_->named_parameters())
      refs_.push_back({p.name, p.value.data_ptr<float>(), p.grad.data_ptr<float>(), p.value.numel(),
                       p.value.shape(), p.value.device()});
    Value options = Value::make_dict();
    options["lr"] = cfg_.lr.initial_lr;  // SG passes initial_lr to the optimizer's constructor
    if (cfg_.optimizer_params.is_dict())
      for (const auto& [k, v] : cfg_.optimizer_params.dict()) options.dict().set(k, v);
    std::vector<GroupSpec> groups =
        cfg_.zero_weight_decay_on_bias_and_bn
            ? zero_wd_groups(refs_)
            : std::vector<GroupSpec>{{optim_detail::iota(refs_.size()), Value::make_dict()}};
    // SG names every group ("default"); its trainer reads the names back when it resumes.
    for (auto& g : groups) g.options["name"] = "default";
    if (cfg_.optimizer == "SGD")
      opt_ = std::make_unique<SGD>(refs_, std::move(groups), options);
    else if (cfg_.optimizer == "Adam")
      opt_ = std::make_unique<Adam>(refs_, std::move(groups), options);
    else if (cfg_.optimizer == "AdamW")
      opt_ = std::make_unique<AdamW>(refs_, std::move(groups), options);
    else
      throw Error("unknown optimizer \"" + cfg_.optimizer + "\" (SGD, Adam and AdamW are implemented)");
  }

  Value rng_state() const {
    const auto s = data_gen_.state();
    Value d = Value::make_dict();
    d["data"] = Value::make_dict();
    d["data"]["seed"] = Value(Int(static_cast<std::int64_t>(s.seed)));
    d["data"]["offset"] = Value(Int(static_cast<std::int64_t>(s.offset)));
    d["model_init_seed"] = Value(Int(static_cast<std::int64_t>(cfg_.seed)));
    // The CPU kernels split their reductions by the thread count: a resume is bit-exact only
    // with the same count.
    d["num_threads"] = Value(Int(static_cast<std::int64_t>(num_threads())));
    return d;
  }

  // An optimizer state of another family (SGD vs Adam/AdamW, told apart by their
  // hyper-parameters) would fail deep inside with "missing key 'step'": say what changed.
  void check_same_optimizer(const Value& sd) const {
    const Value* groups = sd.is_dict() ? sd.dict().find("param_groups") : nullptr;
    if (!groups || !groups->is_list() || groups->items().empty() || !groups->items()[0].is_dict()) return;
    const Value& g = groups->items()[0];
    const char* theirs = g.contains("betas") ? "Adam or AdamW" : g.contains("momentum") ? "SGD" : nullptr;
    const bool ours_sgd = cfg_.optimizer == "SGD";
    if (!theirs || ours_sgd == (std::string_view(theirs) == "SGD")) return;
    throw Error(ErrorKind::Mismatch, std::string("the checkpoint's optimizer is ") + theirs +
                                         ", this run's is " + cfg_.optimizer +
                                         ": the optimizer changed since the checkpoint "
                                         "(training_hyperparams.optimizer); resume with the checkpoint's");
  }

  static std::string checkpoint_name(const ResumeState& rs) {
    return rs.checkpoint ? rs.checkpoint->string() : std::string();
  }

  // Runs one part's load_state_dict; its errors name the checkpoint and the full key path
  // ("optimizer_state_dict/state/3/step", not just "state/3/step").
  template <class F>
  static void load_part(const ResumeState& rs, const char* key, F&& f) {
    try {
      f();
    } catch (const Error& e) {
      throw e.with_key_path(key).with_file(checkpoint_name(rs));
    }
  }

  void resume_from(const ResumeState& rs) {
    load_part(rs, "net", [&] { model_->load_state_dict(rs.net); });
    load_part(rs, "optimizer_state_dict", [&] {
      check_same_optimizer(rs.optimizer);
      opt_->load_state_dict(rs.optimizer);
    });
    if (scaler_.enabled()) {
      if (rs.scaler.is_dict() && rs.scaler.size() > 0)
        load_part(rs, "scaler_state_dict", [&] { scaler_.load_state_dict(rs.scaler); });
      else if (ckpt_.log)
        ckpt_.log(
            "Checkpoint has no GradScaler state (saved without mixed precision): the scale starts at its "
            "initial value");
    }
    if (rs.ema) ema_ = clone_state(*rs.ema);  // owned copies (the loaded ones may be views)
    bool found_rng = false;
    for (const auto& [key, v] : rs.extra) {
      if (key != "rng_state") continue;
      const Value* d = v.is_dict() ? v.dict().find("data") : nullptr;
      const Value* seed = d && d->is_dict() ? d->dict().find("seed") : nullptr;
      const Value* offset = d && d->is_dict() ? d->dict().find("offset") : nullptr;
      if (!seed || !offset)
        throw Error(ErrorKind::Schema, "checkpoint's rng_state/data is not {'seed': int, 'offset': int >= 0}",
                    {checkpoint_name(rs), {}, {}, "rng_state/data"});
      // rng_state() writes the uint64 seed's bits as an int64: any int64 is a seed.
      const auto s = checked_in_file(checkpoint_name(rs), [&] {
        return Generator::State{
            static_cast<std::uint64_t>(int_in_range<std::int64_t>(*seed, "rng_state/data/seed")),
            static_cast<std::uint64_t>(int_in_range<std::int64_t>(*offset, "rng_state/data/offset", 0))};
      });
      data_gen_.set_state(s);
      found_rng = true;
      const Value* threads = v.dict().find("num_threads");
      if (threads && threads->is_int() && threads->as_int() != static_cast<std::int64_t>(num_threads()) &&
          ckpt_.log)
        ckpt_.log("The checkpoint was trained with " + std::to_string(threads->as_int()) +
                  " thread(s), this run uses " + std::to_string(num_threads()) +
                  ": the resume is not bit-exact (the CPU kernels split reductions by "
                  "the thread count; --threads " +
                  std::to_string(threads->as_int()) + " restores it)");
    }
    // A checkpoint from elsewhere (torch, SG) has no engine generator state: the data order
    // then restarts from the seed, and the resume is not bit-exact (said in the log).
    if (!found_rng && ckpt_.log)
      ckpt_.log("Checkpoint has no rng_state: the data order restarts from the seed (resume not bit-exact)");
  }

  nn::ResNet18Config arch_;
  TrainConfig cfg_;
  CheckpointConfig ckpt_;
  std::unique_ptr<nn::ResNet18> model_;
  std::unique_ptr<nn::ResNet18> ema_model_;
  std::vector<ParamRef> refs_;
  std::unique_ptr<Optimizer> opt_;
  GradScaler scaler_;
  std::optional<Value> ema_;
  dist::Collective* collective_ = nullptr;    // a data-parallel fit's; null: one process
  RunLogger* run_log_ = nullptr;              // the log of the fit in progress
  Generator data_gen_{data_seed(cfg_.seed)};  // cfg_ is declared (so initialized) first
};

}  // namespace sgckpt::engine::train
