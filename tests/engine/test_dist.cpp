// The distributed building blocks: the in-process collective, the launcher's environment, and
// torch's DistributedSampler rule (checked against torch itself in tests/python/test_dist_sampler.py).
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "sgckpt/engine/dist/collective.hpp"
#include "sgckpt/engine/dist/launch.hpp"
#include "sgckpt/engine/dist/sampler.hpp"
#include "sgckpt/engine/dist/threads.hpp"

using namespace sgckpt;
using namespace sgckpt::engine::dist;
using namespace std::chrono_literals;

namespace {

// Runs f(rank, collective) on one thread per rank; returns each rank's exception text ("" if none).
template <class F>
std::vector<std::string> on_ranks(std::vector<std::unique_ptr<Collective>>& ranks, F f) {
  std::vector<std::string> errors(ranks.size());
  std::vector<std::thread> threads;
  for (std::size_t r = 0; r < ranks.size(); ++r)
    threads.emplace_back([&, r] {
      try {
        f(static_cast<int>(r), *ranks[r]);
      } catch (const Error& e) {
        errors[r] = std::string(kind_name(e.kind())) + ": " + e.what();
      }
    });
  for (auto& t : threads) t.join();
  return errors;
}

LaunchInfo launch_with(std::map<std::string, std::string> vars) {
  return launch_info_from_env([&vars](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

std::string launch_error(std::map<std::string, std::string> vars) {
  try {
    launch_with(std::move(vars));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_SUITE("engine/dist") {
  TEST_CASE("all_reduce sums or averages in place, and every rank gets the same bits") {
    auto ranks = ThreadGroup::create(3, 10s);
    std::vector<std::vector<float>> sums(3), means(3);
    std::vector<std::vector<double>> doubles(3);
    const auto errors = on_ranks(ranks, [&](int r, Collective& c) {
      sums[r] = {1.0f * r, 0.1f, -2.5f};
      c.all_reduce(std::span<float>(sums[r]), ReduceOp::Sum);
      means[r] = {1.0f * r, 0.3f * r};
      c.all_reduce(std::span<float>(means[r]), ReduceOp::Mean);
      doubles[r] = {1e300, static_cast<double>(r)};
      c.all_reduce(std::span<double>(doubles[r]), ReduceOp::Sum);
    });
    CHECK(errors == std::vector<std::string>(3));
    CHECK(sums[0] == std::vector<float>{3.0f, (0.1f + 0.1f) + 0.1f, -7.5f});  // rank order
    CHECK(means[0] == std::vector<float>{1.0f, ((0.0f + 0.3f) + 0.6f) / 3.0f});
    CHECK(doubles[0] == std::vector<double>{3e300, 3.0});
    for (int r = 1; r < 3; ++r) {
      CHECK(std::memcmp(sums[r].data(), sums[0].data(), sums[0].size() * sizeof(float)) == 0);
      CHECK(std::memcmp(means[r].data(), means[0].data(), means[0].size() * sizeof(float)) == 0);
    }
  }

  TEST_CASE("broadcast copies the root's bytes; all_gather returns every rank's blob in rank order") {
    auto ranks = ThreadGroup::create(2, 10s);
    std::vector<std::vector<std::byte>> got(2);
    std::vector<std::vector<std::vector<std::byte>>> gathered(2);
    const auto errors = on_ranks(ranks, [&](int r, Collective& c) {
      got[r] = std::vector<std::byte>(4, std::byte(r == 1 ? 7 : 0));
      c.broadcast(got[r], 1);
      c.barrier();
      const std::vector<std::byte> mine(static_cast<std::size_t>(r + 1), std::byte(r));
      gathered[r] = c.all_gather(mine);
    });
    CHECK(errors == std::vector<std::string>(2));
    CHECK(got[0] == std::vector<std::byte>(4, std::byte(7)));
    CHECK(gathered[0] == gathered[1]);
    REQUIRE(gathered[0].size() == 2);
    CHECK(gathered[0][0] == std::vector<std::byte>{std::byte(0)});
    CHECK(gathered[0][1] == std::vector<std::byte>(2, std::byte(1)));
  }

  TEST_CASE("a rank that never arrives ends the wait with a timeout naming it, on every waiting rank") {
    auto ranks = ThreadGroup::create(3, 200ms);
    const auto t0 = std::chrono::steady_clock::now();
    const auto errors = on_ranks(ranks, [&](int r, Collective& c) {
      if (r == 2) return;  // a hung or dead peer
      std::vector<float> g{1.0f};
      c.all_reduce(std::span<float>(g), ReduceOp::Mean);
    });
    CHECK(std::chrono::steady_clock::now() - t0 < 5s);
    CHECK(errors[2].empty());
    for (int r = 0; r < 2; ++r) {
      INFO(errors[r]);
      CHECK(errors[r].rfind("timeout: ", 0) == 0);
    }
    // The first rank to give up names the missing rank; the other stops at once after it.
    const std::string both = errors[0] + errors[1];
    CHECK(both.find("all_reduce did not complete within 200 ms (rank(s) 2 did not arrive)") !=
          std::string::npos);
  }

  TEST_CASE("mismatched sizes between ranks are a usage error, not a silent wrong answer") {
    auto ranks = ThreadGroup::create(2, 10s);
    const auto errors = on_ranks(ranks, [&](int r, Collective& c) {
      std::vector<float> g(static_cast<std::size_t>(r + 1));
      c.all_reduce(std::span<float>(g), ReduceOp::Sum);
    });
    CHECK(errors[0].find("usage: rank 0: all_reduce of 1 elements, another rank passed 2") == 0);
  }

  TEST_CASE("the launcher's environment: torchrun's variables, MPI's, or a single process") {
    const LaunchInfo none = launch_with({});
    CHECK((none.rank == 0 && none.world_size == 1 && none.launcher == "none"));

    const LaunchInfo t = launch_with({{"RANK", "3"},
                                      {"WORLD_SIZE", "4"},
                                      {"LOCAL_RANK", "1"},
                                      {"MASTER_ADDR", "10.0.0.1"},
                                      {"MASTER_PORT", "29500"}});
    CHECK((t.rank == 3 && t.world_size == 4 && t.local_rank == 1 && t.master_addr == "10.0.0.1" &&
           t.master_port == 29500 && t.launcher == "torchrun"));

    const LaunchInfo m = launch_with(
        {{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}});
    CHECK((m.rank == 1 && m.world_size == 2 && m.launcher == "openmpi"));
    const LaunchInfo h = launch_with({{"PMI_RANK", "0"}, {"PMI_SIZE", "2"}, {"MPI_LOCALRANKID", "0"}});
    CHECK((h.world_size == 2 && h.launcher == "mpich"));
  }

  TEST_CASE("an incomplete or invalid launch environment names the variable") {
    CHECK(launch_error({{"RANK", "0"}, {"LOCAL_RANK", "0"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "1"}}) ==
          "torchrun launch: WORLD_SIZE is not set (the environment sets some of the launcher's variables but "
          "not "
          "this one)");
    CHECK(launch_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0"}, {"MASTER_PORT", "1"}})
              .rfind("torchrun launch: MASTER_ADDR is not set", 0) == 0);
    CHECK(launch_error({{"RANK", "2"},
                        {"WORLD_SIZE", "2"},
                        {"LOCAL_RANK", "0"},
                        {"MASTER_ADDR", "a"},
                        {"MASTER_PORT", "1"}}) == "torchrun launch: RANK='2' is not an integer in [0, 1]");
    CHECK(launch_error({{"RANK", "0"},
                        {"WORLD_SIZE", "2x"},
                        {"LOCAL_RANK", "0"},
                        {"MASTER_ADDR", "a"},
                        {"MASTER_PORT", "1"}}) ==
          "torchrun launch: WORLD_SIZE='2x' is not an integer in [1, 1048576]");
    CHECK(launch_error({{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "2"}})
              .rfind("openmpi launch: OMPI_COMM_WORLD_LOCAL_RANK is not set", 0) == 0);
  }

  TEST_CASE("DistributedSampler: disjoint shards that cover the epoch, padded by repeating its start") {
    const std::int64_t n = 10;
    std::multiset<std::int64_t> seen;
    for (int r = 0; r < 3; ++r) {
      const DistributedSampler s(n, {.num_replicas = 3, .rank = r, .shuffle = true, .seed = 5});
      const auto idx = s.indices(2);
      CHECK(idx.size() == 4);  // ceil(10 / 3)
      seen.insert(idx.begin(), idx.end());
    }
    CHECK(seen.size() == 12);
    for (std::int64_t i = 0; i < n; ++i) CHECK(seen.count(i) >= 1);
    const auto perm = torch_randperm(n, 5 + 2);
    CHECK(seen.count(perm[0]) == 2);  // the padding repeats the epoch's first two indices
    CHECK(seen.count(perm[1]) == 2);

    const DistributedSampler dropped(n, {.num_replicas = 3, .rank = 0, .shuffle = false, .drop_last = true});
    CHECK(dropped.indices(0) == std::vector<std::int64_t>{0, 3, 6});
    CHECK(DistributedSampler(2, {.num_replicas = 3, .rank = 2, .shuffle = false}).indices(0) ==
          std::vector<std::int64_t>{0});  // fewer samples than ranks: padding by repetition
    CHECK(DistributedSampler(2, {.num_replicas = 3, .rank = 1, .drop_last = true}).indices(0).empty());
    CHECK(torch_randperm(1, 0) == std::vector<std::int64_t>{0});
  }
}
