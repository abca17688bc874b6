// Remote copies (sgckpt/ckpt/remote/, docs/remote.md) without a network: the local-directory
// store, the background uploader's promises (frozen bytes, superseding, retry at the next
// checkpoint, a bounded finish), the manager uploading a run, and resume_from_remote. The S3
// store itself is tested against a real S3-compatible server in tests/python/test_remote_s3.py.
#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../test_support.hpp"
#include "sgckpt/ckpt/manager.hpp"
#include "sgckpt/ckpt/remote/pull.hpp"
#include "sgckpt/ckpt/remote/store.hpp"
#include "sgckpt/ckpt/remote/sync.hpp"
#include "sgckpt/detail/s3/text.hpp"

using namespace sgckpt;
using namespace sgckpt::test;
namespace fs = std::filesystem;
using std::chrono::milliseconds;

namespace {

void write_text(const fs::path& p, std::string_view text) {
  write_file(p, as_bytes(text));
}
std::string read_text(const fs::path& p) {
  return as_string(read_file(p));
}

// Replaces `p` the way sgckpt saves: a new file renamed over the name.
void replace_text(const fs::path& p, std::string_view text) {
  const fs::path tmp = p.string() + ".new";
  write_text(tmp, text);
  fs::rename(tmp, p);
}

// A store in front of a directory that can hold puts back (gate), fail them, and count them.
class TestStore final : public remote::Store {
 public:
  explicit TestStore(fs::path root) : inner_(std::move(root), /*durable=*/false) {}
  std::string url() const override { return "test://" + inner_.url(); }
  void put(const remote::SourceFile& src, const std::string& key, std::stop_token stop = {}) override {
    {
      std::unique_lock lock(m_);
      ++entered_;
      gate_cv_.notify_all();
      gate_cv_.wait(lock, stop, [this] { return open_; });
      ++puts_;
      if (!refused_.empty() && key.find(refused_) != std::string::npos)
        throw remote::StoreError(ErrorKind::Refused, "HTTP 403 InvalidAccessKeyId (test)", false, 403);
      if (failures_left_ > 0) {
        --failures_left_;
        throw remote::StoreError(ErrorKind::Io, "connection refused (test)", true);
      }
    }
    inner_.put(src, key, stop);
  }
  void get(const std::string& key, const fs::path& dest, std::stop_token stop = {}) override {
    inner_.get(key, dest, stop);
  }
  std::vector<remote::ObjectInfo> list(const std::string& prefix, std::stop_token stop = {}) override {
    return inner_.list(prefix, stop);
  }
  void remove(const std::string& key) override { inner_.remove(key); }

  void hold() { set_open(false); }
  void release() { set_open(true); }
  void fail_next(int n) {
    std::lock_guard lock(m_);
    failures_left_ = n;
  }
  // Keys containing `part` fail with an error that repeating cannot fix.
  void refuse_keys_containing(std::string part) {
    std::lock_guard lock(m_);
    refused_ = std::move(part);
  }
  int puts() {
    std::lock_guard lock(m_);
    return puts_;
  }
  // Waits (at most 10 s) until `n` puts have reached the gate: an upload is in flight.
  bool wait_for_puts_started(int n) {
    std::unique_lock lock(m_);
    return gate_cv_.wait_for(lock, std::chrono::seconds(10), [&] { return entered_ >= n; });
  }

