// bench/ema_average: how fast sgckpt's host EMA update and weight averaging run, next to torch
// (CPU) and to the memory-bandwidth limit measured in the same run over the same bytes.
//
// The state is SuperGradients' resnet18_cifar state_dict (docs/supergradients.md §6: 122 entries, 11.17 M
// trainable floats + 9.6 K BatchNorm running stats + 20 int64 counters). Rows:
//   EMA update           ema = d*ema + (1-d)*w over every float tensor: 12 bytes per float
//                        (read ema, read w, write ema). Ours with 1 thread and with the
//                        automatic count; torch's per-tensor loop as SG runs it
//                        (e.mul_(d).add_(w, alpha=1-d)) and _foreach_mul_ + _foreach_add_.
//   limit (EMA)          the same traffic done by the simplest streaming loops: a[i] = a[i]*s +
//                        b[i] over the same tensors, a STREAM triad c = a + s*b over three flat
//                        arrays of the same size, and glibc's memcpy (8 bytes per float); 1 and
//                        2 threads; the best GB/s of these is "the limit".
//   average of 10        mean of 10 snapshots (ModelAveraging::average): 44 bytes per float
//                        (read 10, write 1); torch: SG's running mean (avg*k + s)/(k+1), and
//                        torch.stack(...).mean(0) per key.
//   limit (average)      sum of the same 10 streams in float32 into one output.
//   snapshot + persist   ModelAveraging::update accepting a state: deep copy + atomic write of
//                        the 10-slot averaging_snapshots.pkl (to a RAM-backed dir); torch: SG's
//                        clone + torch.save of the same dict.
// Times are medians of --repeats runs (default 11) after 2 warm-up runs.
//
// Usage: ema_average [--repeats N] [--dir DIR] [--skip-torch]
// Env:   SGCKPT_PYTHON: the Python with torch (default /usr/bin/python3, Debian's).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "sgckpt/ckpt/averaging.hpp"
#include "sgckpt/ckpt/ema.hpp"
#include "sgckpt/lifecycle.hpp"

namespace fs = std::filesystem;
using sgckpt::DType;
using sgckpt::Tensor;
using sgckpt::Value;

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

double time_median(int repeats, const std::function<void()>& f, int warmup = 2) {
  for (int i = 0; i < warmup; ++i) f();
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    const double t0 = now();
    f();
    t.push_back(now() - t0);
  }
  return median(t);
}

// Small random-looking floats (xorshift), never zero pages.
Tensor random_tensor(sgckpt::Shape shape, std::uint64_t& x) {
  Tensor t = Tensor::empty(DType::Float32, std::move(shape));
  float* p = t.mutable_data<float>();
  for (std::size_t i = 0; i < t.numel(); ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p[i] = static_cast<float>(static_cast<std::int64_t>(x >> 40) - (1 << 23)) * 1e-8f;
  }
  return t;
}

// SG's resnet18_cifar state_dict (docs/supergradients.md §6).
Value resnet18_state(std::uint64_t seed) {
  std::uint64_t x = seed | 1;
  Value sd = Value::make_ordered_dict();
  auto conv = [&](const std::string& name, std::int64_t out, std::int64_t in, std::int64_t k) {
    sd[name + ".weight"] = random_tensor({out, in, k, k}, x);
  };
  auto bn = [&](const std::string& name, std::int64_t c) {
    sd[name + ".weight"] = random_tensor({c}, x);
    sd[name + ".bias"] = random_tensor({c}, x);
    sd[name + ".running_mean"] = random_tensor({c}, x);
    sd[name + ".running_var"] = random_tensor({c}, x);
    sd[name + ".num_batches_tracked"] = Tensor::zeros(DType::Int64, {});
  };
  conv("conv1", 64, 3, 3);
  bn("bn1", 64);
  std::int64_t in = 64;
  const std::int64_t planes[] = {64, 128, 256, 512};
  for (int l = 0; l < 4; ++l) {
    for (int b = 0; b < 2; ++b) {
      const std::string p = "layer" + std::to_string(l + 1) + "." + std::to_string(b);
      const std::int64_t out = planes[l];
      conv(p + ".conv1", out, in, 3);
      bn(p + ".bn1", out);
      conv(p + ".conv2", out, out, 3);
      bn(p + ".bn2", out);
      if (l > 0 && b == 0) {
        conv(p + ".shortcut.0", out, in, 1);
        bn(p + ".shortcut.1", out);
      }
      in = out;
    }
  }
  sd["linear.weight"] = random_tensor({10, 512}, x);
  sd["linear.bias"] = random_tensor({10}, x);
  return sd;
}

