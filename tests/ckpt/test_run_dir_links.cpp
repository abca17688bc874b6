// Run directories that are links out of the checkpoint root (issue 13, hostile input round 2,
// class C). A RUN_ entry that is a symbolic link to some other directory used to be taken for
// the latest run: the resume then wrote its checkpoints there and deleted the files there
// that looked like stale temporaries. Now, once every link is resolved, a run directory (and
// an experiment directory) must lie inside the checkpoint root:
//   - latest-run selection skips such a link, with a warning that says where it points;
//   - naming it (run_id) is an Error, and so is starting a run in it;
//   - nothing outside the root is written or deleted.
// Links that stay inside the root keep working, and the cleanup of stale temporaries removes
// plain files only, never what a link points to.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "../test_support.hpp"
#include "sgckpt/ckpt/manager.hpp"
#include "sgckpt/ckpt/run_dir.hpp"

using namespace sgckpt;
using sgckpt::test::contains;
namespace fs = std::filesystem;

namespace {

const std::string kOlderRun = "RUN_20240101_000000_000000";
const std::string kLinkRun = "RUN_20990101_000000_000000";  // newest by name

void touch(const fs::path& p, const std::string& text = "x") {
  std::ofstream(p, std::ios::binary) << text;
}

// A pid that belongs to no process any more: a child we started and reaped.
std::string dead_pid() {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) ::_exit(0);
  REQUIRE(::waitpid(pid, nullptr, 0) == pid);
  return std::to_string(pid);
}

// Every file under `dir` with its content: what "nothing was written or deleted" compares.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::ifstream in(e.path(), std::ios::binary);
    out[e.path().string()] = std::string(std::istreambuf_iterator<char>(in), {});
  }
  return out;
}

// <tmp>/root/exp/ with a real, resumable older run, and a newer RUN_ link to <tmp>/outside,
// which looks resumable too and holds a temporary a crashed writer would have left.
struct LinkedRoot {
  test::TempDir tmp;
  fs::path root = tmp / "root";
  fs::path exp = root / "exp";
  fs::path outside = tmp / "outside";
  std::string stale = "ckpt_latest.pth.tmp." + dead_pid() + ".0";

  LinkedRoot() {
    fs::create_directories(exp / kOlderRun);
    touch(exp / kOlderRun / "ckpt_latest.pth");
    fs::create_directories(outside);
    touch(outside / "ckpt_latest.pth", "not ours");
    touch(outside / std::string(kRecipeFileName), "experiment_name: exp\n");
    touch(outside / stale, "someone else's file");
    fs::create_directory_symlink(outside, exp / kLinkRun);
  }
};

}  // namespace

TEST_SUITE("ckpt/run_dir_links") {
  TEST_CASE("latest-run selection skips a RUN_ link out of the root, and says where it points") {
    LinkedRoot t;
    CHECK(list_runs(t.root, "exp") == std::vector<fs::path>{t.exp / kOlderRun});

    const LatestRun latest = latest_resumable_run(t.root, "exp");
    REQUIRE(latest.run_dir);
    CHECK(*latest.run_dir == t.exp / kOlderRun);
    REQUIRE(latest.warnings.size() == 1);
    CHECK(contains(latest.warnings[0], "outside the checkpoint root"));
    CHECK(contains(latest.warnings[0], "is a symbolic link to \"" + t.outside.string() + "\""));

    ResumeRequest resume;
    resume.resume = true;
    const ResumePlan plan = resolve_resume(t.root, "exp", resume);
    CHECK(plan.run_dir == t.exp / kOlderRun);
    CHECK(plan.warnings == latest.warnings);  // the manager logs them
  }

  TEST_CASE(
      "naming the link (run_id, evaluate) is an Error; starting a run in it writes and deletes nothing") {
    LinkedRoot t;
    const auto before = snapshot(t.outside);

    const std::string named = test::error_message([&] { validate_run_id(t.root, "exp", kLinkRun); });
    CHECK(contains(named, "outside the checkpoint root"));
    CHECK(contains(named, t.outside.string()));
    ResumeRequest by_id;
    by_id.run_id = kLinkRun;
    CHECK(contains(test::error_message([&] { resolve_resume(t.root, "exp", by_id); }),
                   "outside the checkpoint root"));
    CHECK(contains(test::error_message([&] { resume_experiment(t.root, "exp", kLinkRun); }),
                   "outside the checkpoint root"));
    CHECK(contains(
        test::error_message([&] { evaluate_checkpoint_path(t.root, "exp", "ckpt_latest.pth", kLinkRun); }),
        "outside the checkpoint root"));

    // A plan made by hand (or resolved before the link was swapped in): the manager checks
    // again before it removes stale temporaries or writes anything.
    ResumePlan plan;
    plan.mode = ResumePlan::RunId;
    plan.run_dir = t.exp / kLinkRun;
    plan.new_run_dir = false;
    CheckpointConfig cfg;
    cfg.ckpt_root_dir = t.root;
    cfg.experiment_name = "exp";
    CheckpointManager m(cfg);
    CHECK(contains(test::error_message([&] { m.start_run(plan, std::string_view("recipe: 1\n")); }),
                   "outside the checkpoint root"));
    CHECK(snapshot(t.outside) == before);
    CHECK(fs::exists(t.outside / t.stale));
  }

  TEST_CASE("an experiment directory that links out of the root is refused; links inside the root work") {
    LinkedRoot t;
    fs::create_directory_symlink(t.outside, t.root / "elsewhere");
    CHECK(contains(test::error_message([&] { list_runs(t.root, "elsewhere"); }),
                   "outside the checkpoint root"));
    CHECK(contains(test::error_message([&] { create_run_dir(t.root, "elsewhere", false); }),
                   "outside the checkpoint root"));
    CHECK(contains(test::error_message([&] { create_run_dir(propose_run_dir(t.root, "elsewhere"), false); }),
                   "outside the checkpoint root"));
    for (const auto& e : fs::directory_iterator(t.outside))
      CHECK_FALSE(is_run_dir_name(e.path().filename().string()));

    // A RUN_ link to another run of the same root is an ordinary (if odd) run.
    const std::string alias = "RUN_20300101_000000_000000";
    fs::create_directory_symlink(t.exp / kOlderRun, t.exp / alias);
    CHECK(validate_run_id(t.root, "exp", alias) == t.exp / alias);
    CHECK(list_runs(t.root, "exp").size() == 2);
  }

  TEST_CASE("stale-temporary cleanup removes plain files only, never what a link points to") {
    test::TempDir tmp;
    const std::string dead = dead_pid();
    touch(tmp / "victim.pth", "precious");
    fs::create_symlink(tmp / "victim.pth", tmp / ("ckpt_latest.pth.tmp." + dead + ".1"));
    fs::create_directory(tmp / ("ckpt_best.pth.tmp." + dead + ".2"));
    touch(tmp / ("ckpt_epoch_1.pth.tmp." + dead + ".3"));
    CHECK(remove_stale_temporaries_in(tmp.path()) == 1);  // the plain file only
    CHECK(fs::exists(tmp / "victim.pth"));
    CHECK(fs::is_symlink(tmp / ("ckpt_latest.pth.tmp." + dead + ".1")));
    CHECK(fs::is_directory(tmp / ("ckpt_best.pth.tmp." + dead + ".2")));
  }
}
