// bench/pth_io: how fast sgckpt saves and loads .pth files, next to torch and to the limit.
//
// Two checkpoints: (a) a ResNet18-CIFAR training checkpoint (the 122-entry state_dict plus
// SGD momentum buffers, about 90 MB) and (b) a 1 GiB state dict of mixed tensor sizes. Each
// is saved and loaded by sgckpt, by torch (torch.save / torch.load in a Python peer run in
// the same process tree, same content, same directory), and moved by plain write()/read()
// of the same number of bytes, which is the limit. Files go to a RAM-backed directory
// (/dev/shm by default) so the disk does not hide the software cost. Every operation runs
// once untimed (warm-up), then REPEATS interleaved rounds (each operation once per round,
// the torch peer too); times are medians over the rounds.
//
// Each timed operation starts on primed memory (prime_memory): on the virtual machines we
// measure on, memory the guest frees is soon handed back to the host (virtio-balloon free page
// reporting), and the next first touch of it costs a host fault, about 0.7 s per GiB. Without
// priming, whichever operation followed a large free (a save replacing its file, the plain
// read's buffer) paid for it: the copying load measured 1.05-1.10 s after "plain read()" and
// 0.23-0.32 s elsewhere in the same run. The torch peer warms up in its own process the same
// way. A fresh process on such a machine pays the host's cost on both sides alike.
//
// The same weights are also saved and loaded as safetensors, next to the safetensors package
// (safe_open's load_file, save_file): the ResNet18 checkpoint's net and the 1 GiB state.
//
// Usage: pth_io [--dir DIR] [--repeats N] [--skip-torch] [--only small|large]
// Env:   SGCKPT_PYTHON: the Python with torch (default /usr/bin/python3, Debian's);
//        SGCKPT_PYPI_PYTHON: the Python with safetensors (default the PyPI oracles' venv).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "sgckpt/sgckpt.hpp"

