// Crash safety of checkpoint saving: a training process killed with SIGKILL at a random moment
// (mid-write included) must leave a ckpt_latest.pth that loads and equals one of the states
// it was saving, never a torn file (torch.save is not atomic: Lightning issue #688; SG writes
// straight to the final path, docs/supergradients.md §1). Leftover temporaries must be recognized as stale
// and removed.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "sgckpt/ckpt/manager.hpp"
#include "sgckpt/core/identical.hpp"

using namespace sgckpt;
namespace fs = std::filesystem;

namespace {

struct CrashTempDir {
  fs::path path;
  CrashTempDir() {
    std::string tmpl = (fs::temp_directory_path() / "sgckpt_crash_XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~CrashTempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

Tensor filled(Shape shape, float start) {
  Tensor t = Tensor::empty(DType::Float32, std::move(shape));
  float* p = t.mutable_data<float>();
  for (std::size_t i = 0; i < t.numel(); ++i) p[i] = start + static_cast<float>(i % 1000) * 0.001f;
  return t;
}

// About 4 MB of tensors, so that a save takes long enough for kills to land inside it.
TrainingState crash_state(float seed) {
  TrainingState s;
  s.net = Value::make_ordered_dict();
  s.net["fc.weight"] = filled({512, 1024}, seed);
  s.net["fc.bias"] = filled({512}, seed + 1);
  Value state = Value::make_dict();
  Value slot = Value::make_dict();
  slot["momentum_buffer"] = filled({512, 1024}, seed + 2);
  state.dict().set(Key(std::int64_t{0}), slot);
  s.optimizer = Value::make_dict();
  s.optimizer["state"] = state;
  Value group = Value::make_dict();
  group["lr"] = 0.1;
  group["params"] = Value::make_list({Value(0)});
  s.optimizer["param_groups"] = Value::make_list({group});
  s.extra.emplace_back("which", Value(seed < 50 ? "A" : "B"));
  return s;
}

Metrics crash_metrics() {
  Metrics m;
  m.valid = {{"Accuracy", 0.5}};
  return m;
}

CheckpointConfig crash_config(const fs::path& root, const std::string& exp, bool durable) {
  CheckpointConfig c;
  c.ckpt_root_dir = root;
  c.experiment_name = exp;
  c.average_best_models = false;
  c.async_save = true;
  c.durable = durable;
  return c;
}

std::vector<std::string> temporaries_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (is_temporary_name(e.path().filename().string())) out.push_back(e.path().filename().string());
  return out;
}

}  // namespace

TEST_SUITE("ckpt/crash") {
  TEST_CASE("SIGKILL at random moments never leaves a torn ckpt_latest.pth; stale temporaries are cleaned") {
    CrashTempDir tmp;
    const TrainingState a = crash_state(1), b = crash_state(100);

    // What the manager writes for A (epoch 1) and B (epoch 2), from a run nobody kills.
    Value ref_a, ref_b;
    {
      CheckpointManager ref(crash_config(tmp.path, "reference", false));
      const fs::path dir = ref.start_run();
      ref.on_epoch_end(1, crash_metrics(), a);
      ref.flush();
      ref_a = load(dir / "ckpt_latest.pth");
      ref.on_epoch_end(2, crash_metrics(), b);
      ref.flush();
      ref_b = load(dir / "ckpt_latest.pth");
    }
    REQUIRE_FALSE(sgckpt::identical(ref_a, ref_b));

    // The run the children keep "restarting": it already holds A.
    fs::path run;
    {
      CheckpointManager first(crash_config(tmp.path, "exp", false));
      run = first.start_run();
      first.on_epoch_end(1, crash_metrics(), a);
      first.finish();
    }
    ResumeRequest req;
    req.run_id = run.filename().string();

    std::mt19937 rng(20240917);
    // The requirement: at least 200 kills, and enough of them inside a write to mean something.
    constexpr int kMinKills = 200, kMinMidWrite = 20;
    // A bound, so that a slow machine fails clearly instead of running on. 200 kills take
    // about 11 s at -O1 and 22 s under ASan on a busy 2-core machine; the bound leaves room
    // for a slower runner and keeps the worst case under a minute.
    constexpr auto kTimeBound = std::chrono::seconds(45);
    int kills = 0, mid_write = 0, found_a = 0, found_b = 0, cleaned = 0;
    const auto start = std::chrono::steady_clock::now();
    const auto elapsed = [&] { return std::chrono::steady_clock::now() - start; };
    // Delays of 0.5 to 60 ms: they cover the child's start-up and its first saves (A, then B,
    // ...), and keep 200 kills fast; about a fifth of the kills land inside a write.
    std::uniform_int_distribution<int> delay_us(500, 60'000);
    while ((kills < kMinKills || mid_write < kMinMidWrite) && elapsed() < kTimeBound) {
      const bool durable = kills % 4 == 0;  // the fsync path too, now and then
      const pid_t pid = ::fork();
      REQUIRE(pid >= 0);
      if (pid == 0) {
        // The child: a training process that resumes the run and saves A, B, A, B, ...
        try {
          CheckpointManager m(crash_config(tmp.path, "exp", durable));
          m.start_run(resolve_resume(tmp.path, "exp", req));
          for (std::int64_t i = 0;; ++i)
            m.on_epoch_end(i % 2 == 0 ? 1 : 2, crash_metrics(), i % 2 == 0 ? a : b);
        } catch (...) {
          ::_exit(3);
        }
      }
      std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));
      REQUIRE(::kill(pid, SIGKILL) == 0);
      int status = 0;
      REQUIRE(::waitpid(pid, &status, 0) == pid);
      // Exiting by itself would mean it failed (status 3): it must die by our signal.
      REQUIRE(WIFSIGNALED(status));
      CHECK(WTERMSIG(status) == SIGKILL);
      ++kills;

      if (!temporaries_in(run).empty()) ++mid_write;
      const Value got = load(run / "ckpt_latest.pth");  // must load: never torn
      const bool is_a = sgckpt::identical(got, ref_a), is_b = sgckpt::identical(got, ref_b);
      CHECK((is_a || is_b));
      found_a += is_a;
      found_b += is_b;
      if (fs::exists(run / "ckpt_best.pth")) CHECK(load(run / "ckpt_best.pth").is_dict());

      // Every temporary left now belongs to a dead process: all of them go.
      cleaned += static_cast<int>(remove_stale_temporaries_in(run));
      CHECK(temporaries_in(run).empty());
    }
    MESSAGE("kills: " << kills << ", inside a write: " << mid_write << ", file was A: " << found_a
                      << ", B: " << found_b << ", stale temporaries removed: " << cleaned << ", "
                      << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed()).count() << " ms");
    if (kills < kMinKills || mid_write < kMinMidWrite)
      FAIL_CHECK("the time bound of " << kTimeBound.count() << " s was hit after " << kills << " kills ("
                                      << mid_write << " inside a write); the test needs at least "
                                      << kMinKills << " (" << kMinMidWrite
                                      << " inside a write): the machine is too slow");
    CHECK(kills >= kMinKills);
    CHECK(mid_write >= kMinMidWrite);
    CHECK(found_a >= 1);
    CHECK(found_b >= 1);
  }

