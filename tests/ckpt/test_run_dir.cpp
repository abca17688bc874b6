// Run directories, latest-run discovery and resume resolution (sgckpt/ckpt/run_dir.hpp),
// checked against SuperGradients' rules (docs/supergradients.md §2, §7).
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "sgckpt/ckpt/run_dir.hpp"

using namespace sgckpt;
namespace fs = std::filesystem;

namespace {

// A fresh directory under the system temp dir, removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "sgckpt_rundir_XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void touch(const fs::path& p, const std::string& text = "x") {
  std::ofstream(p, std::ios::binary) << text;
}

// Every path under `root` (to prove that lookups create nothing).
std::set<std::string> tree(const fs::path& root) {
  std::set<std::string> out;
  if (!fs::exists(root)) return out;
  for (const auto& e : fs::recursive_directory_iterator(root)) out.insert(e.path().string());
  return out;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_SUITE("ckpt/run_dir") {
  TEST_CASE("run ids have SG's form, in local time, with microseconds") {
    using namespace std::chrono;
    const auto t = system_clock::time_point(microseconds(1'690'981'852'651'906));  // 2023-08-02 13:24:12 UTC
    const std::string id = make_run_id(t);
    CHECK(is_run_dir_name(id));
    CHECK(id.substr(id.size() - 7) == "_651906");
    const std::time_t secs = 1'690'981'852;
    std::tm tm{};
    ::localtime_r(&secs, &tm);
    char expect[32];
    std::strftime(expect, sizeof expect, "RUN_%Y%m%d_%H%M%S", &tm);
    CHECK(id == std::string(expect) + "_651906");

    CHECK(is_run_dir_name("RUN_20230802_131052_651906"));
    CHECK_FALSE(is_run_dir_name("RUN_20230802_131052"));
    CHECK_FALSE(is_run_dir_name("RUN_notes"));
    CHECK_FALSE(is_run_dir_name("run_20230802_131052_651906"));
    CHECK_FALSE(is_run_dir_name("RUN_2023080a_131052_651906"));
    CHECK_FALSE(is_run_dir_name("RUN_20230802_131052_6519060"));
  }

  TEST_CASE("1000 run directories created in a burst are all distinct, in creation order") {
    TempDir tmp;
    std::vector<fs::path> made;
    for (int i = 0; i < 1000; ++i) made.push_back(create_run_dir(tmp.path, "exp", /*durable=*/false));
    std::set<std::string> names;
    for (std::size_t i = 0; i < made.size(); ++i) {
      CHECK(fs::is_directory(made[i]));
      CHECK(is_run_dir_name(made[i].filename().string()));
      CHECK(made[i].parent_path() == tmp.path / "exp");
      names.insert(made[i].filename().string());
      if (i) CHECK(made[i - 1].filename().string() < made[i].filename().string());
    }
    CHECK(names.size() == 1000);
    const auto runs = list_runs(tmp.path, "exp");
    REQUIRE(runs.size() == 1000);
    CHECK(runs.front() == made.back());  // newest first
    CHECK(runs.back() == made.front());
  }

  TEST_CASE("two processes creating runs at the same moment never share a directory") {
    TempDir tmp;
    constexpr int kPerProcess = 300;
    // Both children start from the same instant (a shared start time in the near future) so
    // that their clocks propose the same names and mkdir(2) has to arbitrate.
    const auto start = std::chrono::steady_clock::now() + std::chrono::milliseconds(50);
    std::vector<pid_t> pids;
    for (int c = 0; c < 2; ++c) {
      const pid_t pid = ::fork();
      REQUIRE(pid >= 0);
      if (pid == 0) {
        int rc = 0;
        try {
          std::this_thread::sleep_until(start);
          std::ofstream out(tmp.path / ("made_" + std::to_string(c)));
          for (int i = 0; i < kPerProcess; ++i)
            out << create_run_dir(tmp.path, "exp", false).filename().string() << "\n";
        } catch (...) {
          rc = 1;
        }
        ::_exit(rc);
      }
      pids.push_back(pid);
    }
    for (pid_t pid : pids) {
      int status = 0;
      REQUIRE(::waitpid(pid, &status, 0) == pid);
      CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
    }
    std::set<std::string> all;
    for (int c = 0; c < 2; ++c) {
      std::ifstream in(tmp.path / ("made_" + std::to_string(c)));
      std::string line;
      int n = 0;
      while (std::getline(in, line)) {
        all.insert(line);
        ++n;
      }
      CHECK(n == kPerProcess);
    }
    CHECK(all.size() == 2 * kPerProcess);
    CHECK(list_runs(tmp.path, "exp").size() == 2 * kPerProcess);
  }

  TEST_CASE("list_runs: only RUN_ directories, newest first; a missing experiment has none") {
    TempDir tmp;
    const fs::path exp = tmp.path / "exp";
    fs::create_directories(exp / "RUN_20240101_000000_000001");
    fs::create_directories(exp / "RUN_20240301_000000_000000");
    fs::create_directories(exp / "RUN_20231231_235959_999999");
    fs::create_directories(exp / "RUN_notes");  // not a run: would sort after every real one
    fs::create_directories(exp / ".hydra");
    touch(exp / "RUN_20250101_000000_000000");  // a file, not a directory
    const auto runs = list_runs(tmp.path, "exp");
    REQUIRE(runs.size() == 3);
    CHECK(runs[0].filename() == "RUN_20240301_000000_000000");
    CHECK(runs[1].filename() == "RUN_20240101_000000_000001");
    CHECK(runs[2].filename() == "RUN_20231231_235959_999999");
    CHECK(list_runs(tmp.path, "other").empty());
    CHECK(list_runs(tmp.path / "nowhere", "exp").empty());
  }

  TEST_CASE("latest_resumable_run skips newer runs without ckpt_latest.pth, with warnings") {
    TempDir tmp;
    const fs::path exp = tmp.path / "exp";
    const fs::path old_run = exp / "RUN_20240101_000000_000000";
    const fs::path good = exp / "RUN_20240102_000000_000000";
    const fs::path crashed1 = exp / "RUN_20240103_000000_000000";
    const fs::path crashed2 = exp / "RUN_20240104_000000_000000";
    for (const auto& d : {old_run, good, crashed1, crashed2}) fs::create_directories(d);
    touch(old_run / "ckpt_latest.pth");
    touch(good / "ckpt_latest.pth");
    touch(crashed1 / "ckpt_best.pth");                 // best alone does not make a run resumable (SG)
    touch(crashed2 / "ckpt_latest.pth.tmp.999999.0");  // an interrupted save does not either
    const LatestRun latest = latest_resumable_run(tmp.path, "exp");
    REQUIRE(latest.run_dir);
    CHECK(*latest.run_dir == good);
    REQUIRE(latest.warnings.size() == 2);
    CHECK(latest.warnings[0].find(crashed2.string()) != std::string::npos);
    CHECK(latest.warnings[1].find(crashed1.string()) != std::string::npos);
    CHECK(latest.warnings[0].find("ckpt_latest.pth") != std::string::npos);

    TempDir empty;
    CHECK_FALSE(latest_resumable_run(empty.path, "exp").run_dir);
  }

  TEST_CASE("validate_run_id names the directory searched; ids cannot escape the experiment") {
    TempDir tmp;
    const fs::path run = tmp.path / "exp" / "RUN_20240101_000000_000000";
    fs::create_directories(run);
    CHECK(validate_run_id(tmp.path, "exp", "RUN_20240101_000000_000000") == run);
    fs::create_directories(tmp.path / "exp" / "my_renamed_run");  // any existing dir, as in SG
    CHECK(validate_run_id(tmp.path, "exp", "my_renamed_run") == tmp.path / "exp" / "my_renamed_run");

    const std::string msg = error_of([&] { validate_run_id(tmp.path, "exp", "RUN_20990101_000000_000000"); });
    CHECK(msg.find("Invalid run directory \"" + (tmp.path / "exp" / "RUN_20990101_000000_000000").string() +
                   "\"") != std::string::npos);
    CHECK(msg.find("ckpt_root_dir=" + tmp.path.string()) != std::string::npos);
    CHECK(msg.find("experiment_name=exp") != std::string::npos);
    CHECK(msg.find("run_id=RUN_20990101_000000_000000") != std::string::npos);
    for (const char* bad : {"..", ".", "", "../exp/RUN_20240101_000000_000000", "a/b"})
      CHECK(error_of([&] { validate_run_id(tmp.path, "exp", bad); }).find("Invalid run directory") !=
            std::string::npos);
    CHECK(error_of([&] { experiment_dir(tmp.path, "../up"); }).find("experiment_name") != std::string::npos);
  }

  TEST_CASE("looking things up never creates a directory") {
    TempDir tmp;
    const fs::path root = tmp.path / "ckpts";
    ResumeRequest resume;
    resume.resume = true;
    ResumeRequest by_id;
    by_id.run_id = "RUN_20240101_000000_000000";
    // Nothing exists at all.
    (void)list_runs(root, "exp");
    (void)latest_resumable_run(root, "exp");
    (void)propose_run_dir(root, "exp");
    const ResumePlan fresh = resolve_resume(root, "exp", {});
    CHECK(fresh.mode == ResumePlan::Fresh);
    CHECK_FALSE(fs::exists(fresh.run_dir));
    CHECK(error_of([&] { resolve_resume(root, "exp", resume); }) != "(no error)");
    CHECK(error_of([&] { resolve_resume(root, "exp", by_id); }) != "(no error)");
    CHECK(error_of([&] { evaluate_checkpoint_path(root, "exp", "ckpt_best.pth"); }) != "(no error)");
    CHECK(error_of([&] { resume_experiment(root, "exp"); }) != "(no error)");
    CHECK_FALSE(fs::exists(root));

    // An existing tree: lookups leave it exactly as it was.
    const fs::path run = root / "exp" / "RUN_20240101_000000_000000";
    fs::create_directories(run);
    touch(run / "ckpt_latest.pth");
    const auto before = tree(root);
    (void)resolve_resume(root, "exp", resume);
    (void)resolve_resume(root, "exp", by_id);
    ResumeRequest branch;
    branch.resume_path = run / "ckpt_latest.pth";
    const ResumePlan b = resolve_resume(root, "exp", branch);
    CHECK_FALSE(fs::exists(b.run_dir));
    (void)evaluate_checkpoint_path(root, "exp", "ckpt_latest.pth");
    (void)resolve_resume(root, "other", {});
    CHECK(tree(root) == before);
  }

  TEST_CASE("resume modes pick SG's directory and file") {
    TempDir tmp;
    const fs::path exp = tmp.path / "exp";
    const fs::path r1 = exp / "RUN_20240101_000000_000000";
    const fs::path r2 = exp / "RUN_20240102_000000_000000";
    const fs::path r3 = exp / "RUN_20240103_000000_000000";  // newest, never validated
    for (const auto& d : {r1, r2, r3}) fs::create_directories(d);
    touch(r1 / "ckpt_latest.pth");
    touch(r1 / "ckpt_best.pth");
    touch(r2 / "ckpt_latest.pth");
    touch(r2 / "ckpt_best.pth");

    SUBCASE("resume: the latest resumable run, same directory") {
      ResumeRequest req;
      req.resume = true;
      const ResumePlan p = resolve_resume(tmp.path, "exp", req);
      CHECK(p.mode == ResumePlan::Resume);
      CHECK(p.run_dir == r2);
      CHECK_FALSE(p.new_run_dir);
      REQUIRE(p.checkpoint);
      CHECK(*p.checkpoint == r2 / "ckpt_latest.pth");
      CHECK(p.log_line().find(r2.string()) != std::string::npos);
      CHECK(p.log_line().find((r2 / "ckpt_latest.pth").string()) != std::string::npos);
      req.ckpt_name = "ckpt_best.pth";  // ckpt_name picks the file
      CHECK(*resolve_resume(tmp.path, "exp", req).checkpoint == r2 / "ckpt_best.pth");
      req.ckpt_name = "ckpt_epoch_7.pth";
      const std::string msg = error_of([&] { resolve_resume(tmp.path, "exp", req); });
      CHECK(msg.find((r2 / "ckpt_epoch_7.pth").string()) != std::string::npos);
      CHECK(msg.find("searched the directory \"" + r2.string() + "\"") != std::string::npos);
    }
    SUBCASE("run_id: that run, same directory, even an older one") {
      ResumeRequest req;
      req.run_id = r1.filename().string();  // run_id alone implies loading, as in SG
      const ResumePlan p = resolve_resume(tmp.path, "exp", req);
      CHECK(p.mode == ResumePlan::RunId);
      CHECK(p.run_dir == r1);
      CHECK_FALSE(p.new_run_dir);
      CHECK(*p.checkpoint == r1 / "ckpt_latest.pth");
      req.ckpt_name = "ckpt_best.pth";
      CHECK(*resolve_resume(tmp.path, "exp", req).checkpoint == r1 / "ckpt_best.pth");
      req.run_id = r3.filename().string();  // exists, but holds no checkpoint
      req.ckpt_name = "ckpt_latest.pth";
      const std::string msg = error_of([&] { resolve_resume(tmp.path, "exp", req); });
      CHECK(msg.find((r3 / "ckpt_latest.pth").string()) != std::string::npos);
      CHECK(msg.find(r3.string()) != std::string::npos);
    }
    SUBCASE("resume_path: that file, a NEW run directory (proposed, not created)") {
      ResumeRequest req;
      req.resume = true;  // resume_path wins over resume (SG)
      req.resume_path = r1 / "ckpt_best.pth";
      const ResumePlan p = resolve_resume(tmp.path, "exp", req);
      CHECK(p.mode == ResumePlan::ResumePath);
      CHECK(p.new_run_dir);
      CHECK(*p.checkpoint == r1 / "ckpt_best.pth");
      CHECK(p.run_dir.parent_path() == exp);
      CHECK(is_run_dir_name(p.run_dir.filename().string()));
      CHECK(p.run_dir != r1);
      CHECK(p.run_dir != r2);
      CHECK_FALSE(fs::exists(p.run_dir));
      CHECK(p.log_line().find("NEW run directory") != std::string::npos);
      // Branching: creating the proposed directory makes a new run, the old ones untouched.
      const fs::path made = create_run_dir(p.run_dir);
      CHECK(made == p.run_dir);
      CHECK(fs::is_directory(made));
      CHECK(list_runs(tmp.path, "exp").size() == 4);
      // A proposal taken meanwhile yields another fresh directory.
      const fs::path again = create_run_dir(p.run_dir);
      CHECK(again != p.run_dir);
      CHECK(is_run_dir_name(again.filename().string()));

      req.resume_path = tmp.path / "nope.pth";
      const std::string msg = error_of([&] { resolve_resume(tmp.path, "exp", req); });
      CHECK(msg.find((tmp.path / "nope.pth").string()) != std::string::npos);
      CHECK(msg.find("searched the directory \"" + tmp.path.string() + "\"") != std::string::npos);
    }
    SUBCASE("fresh: a new run directory, no file") {
      const ResumePlan p = resolve_resume(tmp.path, "exp", {});
      CHECK(p.mode == ResumePlan::Fresh);
      CHECK(p.new_run_dir);
      CHECK_FALSE(p.checkpoint);
      CHECK(p.log_line().find(p.run_dir.string()) != std::string::npos);
    }
    SUBCASE("resume with no resumable run fails, naming the experiment directory") {
      fs::remove(r1 / "ckpt_latest.pth");
      fs::remove(r2 / "ckpt_latest.pth");
      ResumeRequest req;
      req.resume = true;
      const std::string msg = error_of([&] { resolve_resume(tmp.path, "exp", req); });
      CHECK(msg.find("\"" + exp.string() + "\"") != std::string::npos);
      CHECK(msg.find("ckpt_latest.pth") != std::string::npos);
    }
  }

  TEST_CASE("resume_experiment returns the stored recipe; evaluate resolves exactly the file asked for") {
    TempDir tmp;
    const fs::path exp = tmp.path / "exp";
    const fs::path r1 = exp / "RUN_20240101_000000_000000";
    const fs::path r2 = exp / "RUN_20240102_000000_000000";
    for (const auto& d : {r1, r2}) fs::create_directories(d);
    touch(r1 / "ckpt_latest.pth");
    touch(r1 / "recipe.yaml", "lr: 0.1\n# first\n");
    touch(r2 / "ckpt_latest.pth");
    touch(r2 / "average_model.pth");
    touch(r2 / "recipe.yaml", std::string("lr: 0.2\n\0binary-safe\n", 22));

    const ExperimentResume latest = resume_experiment(tmp.path, "exp");
    CHECK(latest.plan.mode == ResumePlan::Resume);
    CHECK(latest.plan.run_dir == r2);
    CHECK(latest.recipe_text == std::string("lr: 0.2\n\0binary-safe\n", 22));
    const ExperimentResume first = resume_experiment(tmp.path, "exp", r1.filename().string());
    CHECK(first.plan.mode == ResumePlan::RunId);
    CHECK(first.plan.run_dir == r1);
    CHECK(*first.plan.checkpoint == r1 / "ckpt_latest.pth");
    CHECK(first.recipe_text == "lr: 0.1\n# first\n");
    fs::remove(r1 / "recipe.yaml");
    const std::string msg = error_of([&] { resume_experiment(tmp.path, "exp", r1.filename().string()); });
    CHECK(msg.find(r1.string()) != std::string::npos);
    CHECK(msg.find("recipe.yaml") != std::string::npos);

    CHECK(evaluate_checkpoint_path(tmp.path, "exp", "average_model.pth") == r2 / "average_model.pth");
    CHECK(evaluate_checkpoint_path(tmp.path, "exp", "ckpt_latest.pth", r1.filename().string()) ==
          r1 / "ckpt_latest.pth");
    const std::string missing = error_of([&] { evaluate_checkpoint_path(tmp.path, "exp", "ckpt_best.pth"); });
    CHECK(missing.find((r2 / "ckpt_best.pth").string()) != std::string::npos);  // no silent fallback
  }

  TEST_CASE("stale temporaries: recognized, ignored by lookups, removed when their writer is gone") {
    CHECK(is_temporary_name("ckpt_latest.pth.tmp.1234.0"));
    CHECK(is_temporary_name("recipe.yaml.tmp.1.17"));
    CHECK_FALSE(is_temporary_name("ckpt_latest.pth"));
    CHECK_FALSE(is_temporary_name("ckpt.tmp.pth"));
    CHECK_FALSE(is_temporary_name("ckpt_latest.pth.tmp.12a4.0"));

    TempDir tmp;
    // A pid that certainly belongs to no process any more: a child we started and reaped.
    const pid_t dead = ::fork();
    REQUIRE(dead >= 0);
    if (dead == 0) ::_exit(0);
    REQUIRE(::waitpid(dead, nullptr, 0) == dead);
    const std::string d = std::to_string(dead);
    touch(tmp.path / ("ckpt_latest.pth.tmp." + d + ".0"));
    touch(tmp.path / ("ckpt_epoch_3.pth.tmp." + d + ".5"));
    touch(tmp.path / "ckpt_best.pth.tmp.1.0");  // pid 1 is alive: maybe a live writer, kept
    touch(tmp.path / "ckpt_latest.pth");
    CHECK(remove_stale_temporaries_in(tmp.path) == 2);
    CHECK_FALSE(fs::exists(tmp.path / ("ckpt_latest.pth.tmp." + d + ".0")));
    CHECK_FALSE(fs::exists(tmp.path / ("ckpt_epoch_3.pth.tmp." + d + ".5")));
    CHECK(fs::exists(tmp.path / "ckpt_best.pth.tmp.1.0"));
    CHECK(fs::exists(tmp.path / "ckpt_latest.pth"));
    CHECK(remove_stale_temporaries_in(tmp.path / "missing") == 0);
  }
}
