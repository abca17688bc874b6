// Saving onto a full file system (issue 5), with a real ENOSPC: a small tmpfs mounted for the
// test. A failed save must throw an sgckpt::Error that names the file and says the device is
// full, leave the previous checkpoint exactly as it was, and leave no temporary behind (one
// left behind would also keep holding its space, so every later save would fail too). The
// manager must report the failure (sync: from on_epoch_end; async: from flush() or the next
// call), keep ckpt_latest.pth and ckpt_best.pth loadable, and not go on claiming the failed
// epoch as its best when ckpt_best.pth was not written.
//
// Mounting needs root with CAP_SYS_ADMIN; elsewhere (an unprivileged container, a normal
// user) each case says why it is skipped and passes.
#include <doctest/doctest.h>

#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "../test_support.hpp"
#include "sgckpt/ckpt/manager.hpp"

using namespace sgckpt;
namespace fs = std::filesystem;

namespace {

// A tmpfs mounted on a fresh directory with the given mount options ("size=1m"); unmounted
// and removed at scope exit. When it cannot be mounted, mounted() is false and why_not() says
// why.
class SmallTmpfs {
 public:
  explicit SmallTmpfs(const std::string& options) {
    std::string tmpl = (fs::temp_directory_path() / "sgckpt_full_XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    dir_ = tmpl;
    if (::geteuid() != 0) {
      why_not_ = "not running as root, so no tmpfs can be mounted to fill up";
      return;
    }
    if (::mount("sgckpt-test", dir_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options.c_str()) !=
        0) {
      why_not_ = std::string("mount(2) of a tmpfs failed: ") + std::strerror(errno) +
                 " (no CAP_SYS_ADMIN, e.g. in an unprivileged container)";
      return;
    }
    mounted_ = true;
  }
  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;
  ~SmallTmpfs() {
    // MNT_DETACH: a file still open somewhere must not keep the mount (and this test) alive.
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  bool mounted() const { return mounted_; }
  const std::string& why_not() const { return why_not_; }
  const fs::path& dir() const { return dir_; }

 private:
  fs::path dir_;
  bool mounted_ = false;
  std::string why_not_;
};

constexpr const char* kSize = "size=1m,mode=0700";  // 1 MiB: the states below are sized against it

// `floats` float32 values, distinct per seed.
Tensor filled(std::size_t floats, float seed) {
  Tensor t = Tensor::empty(DType::Float32, {static_cast<std::int64_t>(floats)});
  float* p = t.mutable_data<float>();
  for (std::size_t i = 0; i < floats; ++i) p[i] = seed + static_cast<float>(i % 1000) * 0.001f;
  return t;
}

constexpr std::size_t kSmall = 256;          // 1 KiB of data: a file of a few KiB
constexpr std::size_t kMedium = 150 * 1024;  // 600 KiB: one copy fits in 1 MiB, two do not
constexpr std::size_t kHuge = 512 * 1024;    // 2 MiB: never fits

Value plain_state(std::size_t floats, float seed) {
  Value v = Value::make_ordered_dict();
  v["w"] = filled(floats, seed);
  v["step"] = Value(Int(static_cast<std::int64_t>(seed)));
  return v;
}

TrainingState training_state(std::size_t floats, float seed) {
  TrainingState s;
  s.net = Value::make_ordered_dict();
  s.net["fc.weight"] = filled(floats, seed);
  s.optimizer = Value::make_dict();
  s.optimizer["state"] = Value::make_dict();
  Value group = Value::make_dict();
  group["lr"] = 0.1;
  group["params"] = Value::make_list({Value(0)});
  s.optimizer["param_groups"] = Value::make_list({group});
  return s;
}

Metrics accuracy(double v) {
  Metrics m;
  m.valid = {{"Accuracy", v}};
  return m;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> temporaries_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& name : entries(dir))
    if (is_temporary_name(name)) out.push_back(name);
  return out;
}

std::int64_t epoch_of(const fs::path& file) {
  return load(file).at("epoch").as_int();
}

// The checks every ENOSPC error must pass: it names the file and says why.
void check_disk_full_error(const Error& e, const fs::path& file) {
  const std::string what = e.what();
  INFO("what(): " << what);
  CHECK(test::contains(what, file.string()));
  CHECK(test::contains(lower(what), "no space left on device"));
}

}  // namespace

TEST_SUITE("ckpt/disk_full") {
  TEST_CASE("save onto a full file system throws, keeps the previous file and leaves no temporary") {
    for (const bool durable : {true, false}) {
      CAPTURE(durable);
      SmallTmpfs tmpfs(kSize);
      if (!tmpfs.mounted()) {
        MESSAGE("skipped: " << tmpfs.why_not());
        return;
      }
      SaveOptions options;
      options.durable = durable;
      const fs::path file = tmpfs.dir() / "model.pth";
      const Value small = plain_state(kSmall, 1);
      save(small, file, options);
      const std::vector<std::byte> before = test::read_file(file);

      const Error e = test::error_of([&] { save(plain_state(kHuge, 2), file, options); });
      check_disk_full_error(e, file);
      CHECK(e.context().file == file.string());

      CHECK(test::read_file(file) == before);
      const Value back = load(file);
      CHECK(back.at("w").tensor().equal(small.at("w").tensor()));
      CHECK(back.at("step").as_int() == 1);
      CHECK(entries(tmpfs.dir()) == std::vector<std::string>{"model.pth"});

      // The space the failed temporary took is free again: a file of more than half the
      // file system still fits.
      CHECK_NOTHROW(save(plain_state(kMedium, 3), tmpfs.dir() / "other.pth", options));
      CHECK(load(tmpfs.dir() / "other.pth").at("step").as_int() == 3);
      CHECK(temporaries_in(tmpfs.dir()).empty());
    }
  }

  TEST_CASE("save with no free inode left fails at creating the temporary, with a clear error") {
    // nr_inodes=2: the root directory and one file. The second save cannot create its temporary.
    SmallTmpfs tmpfs(std::string(kSize) + ",nr_inodes=2");
    if (!tmpfs.mounted()) {
      MESSAGE("skipped: " << tmpfs.why_not());
      return;
    }
    const fs::path file = tmpfs.dir() / "model.pth";
    save(plain_state(kSmall, 1), file);
    const std::vector<std::byte> before = test::read_file(file);
    const Error e = test::error_of([&] { save(plain_state(kSmall, 2), file); });
    check_disk_full_error(e, file);
    CHECK(test::contains(e.what(), "cannot create temporary file"));
    CHECK(test::read_file(file) == before);
    CHECK(entries(tmpfs.dir()) == std::vector<std::string>{"model.pth"});
  }

  TEST_CASE(
      "CheckpointManager: an epoch too large for the disk is reported and the previous checkpoints stay") {
    // How the error of the failed background write reaches the caller.
    enum class Mode { Sync, AsyncFlush, AsyncNextEpoch, AsyncDestructor };
    for (const Mode mode : {Mode::Sync, Mode::AsyncFlush, Mode::AsyncNextEpoch, Mode::AsyncDestructor}) {
      CAPTURE(static_cast<int>(mode));
      SmallTmpfs tmpfs(kSize);
      if (!tmpfs.mounted()) {
        MESSAGE("skipped: " << tmpfs.why_not());
        return;
      }
      std::vector<std::string> logs;
      CheckpointConfig cfg;
      cfg.ckpt_root_dir = tmpfs.dir();
      cfg.experiment_name = "exp";
      cfg.average_best_models = false;
      cfg.async_save = mode != Mode::Sync;
      cfg.log = [&](std::string_view s) { logs.emplace_back(s); };
      fs::path run;
      std::vector<std::byte> latest_before, best_before;
      {
        CheckpointManager m(cfg);
        run = m.start_run();
        const fs::path latest = run / "ckpt_latest.pth", best = run / "ckpt_best.pth";
        CHECK(m.on_epoch_end(1, accuracy(0.5), training_state(kSmall, 1)).best);
        m.flush();
        latest_before = test::read_file(latest);
        best_before = test::read_file(best);

        // Epoch 2 improves the metric, so it would write ckpt_latest.pth and ckpt_best.pth; the
        // first of them already fills the disk.
        auto epoch2 = [&] { m.on_epoch_end(2, accuracy(0.9), training_state(kHuge, 2)); };
        if (mode == Mode::AsyncDestructor) {
          epoch2();  // never flushed: the destructor waits for the write and logs its error
        } else {
          Error e("(nothing thrown)");
          if (mode == Mode::Sync) {
            e = test::error_of(epoch2);
          } else {
            CHECK_NOTHROW(epoch2());  // the write runs in the background
            if (mode == Mode::AsyncFlush)
              e = test::error_of([&] { m.flush(); });
            else  // the next epoch reports it first and does nothing of its own
              e = test::error_of([&] { m.on_epoch_end(3, accuracy(0.7), training_state(kSmall, 3)); });
          }
          check_disk_full_error(e, latest);
          CHECK(test::contains(e.what(), "saving the checkpoints of epoch 2 failed"));

          CHECK(test::read_file(latest) == latest_before);
          CHECK(epoch_of(latest) == 1);
          CHECK(test::read_file(best) == best_before);
          CHECK(temporaries_in(run).empty());
          // ckpt_best.pth was not written: the manager's best is epoch 1's again.
          CHECK(m.best_metric_value() == 0.5);
          CHECK(m.best_metrics().at("valid").at("Accuracy").as_float() == 0.5);

          // The run goes on: epoch 3 beats epoch 1 (not the lost 0.9), so ckpt_best.pth follows.
          CHECK(m.on_epoch_end(3, accuracy(0.7), training_state(kSmall, 3)).best);
          m.flush();
          CHECK(epoch_of(latest) == 3);
          CHECK(epoch_of(best) == 3);
          CHECK(load(latest).at("best_metric_value").as_float() == 0.7);
          CHECK(temporaries_in(run).empty());
        }
      }
      if (mode == Mode::AsyncDestructor) {
        bool logged = false;
        for (const auto& l : logs)
          logged |= test::contains(l, "could not be reported") &&
                    test::contains(lower(l), "no space left on device");
        CHECK(logged);
        CHECK(test::read_file(run / "ckpt_latest.pth") == latest_before);
        CHECK(test::read_file(run / "ckpt_best.pth") == best_before);
        CHECK(temporaries_in(run).empty());
      }
    }
  }

  TEST_CASE("CheckpointManager: ckpt_latest.pth fits but ckpt_best.pth does not; best is not claimed") {
    for (const bool async : {false, true}) {
      CAPTURE(async);
      SmallTmpfs tmpfs(kSize);
      if (!tmpfs.mounted()) {
        MESSAGE("skipped: " << tmpfs.why_not());
        return;
      }
      CheckpointConfig cfg;
      cfg.ckpt_root_dir = tmpfs.dir();
      cfg.experiment_name = "exp";
      cfg.average_best_models = false;
      cfg.async_save = async;
      CheckpointManager m(cfg);
      const fs::path run = m.start_run();
      const fs::path latest = run / "ckpt_latest.pth", best = run / "ckpt_best.pth";
      m.on_epoch_end(1, accuracy(0.5), training_state(kSmall, 1));
      m.flush();
      const std::vector<std::byte> best_before = test::read_file(best);

      // 600 KiB: ckpt_latest.pth is replaced (the old one is small), then ckpt_best.pth would
      // need a second 600 KiB.
      const Error e = test::error_of([&] {
        m.on_epoch_end(2, accuracy(0.9), training_state(kMedium, 2));
        m.flush();
      });
      check_disk_full_error(e, best);
      CHECK(test::contains(e.what(), "saving the checkpoints of epoch 2 failed"));
      CHECK(epoch_of(latest) == 2);  // written completely before the disk ran full
      CHECK(test::read_file(best) == best_before);
      CHECK(epoch_of(best) == 1);
      CHECK(temporaries_in(run).empty());
      // settle() restored epoch 1's best: ckpt_best.pth still holds it.
      CHECK(m.best_metric_value() == 0.5);
      CHECK(m.best_metrics().at("valid").at("Accuracy").as_float() == 0.5);

      // A process that stops now and resumes in place must not believe ckpt_latest.pth's record
      // (best 0.9, never saved as ckpt_best.pth): restore() takes the best file's value.
      {
        CheckpointManager resumed(cfg);
        ResumeRequest req;
        req.run_id = run.filename().string();
        const ResumeState rs = resumed.restore(resolve_resume(tmpfs.dir(), "exp", req));
        REQUIRE(rs.best_metric);
        CHECK(*rs.best_metric == 0.5);
        CHECK(resumed.best_metric_value() == 0.5);
        bool warned = false;
        for (const auto& w : rs.warnings) warned |= test::contains(w, "its save was interrupted");
        CHECK(warned);
      }

      // Epoch 3 beats 0.5 (though not the unsaved 0.9): ckpt_best.pth catches up, and
      // ckpt_latest.pth agrees with it again.
      CHECK(m.on_epoch_end(3, accuracy(0.7), training_state(kSmall, 3)).best);
      m.flush();
      CHECK(epoch_of(best) == 3);
      CHECK(epoch_of(latest) == 3);
      CHECK(load(latest).at("best_metric_value").as_float() == 0.7);
      CHECK(temporaries_in(run).empty());
    }
  }
}