  TEST_CASE("continuing a run removes the temporaries an interrupted save left behind") {
    CrashTempDir tmp;
    std::vector<std::string> logs;
    CheckpointConfig cfg = crash_config(tmp.path, "exp", false);
    cfg.log = [&](std::string_view s) { logs.emplace_back(s); };
    fs::path run;
    {
      CheckpointManager m(cfg);
      run = m.start_run();
      m.on_epoch_end(1, crash_metrics(), crash_state(1));
    }
    const pid_t dead = ::fork();  // a pid that belongs to no live process once reaped
    REQUIRE(dead >= 0);
    if (dead == 0) ::_exit(0);
    REQUIRE(::waitpid(dead, nullptr, 0) == dead);
    const std::string leftover = "ckpt_latest.pth.tmp." + std::to_string(dead) + ".0";
    std::ofstream(run / leftover) << "half a zip";
    ResumeRequest req;
    req.resume = true;
    CheckpointManager m(cfg);
    const ResumePlan plan = resolve_resume(tmp.path, "exp", req);
    CHECK(fs::exists(run / leftover));  // resolving is a lookup: it changes nothing
    m.start_run(plan);
    CHECK_FALSE(fs::exists(run / leftover));
    bool logged = false;
    for (const auto& l : logs) logged |= l.find("Removed 1 stale temporary") != std::string::npos;
    CHECK(logged);
  }
}