std::vector<float*> float_ptrs(Value& sd) {
  std::vector<float*> out;
  for (auto& [k, v] : sd.dict())
    if (v.tensor().dtype() == DType::Float32) out.push_back(v.tensor().mutable_data<float>());
  return out;
}
std::vector<std::size_t> float_counts(const Value& sd) {
  std::vector<std::size_t> out;
  for (const auto& [k, v] : sd.dict())
    if (v.tensor().dtype() == DType::Float32) out.push_back(v.tensor().numel());
  return out;
}

// Runs f(part) on `threads` threads over the same split the library uses.
void parallel(std::size_t threads, const std::vector<std::size_t>& counts, std::size_t weight,
              const std::function<void(std::size_t item, std::size_t begin, std::size_t end)>& f) {
  const auto plan =
      sgckpt::detail::split_by_bytes(counts, std::vector<std::size_t>(counts.size(), weight), threads);
  sgckpt::detail::thread_pool().run(plan.size(), [&](std::size_t p) {
    for (const auto& piece : plan[p]) f(piece.item, piece.begin, piece.end);
  });
}

std::map<std::string, double> run_torch(const std::string& python, const fs::path& script,
                                        const fs::path& dir, int repeats) {
  const fs::path out = dir / "torch_times.txt";
  std::ostringstream cmd;
  cmd << python << " " << script << " " << dir << " " << repeats << " > " << out;
  if (std::system(cmd.str().c_str()) != 0) throw std::runtime_error("the torch peer failed: " + cmd.str());
  std::map<std::string, double> times;
  std::ifstream in(out);
  std::string k;
  double v;
  while (in >> k >> v) times[k] = v;
  return times;
}

struct Row {
  std::string what;
  double seconds;
  double bytes;
  double limit_gbs;  // 0: no limit column
  double torch_s;    // 0: no torch column
};