 private:
  void set_open(bool v) {
    {
      std::lock_guard lock(m_);
      open_ = v;
    }
    gate_cv_.notify_all();
  }
  remote::LocalDirStore inner_;
  std::mutex m_;
  std::condition_variable_any gate_cv_;
  bool open_ = true;
  int failures_left_ = 0;
  std::string refused_;
  int puts_ = 0;
  int entered_ = 0;
};

template <class Pred>
bool eventually(Pred&& pred) {
  for (int i = 0; i < 2000; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return pred();
}

remote::SyncOptions fast() {
  return {.attempts_per_round = 2, .backoff = milliseconds(1), .max_backoff = milliseconds(2)};
}

}  // namespace

TEST_CASE("LocalDirStore: put, list, get and remove; keys cannot leave the root") {
  TempDir tmp;
  remote::LocalDirStore store(tmp / "store", /*durable=*/false);
  write_text(tmp / "a.pth", "alpha");
  store.put(remote::SourceFile::open(tmp / "a.pth"), "exp/RUN_1/a.pth");
  const auto objects = store.list("exp/");
  REQUIRE(objects.size() == 1);
  CHECK(objects[0].key == "exp/RUN_1/a.pth");
  CHECK(objects[0].size == 5);
  store.get("exp/RUN_1/a.pth", tmp / "back.pth");
  CHECK(read_text(tmp / "back.pth") == "alpha");
  store.remove("exp/RUN_1/a.pth");
  CHECK(store.list("").empty());
  for (const char* bad : {"", "../x", "a/../../x", "a//b", "/abs", "a/./b", "a\\b"})
    CHECK_MESSAGE(contains(error_message([&] { remote::check_key(bad); }), "invalid object key"), bad);
}

TEST_CASE(
    "A queued file uploads the bytes it had when it was queued, even after a newer save took its name") {
  TempDir tmp;
  auto store = std::make_shared<TestStore>(tmp / "store");
  write_text(tmp / "ckpt_latest.pth", "epoch 1");
  store->hold();
  remote::RemoteSync sync(store, "exp/RUN_1", fast());
  sync.enqueue(tmp / "ckpt_latest.pth");
  replace_text(tmp / "ckpt_latest.pth", "epoch 2 (not queued)");
  store->release();
  const auto r = sync.finish(std::chrono::seconds(10));
  CHECK(r.uploaded == 1);
  CHECK(read_text(tmp / "store/exp/RUN_1/ckpt_latest.pth") == "epoch 1");
}

TEST_CASE("A newer ckpt_latest supersedes the pending one: only the newest goes up") {
  TempDir tmp;
  auto store = std::make_shared<TestStore>(tmp / "store");
  store->hold();  // the first upload is in flight, the next ones wait behind it
  remote::RemoteSync sync(store, "exp/RUN_1", fast());
  for (int epoch = 1; epoch <= 5; ++epoch) {
    replace_text(tmp / "ckpt_latest.pth", "epoch " + std::to_string(epoch));
    sync.enqueue(tmp / "ckpt_latest.pth");
    // The uploader (a nicer thread) has taken epoch 1 before the next saves come.
    if (epoch == 1) REQUIRE(store->wait_for_puts_started(1));
  }
  store->release();
  const auto r = sync.finish(std::chrono::seconds(10));
  CHECK(r.uploaded == 2);    // the one in flight (epoch 1) and the newest (epoch 5)
  CHECK(r.superseded == 3);  // epochs 2, 3, 4 never went up
  CHECK(read_text(tmp / "store/exp/RUN_1/ckpt_latest.pth") == "epoch 5");
}

TEST_CASE("A store that is down: a warning, and the upload is tried again at the next checkpoint") {
  TempDir tmp;
  auto store = std::make_shared<TestStore>(tmp / "store");
  store->fail_next(2);  // one whole round (2 attempts) fails
  remote::RemoteSync sync(store, "exp/RUN_1", fast());
  write_text(tmp / "ckpt_epoch_1.pth", "one");
  sync.enqueue(tmp / "ckpt_epoch_1.pth");
  std::vector<std::string> logs;
  CHECK(eventually([&] {
    for (auto& l : sync.take_logs()) logs.push_back(l);
    return !logs.empty();
  }));
  REQUIRE(logs.size() == 1);
  CHECK(contains(logs[0], "failed 2 times (last: connection refused (test))"));
  CHECK(contains(logs[0], "tried again at the next checkpoint"));
  CHECK(store->puts() == 2);
  std::this_thread::sleep_for(milliseconds(50));
  CHECK(store->puts() == 2);  // it waits for the next checkpoint, not spinning
  write_text(tmp / "ckpt_epoch_2.pth", "two");
  sync.enqueue(tmp / "ckpt_epoch_2.pth");  // the next checkpoint: both go up
  const auto r = sync.finish(std::chrono::seconds(10));
  CHECK(r.uploaded == 2);
  CHECK(r.failures == 2);
  CHECK(r.not_uploaded.empty());
  CHECK(read_text(tmp / "store/exp/RUN_1/ckpt_epoch_1.pth") == "one");
  const auto later = sync.take_logs();
  REQUIRE(later.size() == 1);
  CHECK(contains(later[0], "works again"));
}

TEST_CASE("finish() waits at most its timeout and names what did not go up") {
  TempDir tmp;
  auto store = std::make_shared<TestStore>(tmp / "store");
  store->fail_next(1 << 30);
  remote::RemoteSync sync(store, "exp/RUN_1", fast());
  write_text(tmp / "ckpt_latest.pth", "x");
  sync.enqueue(tmp / "ckpt_latest.pth");
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = sync.finish(milliseconds(200));
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  CHECK(r.uploaded == 0);
  REQUIRE(r.not_uploaded.size() == 1);
  CHECK(contains(r.not_uploaded[0], "ckpt_latest.pth (the store did not take it in time)"));
  CHECK(sync.finish(milliseconds(200)).not_uploaded.size() == 1);  // a second call: the same report
}

TEST_CASE("An error that trying again cannot fix drops the file at once, and blocks nothing behind it") {
  TempDir tmp;
  auto store = std::make_shared<TestStore>(tmp / "store");
  store->refuse_keys_containing("bad");
  remote::RemoteSync sync(store, "exp/RUN_1", fast());
  write_text(tmp / "bad.pth", "b");
  write_text(tmp / "good.pth", "g");
  sync.enqueue(tmp / "bad.pth");
  sync.enqueue(tmp / "good.pth");
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = sync.finish(std::chrono::seconds(30));
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));  // not the whole timeout
  CHECK(r.uploaded == 1);
  CHECK(r.failures == 1);  // one try: repeating cannot help
  REQUIRE(r.not_uploaded.size() == 1);
  CHECK(contains(r.not_uploaded[0], "bad.pth (HTTP 403 InvalidAccessKeyId (test))"));
  CHECK(read_text(tmp / "store/exp/RUN_1/good.pth") == "g");
  const auto logs = sync.take_logs();
  REQUIRE(logs.size() == 1);
  CHECK(contains(logs[0], "will not be tried again"));
}

