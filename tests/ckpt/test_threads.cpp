// Tests of sgckpt/detail/thread_pool.hpp and sgckpt/ckpt/threads.hpp: the persistent workers
// behind parallel_for, ema_update and average_states, and the one thread setting.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "sgckpt/ckpt/threads.hpp"
#include "sgckpt/detail/thread_pool.hpp"

using sgckpt::detail::thread_pool;

TEST_SUITE("ckpt/threads") {
  TEST_CASE("every part runs once; part 0 on the calling thread; workers are kept between runs") {
    std::vector<int> hits(6, 0);
    std::vector<std::thread::id> who(6);
    thread_pool().run(6, [&](std::size_t p) {
      ++hits[p];
      who[p] = std::this_thread::get_id();
    });
    CHECK(hits == std::vector<int>(6, 1));
    CHECK(who[0] == std::this_thread::get_id());
    std::set<std::thread::id> first(who.begin() + 1, who.end());
    thread_pool().run(6, [&](std::size_t p) { who[p] = std::this_thread::get_id(); });
    std::set<std::thread::id> second(who.begin() + 1, who.end());
    CHECK(first == second);  // the same workers, not new threads
  }

  TEST_CASE("the lowest part's exception is rethrown after every part has finished") {
    std::atomic<int> finished{0};
    auto run = [&] {
      thread_pool().run(4, [&](std::size_t p) {
        if (p == 3) throw std::runtime_error("part 3");
        if (p == 1) throw std::runtime_error("part 1");
        ++finished;
      });
    };
    CHECK_THROWS_WITH(run(), "part 1");
    CHECK(finished == 2);
  }

  TEST_CASE("a run nested in a part, and runs from two threads at once, run their parts serially") {
    std::atomic<int> inner{0};
    thread_pool().run(3, [&](std::size_t) {
      CHECK(sgckpt::detail::ThreadPool::inside());
      thread_pool().run(5, [&](std::size_t) { ++inner; });
    });
    CHECK(inner == 15);
    CHECK_FALSE(sgckpt::detail::ThreadPool::inside());

    std::atomic<long> sum{0};
    auto many = [&] {
      for (int i = 0; i < 200; ++i) thread_pool().run(4, [&](std::size_t p) { sum += static_cast<long>(p); });
    };
    std::thread other(many);
    many();
    other.join();
    CHECK(sum == 2 * 200 * (0 + 1 + 2 + 3));
  }

  TEST_CASE("a forked child gets a pool of its own (the parent's workers do not exist there)") {
    thread_pool().run(3, [](std::size_t) {});  // the parent has workers now
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      std::atomic<int> n{0};
      thread_pool().run(3, [&](std::size_t) { ++n; });
      _exit(n == 3 ? 0 : 1);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }

  TEST_CASE("one thread setting") {
    const int saved = sgckpt::num_threads();
    sgckpt::set_num_threads(0);  // at least one
    CHECK(sgckpt::num_threads() == 1);
    sgckpt::set_num_threads(3);
    CHECK(sgckpt::num_threads() == 3);
    sgckpt::set_num_threads(saved);
  }
}