namespace fs = std::filesystem;
using sgckpt::DType;
using sgckpt::Tensor;
using sgckpt::Value;

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Touches `bytes` of fresh memory (huge pages where the loaders use them) and frees it, so that
// the next allocations reuse memory the host backs (see the header).
void prime_memory(std::size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return;
  ::madvise(p, bytes, MADV_HUGEPAGE);
  std::memset(p, 1, bytes);
  ::munmap(p, bytes);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

Tensor random_tensor(sgckpt::Shape shape, std::mt19937_64& rng) {
  Tensor t = Tensor::empty(DType::Float32, std::move(shape));
  // Fill fast with a xorshift stream: the values do not matter, the bytes must not be zero
  // pages (tmpfs and the kernel treat those specially).
  auto* p = reinterpret_cast<std::uint32_t*>(t.mutable_raw_data());
  std::uint64_t x = rng() | 1;
  for (std::size_t i = 0; i < t.numel(); ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p[i] = 0x3C000000u | static_cast<std::uint32_t>(x & 0x00FFFFFFu);  // small positive floats
  }
  return t;
}

// The state_dict of SuperGradients' resnet18_cifar (docs/supergradients.md §6), random weights.
Value resnet18_state(std::mt19937_64& rng) {
  Value sd = Value::make_ordered_dict();
  auto conv = [&](const std::string& name, std::int64_t out, std::int64_t in, std::int64_t k) {
    sd[name + ".weight"] = random_tensor({out, in, k, k}, rng);
  };
  auto bn = [&](const std::string& name, std::int64_t c) {
    sd[name + ".weight"] = random_tensor({c}, rng);
    sd[name + ".bias"] = random_tensor({c}, rng);
    sd[name + ".running_mean"] = random_tensor({c}, rng);
    sd[name + ".running_var"] = random_tensor({c}, rng);
    Tensor n = Tensor::zeros(DType::Int64, {});
    sd[name + ".num_batches_tracked"] = n;
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
  sd["linear.weight"] = random_tensor({10, 512}, rng);
  sd["linear.bias"] = random_tensor({10}, rng);
  return sd;
}

// A SuperGradients-style checkpoint: net + SGD state (a momentum buffer per parameter).
Value resnet18_checkpoint(std::mt19937_64& rng) {
  Value net = resnet18_state(rng);
  Value state = Value::make_dict();
  Value params = Value::make_list();
  std::int64_t index = 0;
  for (const auto& [k, v] : net.dict()) {
    const std::string& name = k.str();
    if (name.find("running_") != std::string::npos || name.find("num_batches") != std::string::npos) continue;
    Value s = Value::make_dict();
    s["momentum_buffer"] = random_tensor(v.tensor().shape(), rng);
    state.dict().set(index, s);
    params.items().push_back(index++);
  }
  Value group = Value::make_dict();
  group["lr"] = 0.1;
  group["momentum"] = 0.9;
  group["dampening"] = 0;
  group["weight_decay"] = 0.0001;
  group["nesterov"] = false;
  group["maximize"] = false;
  group["foreach"] = Value();
  group["differentiable"] = false;
  group["params"] = params;
  Value opt = Value::make_dict();
  opt["state"] = state;
  opt["param_groups"] = Value::make_list({group});
  Value ckpt = Value::make_dict();
  ckpt["net"] = net;
  ckpt["acc"] = 0.5;
  ckpt["epoch"] = 10;
  ckpt["optimizer_state_dict"] = opt;
  ckpt["scaler_state_dict"] = Value::make_dict();
  return ckpt;
}

// 1 GiB in tensors from 1 KiB to 64 MiB, the mix of a large model's state dict.
Value large_state(std::mt19937_64& rng) {
  Value sd = Value::make_ordered_dict();
  const std::uint64_t target = 1ull << 30;
  std::uint64_t total = 0;
  const std::int64_t sizes[] = {256, 4096, 65536, 1 << 20, 4 << 20, 16 << 20};  // elements
  int i = 0;
  while (total < target) {
    std::int64_t n = sizes[static_cast<std::size_t>(i) % 6];
    if (total + static_cast<std::uint64_t>(n) * 4 > target)
      n = static_cast<std::int64_t>((target - total) / 4);
    sd["layers." + std::to_string(i) + ".weight"] = random_tensor({n}, rng);
    total += static_cast<std::uint64_t>(n) * 4;
    ++i;
  }
  return sd;
}

std::uint64_t tensor_bytes(const Value& v) {
  std::uint64_t b = 0;
  v.visit_tensors([&](const std::string&, const sgckpt::TensorValue<Tensor>& t) { b += t.tensor.nbytes(); });
  return b;
}

// Touches one byte per page of every tensor, so a lazy mapping is really read.
std::uint64_t touch(const Value& v) {
  std::uint64_t sum = 0;
  v.visit_tensors([&](const std::string&, const sgckpt::TensorValue<Tensor>& t) {
    const std::byte* p = t.tensor.raw_data();
    for (std::size_t i = 0; i < t.tensor.nbytes(); i += 4096) sum += static_cast<unsigned char>(p[i]);
  });
  return sum;
}

// Plain write() of the tensors' bytes into one file (+ fsync when durable): the limit.
void plain_write(const Value& v, const fs::path& path, bool durable) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw std::runtime_error("open failed");
  v.visit_tensors([&](const std::string&, const sgckpt::TensorValue<Tensor>& t) {
    const std::byte* p = t.tensor.storage()->data();
    std::size_t n = t.tensor.storage()->nbytes();
    while (n > 0) {
      const ssize_t w = ::write(fd, p, n);
      if (w <= 0) throw std::runtime_error("write failed");
      p += w;
      n -= static_cast<std::size_t>(w);
    }
  });
  if (durable) ::fsync(fd);
  ::close(fd);
}

// Plain read() of a whole file into freshly allocated memory (on huge pages, as the loaders
// allocate): the limit for a copying load.
std::uint64_t plain_read(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  struct stat st {};
  ::fstat(fd, &st);
  auto buf = sgckpt::Storage::allocate(static_cast<std::size_t>(st.st_size), /*huge_pages=*/true);
  std::byte* p = buf->mutable_data();
  std::size_t n = static_cast<std::size_t>(st.st_size);
  while (n > 0) {
    const ssize_t r = ::read(fd, p, n);
    if (r <= 0) break;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  ::close(fd);
  return static_cast<std::uint64_t>(st.st_size);
}

struct Row {
  std::string what;
  double seconds;
  double bytes;
};

std::map<std::string, double> run_torch(const std::string& python, const fs::path& script,
                                        const fs::path& src, const fs::path& dir, int repeats) {
  const fs::path out = dir / "torch_times.txt";
  std::ostringstream cmd;
  cmd << python << " " << script << " " << src << " " << dir << " " << repeats << " > " << out;
  if (std::system(cmd.str().c_str()) != 0) throw std::runtime_error("the torch peer failed: " + cmd.str());
  std::map<std::string, double> times;
  std::ifstream in(out);
  std::string k;
  double v;
  while (in >> k >> v) times[k] = v;
  return times;
}

struct Op {
  std::string what;
  std::function<void()> run;
};

// On these virtual machines the first writes into fresh memory are several times slower than
// later ones: every operation runs once untimed first, so no row absorbs that warm-up. Then
// interleaved rounds: each round runs every operation once and the peer once, so a burst of
// load from other jobs on the machine hits all rows alike. Rows are medians over the rounds;
// the peer's rows are named by `peer_rows` (its key -> the row's name).
std::vector<Row> measure(const std::vector<Op>& ops, int repeats, double bytes,
                         const std::function<std::map<std::string, double>()>& peer,
                         const std::map<std::string, std::string>& peer_rows) {
  for (const auto& op : ops) op.run();
  std::vector<std::vector<double>> times(ops.size());
  std::map<std::string, std::vector<double>> peer_times;
  for (int r = 0; r < repeats; ++r) {
    for (std::size_t i = 0; i < ops.size(); ++i) {
      prime_memory(static_cast<std::size_t>(bytes));
      const double t0 = now();
      ops[i].run();
      times[i].push_back(now() - t0);
    }
    if (peer)
      for (const auto& [key, secs] : peer()) peer_times[key].push_back(secs);
  }
  std::vector<Row> rows;
  for (std::size_t i = 0; i < ops.size(); ++i) rows.push_back({ops[i].what, median(times[i]), bytes});
  for (const auto& [key, name] : peer_rows)
    if (peer_times.count(key)) rows.push_back({name, median(peer_times.at(key)), bytes});
  return rows;
}

double seconds_of(const std::vector<Row>& rows, const std::string& what) {
  for (const auto& r : rows)
    if (r.what == what) return r.seconds;
  return 0.0;
}

void print_rows(const std::vector<Row>& rows) {
  std::printf("%-32s %10s %10s\n", "operation", "median ms", "GB/s");
  for (const auto& r : rows)
    std::printf("%-32s %10.2f %10.2f\n", r.what.c_str(), r.seconds * 1e3, r.bytes / r.seconds / 1e9);
}

void bench_case(const std::string& name, const Value& ckpt, const fs::path& dir, int repeats, bool with_torch,
                const std::string& python, const fs::path& script) {
  const double bytes = static_cast<double>(tensor_bytes(ckpt));
  const fs::path ours = dir / (name + ".pth");
  const fs::path plain = dir / (name + ".raw");
  std::printf("\n== %s: %.1f MB of tensors, %s\n", name.c_str(), bytes / 1e6, ours.c_str());

  sgckpt::SaveOptions durable, fast;
  fast.durable = false;
  sgckpt::LoadOptions copy, nocrc, mm, mmcrc;
  nocrc.verify_crc = false;
  mm.mmap = true;
  mm.verify_crc = false;
  mmcrc.mmap = true;
  volatile std::uint64_t sink = 0;
  const std::vector<Op> ops = {
      {"plain write()+fsync (limit)", [&] { plain_write(ckpt, plain, true); }},
      {"sgckpt save (durable)", [&] { sgckpt::save(ckpt, ours, durable); }},
      {"sgckpt save (no fsync)", [&] { sgckpt::save(ckpt, ours, fast); }},
      {"plain read() (limit)", [&] { plain_read(plain); }},
      {"sgckpt load (copy, CRC)", [&] { sgckpt::load(ours, copy); }},
      {"sgckpt load (copy, no CRC)", [&] { sgckpt::load(ours, nocrc); }},
      {"sgckpt load (mmap)", [&] { sgckpt::load(ours, mm); }},
      {"sgckpt load (mmap, CRC)", [&] { sgckpt::load(ours, mmcrc); }},
      {"sgckpt load (mmap) + touch", [&] { sink = sink + touch(sgckpt::load(ours, mm)); }},
  };
  std::function<std::map<std::string, double>()> peer;
  if (with_torch) peer = [&] { return run_torch(python, script, ours, dir, 1); };
  const std::vector<Row> rows =
      measure(ops, repeats, bytes, peer, {{"save", "torch.save"}, {"load", "torch.load"}});
  auto find = [&](const std::string& w) { return seconds_of(rows, w); };
  std::map<std::string, double> torch;
  if (with_torch) torch = {{"save", find("torch.save")}, {"load", find("torch.load")}};
  print_rows(rows);
  std::printf("ratios (higher is better for sgckpt):\n");
  std::printf("  save: plain-write limit / sgckpt save (durable) = %.2f   (target >= 0.70)\n",
              find("plain write()+fsync (limit)") / find("sgckpt save (durable)"));
  if (with_torch) {
    std::printf("  save: torch.save / sgckpt save (durable)        = %.2fx  (target >= 2)\n",
                torch.at("save") / find("sgckpt save (durable)"));
    std::printf("  load: torch.load / sgckpt load (copy, CRC)      = %.2fx  (target >= 2)\n",
                torch.at("load") / find("sgckpt load (copy, CRC)"));
    std::printf("  load: torch.load / sgckpt load (mmap)           = %.2fx  (target >= 20)\n",
                torch.at("load") / find("sgckpt load (mmap)"));
  }
  std::printf("  load: plain-read limit / sgckpt load (copy, CRC) = %.2f\n",
              find("plain read() (limit)") / find("sgckpt load (copy, CRC)"));
  fs::remove(ours);
  fs::remove(plain);
}

// safetensors rows: the same weights saved and loaded by sgckpt and by the safetensors package
// (its python peer, run with the PyPI oracles' interpreter), interleaved like bench_case.
void bench_safetensors(const std::string& name, const Value& weights, const fs::path& dir, int repeats,
                       const std::string& python, const fs::path& script) {
  const double bytes = static_cast<double>(tensor_bytes(weights));
  const fs::path ours = dir / (name + ".safetensors");
  const bool with_peer = !python.empty() && fs::exists(python);
  std::printf("\n== %s as safetensors: %.1f MB of tensors, %s\n", name.c_str(), bytes / 1e6, ours.c_str());
  if (!with_peer)
    std::printf("(no safetensors peer: %s missing; run scripts/install-pypi-oracle.sh)\n", python.c_str());
  sgckpt::SaveOptions durable, fast;
  fast.durable = false;
  sgckpt::LoadOptions copy, mm;
  mm.mmap = true;
  volatile std::uint64_t sink = 0;
  const std::vector<Op> ops = {
      {"sgckpt save (durable)", [&] { sgckpt::save(weights, ours, durable); }},
      {"sgckpt save (no fsync)", [&] { sgckpt::save(weights, ours, fast); }},
      {"sgckpt load (copy)", [&] { sgckpt::load(ours, copy); }},
      {"sgckpt load (mmap)", [&] { sgckpt::load(ours, mm); }},
      {"sgckpt load (mmap) + touch", [&] { sink = sink + touch(sgckpt::load(ours, mm)); }},
  };
  std::function<std::map<std::string, double>()> peer;
  if (with_peer) peer = [&] { return run_torch(python, script, ours, dir, 1); };
  const std::vector<Row> rows = measure(
      ops, repeats, bytes, peer, {{"save", "safetensors save_file"}, {"load", "safetensors load_file"}});
  print_rows(rows);
  std::map<std::string, double> med;
  for (const auto& r : rows) med[r.what] = r.seconds;
  if (with_peer) {
    std::printf("ratios (higher is better for sgckpt):\n");
    std::printf("  save: save_file / sgckpt save (no fsync)        = %.2fx\n",
                med["safetensors save_file"] / med["sgckpt save (no fsync)"]);
    std::printf("  load: load_file / sgckpt load (copy)            = %.2fx\n",
                med["safetensors load_file"] / med["sgckpt load (copy)"]);
    std::printf("  load: load_file / sgckpt load (mmap)            = %.2fx\n",
                med["safetensors load_file"] / med["sgckpt load (mmap)"]);
  }
  fs::remove(ours);
}

}  // namespace

int main(int argc, char** argv) {
  fs::path dir = "/dev/shm";
  int repeats = 5;
  bool with_torch = true;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--dir" && i + 1 < argc)
      dir = argv[++i];
    else if (a == "--repeats" && i + 1 < argc)
      repeats = std::atoi(argv[++i]);
    else if (a == "--skip-torch")
      with_torch = false;
    else if (a == "--only" && i + 1 < argc)
      only = argv[++i];
    else {
      std::fprintf(stderr, "usage: pth_io [--dir DIR] [--repeats N] [--skip-torch] [--only small|large]\n");
      return 2;
    }
  }
  const char* py = std::getenv("SGCKPT_PYTHON");
  const std::string python = py && *py ? py : "/usr/bin/python3";
  const fs::path script = fs::path(SGCKPT_SOURCE_DIR) / "bench" / "pth_io_torch.py";
  const char* pypi_env = std::getenv("SGCKPT_PYPI_PYTHON");
  const std::string pypi = pypi_env && *pypi_env ? pypi_env : "/var/cache/sgckpt/pypi-venv/bin/python";
  const fs::path st_script = fs::path(SGCKPT_SOURCE_DIR) / "bench" / "pth_io_safetensors.py";
  const fs::path work = dir / ("sgckpt-bench-" + std::to_string(::getpid()));
  fs::create_directories(work);
  try {
    std::mt19937_64 rng(42);
    if (only.empty() || only == "small") {
      const Value ckpt = resnet18_checkpoint(rng);
      bench_case("resnet18_ckpt", ckpt, work, repeats, with_torch, python, script);
      bench_safetensors("resnet18_net", ckpt.at("net"), work, repeats, with_torch ? pypi : "", st_script);
    }
    if (only.empty() || only == "large") {
      const Value state = large_state(rng);
      bench_case("state_1GiB", state, work, std::max(3, repeats / 2), with_torch, python, script);
      bench_safetensors("state_1GiB", state, work, std::max(3, repeats / 2), with_torch ? pypi : "",
                        st_script);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pth_io: %s\n", e.what());
    fs::remove_all(work);
    return 1;
  }
  fs::remove_all(work);
  return 0;
}