void print_rows(const std::vector<Row>& rows) {
  std::printf("%-44s %10s %8s %9s %9s\n", "operation", "median ms", "GB/s", "of limit", "vs torch");
  for (const auto& r : rows) {
    const double gbs = r.bytes / r.seconds / 1e9;
    std::printf("%-44s %10.3f %8.2f", r.what.c_str(), r.seconds * 1e3, gbs);
    if (r.limit_gbs > 0)
      std::printf(" %8.0f%%", 100.0 * gbs / r.limit_gbs);
    else
      std::printf(" %9s", "");
    if (r.torch_s > 0) std::printf(" %8.2fx", r.torch_s / r.seconds);
    std::printf("\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  fs::path dir = "/dev/shm";
  int repeats = 11;
  bool with_torch = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--repeats" && i + 1 < argc)
      repeats = std::max(1, std::atoi(argv[++i]));
    else if (a == "--dir" && i + 1 < argc)
      dir = argv[++i];
    else if (a == "--skip-torch")
      with_torch = false;
    else {
      std::fprintf(stderr, "usage: ema_average [--repeats N] [--dir DIR] [--skip-torch]\n");
      return 2;
    }
  }
  const char* py = std::getenv("SGCKPT_PYTHON");
  const std::string python = py && *py ? py : "/usr/bin/python3";
#ifdef SGCKPT_SOURCE_DIR
  const fs::path script = fs::path(SGCKPT_SOURCE_DIR) / "bench" / "ema_average_torch.py";
#else
  const fs::path script = fs::path(__FILE__).parent_path() / "ema_average_torch.py";
#endif
  const fs::path work = dir / ("sgckpt-bench-ema-" + std::to_string(::getpid()));
  fs::create_directories(work);
  try {
    Value model = resnet18_state(42);
    Value ema = resnet18_state(7);
    std::size_t floats = 0, entries = 0;
    for (const auto& [k, v] : model.dict()) {
      ++entries;
      if (v.tensor().dtype() == DType::Float32) floats += v.tensor().numel();
    }
    const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    const std::size_t auto_threads = sgckpt::detail::choose_threads(0, floats * 12);
    std::printf(
        "resnet18_cifar state: %zu entries, %zu float32 elements (%.1f MB); %u hardware threads, "
        "automatic thread count %zu; AVX2+FMA loop: %s\n",
        entries, floats, floats * 4 / 1e6, hw, auto_threads,
#ifdef SGCKPT_EMA_X86
        sgckpt::detail::cpu_has_avx2_fma() ? "yes" : "no"
#else
        "n/a"
#endif
    );
    const double ema_bytes = 12.0 * static_cast<double>(floats);

    // ---- the limit: the same traffic through the simplest loops
    const auto counts = float_counts(model);
    std::vector<float*> a = float_ptrs(ema), b = float_ptrs(model);
    auto inplace = [&](std::size_t threads) {
      parallel(threads, counts, 4, [&](std::size_t it, std::size_t lo, std::size_t hi) {
        float* x = a[it];
        const float* y = b[it];
        for (std::size_t i = lo; i < hi; ++i) x[i] = x[i] * 0.999f + y[i];
      });
    };
    std::vector<float> fa(floats, 1.0f), fb(floats, 2.0f), fc(floats, 0.0f);
    auto triad = [&](std::size_t threads) {
      parallel(threads, {floats}, 4, [&](std::size_t, std::size_t lo, std::size_t hi) {
        for (std::size_t i = lo; i < hi; ++i) fc[i] = fa[i] + 0.5f * fb[i];
      });
    };
    // glibc's memcpy (vector loads, non-temporal stores for large sizes): 8 bytes per float.
    auto copy = [&](std::size_t threads) {
      parallel(threads, {floats}, 4, [&](std::size_t, std::size_t lo, std::size_t hi) {
        std::memcpy(fc.data() + lo, fa.data() + lo, (hi - lo) * 4);
      });
    };
    std::vector<Row> limit_rows;
    double limit = 0;
    const double copy_bytes = 8.0 * static_cast<double>(floats);
    for (std::size_t t : {std::size_t{1}, std::size_t{2}}) {
      const double s1 = time_median(repeats, [&] { inplace(t); });
      const double s2 = time_median(repeats, [&] { triad(t); });
      const double s3 = time_median(repeats, [&] { copy(t); });
      limit_rows.push_back(
          {"limit: a = a*s + b, same tensors, " + std::to_string(t) + " thr", s1, ema_bytes, 0, 0});
      limit_rows.push_back(
          {"limit: STREAM triad, flat arrays, " + std::to_string(t) + " thr", s2, ema_bytes, 0, 0});
      limit_rows.push_back(
          {"limit: memcpy, flat arrays, " + std::to_string(t) + " thr", s3, copy_bytes, 0, 0});
      limit = std::max({limit, ema_bytes / s1 / 1e9, ema_bytes / s2 / 1e9, copy_bytes / s3 / 1e9});
    }
    fa = {};
    fb = {};
    fc = {};

    // ---- ours
    const double decay = 0.9998;
    const double ema1 = time_median(repeats, [&] { sgckpt::ema_update(ema, model, decay, 1); });
    const double ema2 = time_median(repeats, [&] { sgckpt::ema_update(ema, model, decay, 2); });
    const double ema_auto = time_median(repeats, [&] { sgckpt::ema_update(ema, model, decay); });
    sgckpt::detail::ema_kernel_override() = sgckpt::detail::EmaKernel::Portable;
    const double ema_portable = time_median(
        std::max(3, repeats / 3), [&] { sgckpt::ema_update(ema, model, decay, 2); }, 1);
    sgckpt::detail::ema_kernel_override() = sgckpt::detail::EmaKernel::Auto;

    // Averaging: 10 snapshots (model + small offsets).
    std::vector<Value> snaps;
    for (int s = 0; s < 10; ++s) snaps.push_back(resnet18_state(100 + s));
    const double avg_bytes = 44.0 * static_cast<double>(floats);
    std::vector<std::vector<float*>> sp;
    for (auto& s : snaps) sp.push_back(float_ptrs(s));
    Value avg_out = resnet18_state(3);
    std::vector<float*> op = float_ptrs(avg_out);
    auto sum10 = [&](std::size_t threads) {
      parallel(threads, counts, 44, [&](std::size_t it, std::size_t lo, std::size_t hi) {
        float* o = op[it];
        for (std::size_t i = lo; i < hi; ++i) {
          float s = 0;
          for (int j = 0; j < 10; ++j) s += sp[static_cast<std::size_t>(j)][it][i];
          o[i] = s * 0.1f;
        }
      });
    };
    double avg_limit = 0;
    std::vector<Row> avg_limit_rows;
    for (std::size_t t : {std::size_t{1}, std::size_t{2}}) {
      const double s = time_median(repeats, [&] { sum10(t); });
      avg_limit_rows.push_back(
          {"limit: sum of 10 streams, " + std::to_string(t) + " thr", s, avg_bytes, 0, 0});
      avg_limit = std::max(avg_limit, avg_bytes / s / 1e9);
    }
    const double avg1 =
        time_median(repeats, [&] { sgckpt::average_states(std::span<const Value>(snaps), 1); });
    const double avg_auto =
        time_median(repeats, [&] { sgckpt::average_states(std::span<const Value>(snaps)); });

    // ModelAveraging::update accepting every time (increasing metric): clone + persist.
    double persist = 0;
    {
      const fs::path run = work / "run";
      fs::create_directories(run);
      sgckpt::ModelAveraging avg(run, true, 10);
      for (int s = 0; s < 10; ++s) avg.update(snaps[static_cast<std::size_t>(s)], s);  // fill
      double metric = 100;
      persist = time_median(
          std::max(3, repeats / 2), [&] { avg.update(model, metric += 1); }, 1);
    }

    // ---- torch, on the same bytes (the peer loads what we save)
    std::map<std::string, double> torch;
    if (with_torch) {
      sgckpt::save(model, work / "model.pth");
      sgckpt::save(ema, work / "ema.pth");
      Value snap_file = Value::make_dict();
      for (int s = 0; s < 10; ++s)
        snap_file["snapshot" + std::to_string(s)] = snaps[static_cast<std::size_t>(s)];
      sgckpt::save(snap_file, work / "snapshots.pth");
      torch = run_torch(python, script, work, repeats);
    }
    auto t = [&](const char* k) { return torch.count(k) ? torch.at(k) : 0.0; };

    std::vector<Row> rows;
    for (auto& r : limit_rows) rows.push_back(r);
    rows.push_back({"sgckpt ema_update, 1 thread", ema1, ema_bytes, limit, t("ema_loop")});
    rows.push_back({"sgckpt ema_update, 2 threads", ema2, ema_bytes, limit, t("ema_loop")});
    rows.push_back({"sgckpt ema_update, automatic", ema_auto, ema_bytes, limit, t("ema_loop")});
    rows.push_back({"sgckpt ema_update, portable loop (no AVX2)", ema_portable, ema_bytes, limit, 0});
    if (with_torch) {
      rows.push_back({"torch per-tensor mul_+add_ (SG)", t("ema_loop"), ema_bytes, limit, 0});
      rows.push_back({"torch _foreach_mul_+_foreach_add_", t("ema_foreach"), ema_bytes, limit, 0});
    }
    for (auto& r : avg_limit_rows) rows.push_back(r);
    rows.push_back({"sgckpt average of 10, 1 thread", avg1, avg_bytes, avg_limit, t("avg_sg")});
    rows.push_back({"sgckpt average of 10, automatic", avg_auto, avg_bytes, avg_limit, t("avg_sg")});
    if (with_torch) {
      rows.push_back({"torch SG running mean (avg*k+s)/(k+1)", t("avg_sg"), avg_bytes, avg_limit, 0});
      rows.push_back({"torch stack().mean(0) per key", t("avg_stack"), avg_bytes, avg_limit, 0});
    }
    const double persist_bytes = 4.0 * static_cast<double>(floats) * 11;  // copy + 10 snapshots written
    rows.push_back({"sgckpt averaging update (copy + persist)", persist, persist_bytes, 0, t("persist")});
    if (with_torch)
      rows.push_back({"torch SG clone + torch.save of the 10 slots", t("persist"), persist_bytes, 0, 0});

    std::printf("\nmemory-bandwidth limit for the EMA traffic: %.2f GB/s; for the average: %.2f GB/s\n",
                limit, avg_limit);
    if (with_torch)
      std::printf("torch peer: best of 1 and %g threads per op; has _foreach_lerp_: %s\n\n", t("threads"),
                  t("has_foreach_lerp") > 0 ? "yes" : "no");
    print_rows(rows);
    const double best = std::min({ema1, ema2, ema_auto});
    std::printf("\nEMA: best %.1f%% of the limit (target >= 70%%)", 100.0 * ema_bytes / best / 1e9 / limit);
    if (with_torch)
      std::printf("; %.2fx torch's SG loop, %.2fx torch's foreach", t("ema_loop") / best,
                  t("ema_foreach") / best);
    std::printf("\naverage: %.1f%% of its limit",
                100.0 * avg_bytes / std::min(avg1, avg_auto) / 1e9 / avg_limit);
    if (with_torch) std::printf("; %.2fx torch's SG running mean", t("avg_sg") / std::min(avg1, avg_auto));
    std::printf("\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ema_average: %s\n", e.what());
    fs::remove_all(work);
    return 1;
  }
  fs::remove_all(work);
  return 0;
}