TEST_CASE("The uploader's thread, and the threads it starts, run nicer than the training loop") {
  TempDir tmp;
  struct NiceProbe final : remote::Store {
    std::atomic<int> seen{-100};
    std::string url() const override { return "probe"; }
    void put(const remote::SourceFile&, const std::string&, std::stop_token = {}) override {
      std::thread([this] {  // as S3Store's part threads: started from the uploader's thread
        seen = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)));
      })
          .join();
    }
    void get(const std::string&, const fs::path&, std::stop_token = {}) override {}
    std::vector<remote::ObjectInfo> list(const std::string&, std::stop_token = {}) override { return {}; }
    void remove(const std::string&) override {}
  };
  auto store = std::make_shared<NiceProbe>();
  const int mine = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)));
  remote::RemoteSync sync(store, "exp/RUN_1", fast());
  write_text(tmp / "a.pth", "a");
  sync.enqueue(tmp / "a.pth");
  CHECK(sync.finish(std::chrono::seconds(10)).uploaded == 1);
  CHECK(store->seen == std::min(19, mine + 10));
  CHECK(::getpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid))) ==
        mine);  // the caller's is untouched
}

TEST_CASE("A file that cannot be opened is reported, never thrown into the save") {
  TempDir tmp;
  auto store = std::make_shared<TestStore>(tmp / "store");
  remote::RemoteSync sync(store, "exp/RUN_1", fast());
  sync.enqueue(tmp / "missing.pth");
  const auto logs = sync.take_logs();
  REQUIRE(logs.size() == 1);
  CHECK(contains(logs[0], "missing.pth"));
  CHECK(sync.finish(std::chrono::seconds(1)).uploaded == 0);
}

namespace {

Value small_net(float v) {
  Value net = Value::make_ordered_dict();
  const float w[4] = {v, v + 1, v + 2, v + 3};
  net["fc.weight"] = Tensor::from_values<float>(DType::Float32, {2, 2}, std::span<const float>(w, 4));
  return net;
}

TrainingState small_state(float v) {
  TrainingState s;
  s.net = small_net(v);
  s.optimizer = Value::make_dict();
  s.optimizer["state"] = Value::make_dict();
  s.optimizer["param_groups"] = Value::make_list();
  return s;
}

}  // namespace

TEST_CASE("CheckpointManager uploads every file of the run; resume_from_remote brings it back") {
  TempDir tmp;
  auto store = std::make_shared<remote::LocalDirStore>(tmp / "store", /*durable=*/false);
  CheckpointConfig c;
  c.ckpt_root_dir = tmp / "machine1";
  c.experiment_name = "exp";
  c.save_ckpt_epoch_list = {1};
  c.durable = false;
  c.remote = store;
  std::vector<std::string> logs;
  c.log = [&](std::string_view l) { logs.emplace_back(l); };
  fs::path run;
  {
    CheckpointManager m(c);
    run = m.start_run("recipe: 1\n");
    m.on_epoch_end(1, {.valid = {{"Accuracy", 0.5}}, .train = {}}, small_state(1));
    m.on_epoch_end(2, {.valid = {{"Accuracy", 0.4}}, .train = {}}, small_state(2));
    m.finish();
  }
  const std::string prefix = "exp/" + run.filename().string() + "/";
  for (const char* name : {"ckpt_latest.pth", "ckpt_best.pth", "ckpt_epoch_1.pth", "average_model.pth",
                           "averaging_snapshots.pkl", "recipe.yaml"}) {
    INFO(name);
    REQUIRE(fs::exists(tmp / "store" / (prefix + name)));
    CHECK(read_file(tmp / "store" / (prefix + name)) == read_file(run / name));
  }
  bool summary = false;
  for (const auto& l : logs) summary = summary || contains(l, "Remote copies in ");
  CHECK(summary);

  // Another machine: the run comes back under the same id, and resumes from the epoch it reached.
  const ResumePlan plan = remote::resume_from_remote(*store, tmp / "machine2", "exp");
  CHECK(plan.mode == ResumePlan::RunId);
  CHECK(plan.run_dir == tmp / "machine2" / "exp" / run.filename());
  CHECK(read_file(plan.run_dir / "ckpt_latest.pth") == read_file(run / "ckpt_latest.pth"));
  CHECK(read_file(plan.run_dir / "recipe.yaml") == read_file(run / "recipe.yaml"));
  // A local run is never replaced by the store's copy.
  CHECK(contains(error_message([&] { remote::resume_from_remote(*store, tmp / "machine2", "exp"); }),
                 "already has a local ckpt_latest.pth"));
  CHECK(contains(error_message([&] { remote::resume_from_remote(*store, tmp / "machine3", "other"); }),
                 "no run of experiment \"other\""));
}

TEST_CASE("S3 text codecs: AWS URI encoding and the XML S3 answers with") {
  namespace s3 = sgckpt::detail::s3;
  CHECK(s3::uri_encode("runs/exp 1/a+b~c.pth", true) == "runs/exp%201/a%2Bb~c.pth");
  CHECK(s3::uri_encode("a/b", false) == "a%2Fb");
  CHECK(s3::uri_encode("\xc3\xa9", false) == "%C3%A9");
  CHECK(s3::xml_unescape("&lt;a&gt; &amp;&quot;&apos; &#65;&#x42; &bogus; &#xD800;") ==
        "<a> &\"' AB &bogus; &#xD800;");
  const std::string xml =
      "<ListBucketResult><Contents><Key>a&amp;b</Key><Size>3</Size></Contents>"
      "<Contents><Key>c</Key><Size>4</Size></Contents><IsTruncated>false</IsTruncated></ListBucketResult>";
  const auto contents = s3::xml_elements(xml, "Contents");
  REQUIRE(contents.size() == 2);
  CHECK(s3::xml_text(contents[0], "Key") == "a&b");
  CHECK(s3::xml_text(contents[1], "Size") == "4");
  CHECK_FALSE(s3::xml_text(xml, "NextContinuationToken").has_value());
}
