// Hostile input: every file of the hostile corpus (tests/hostile, written by make_corpus.py,
// listed in MANIFEST.tsv with the phrase its refusal must contain) is refused with an
// sgckpt::Error of an input kind (truncated, corrupt, refused or limit) and nothing else,
// whichever way it is loaded; plus the resource cases that
// must be accepted (large but honest pickles) or refused in bounded time and memory.
#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <typeinfo>
#include <vector>

#include "../test_support.hpp"
#include "sgckpt/sgckpt.hpp"

using namespace sgckpt;
namespace pickle = sgckpt::detail::pickle;  // the pickle machine alone

namespace {

struct Case {
  std::string file;
  std::string phrase;
};

std::filesystem::path hostile_dir() {
  return test::source_dir() / "tests" / "hostile";
}

std::vector<Case> manifest() {
  std::ifstream in(hostile_dir() / "MANIFEST.tsv");
  REQUIRE_MESSAGE(in, "cannot open tests/hostile/MANIFEST.tsv");
  std::vector<Case> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto tab = line.find('\t');
    REQUIRE_MESSAGE(tab != std::string::npos, "MANIFEST.tsv line without a tab: " << line);
    out.push_back({line.substr(0, tab), line.substr(tab + 1)});
  }
  return out;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// Runs f; returns "" if it threw an sgckpt::Error containing `phrase`, else what went wrong.
template <class F>
std::string check_refusal(F&& f, const std::string& phrase) {
  try {
    f();
  } catch (const Error& e) {
    // A hostile file is a fault of the input, never of the caller or the system: its kind
    // says which (docs/errors.md).
    const ErrorKind k = e.kind();
    if (k != ErrorKind::Truncated && k != ErrorKind::Corrupt && k != ErrorKind::Refused &&
        k != ErrorKind::Limit)
      return std::string("refused as a ") + kind_name(k) +
             " error (expected truncated, corrupt, refused or limit): " + e.what();
    if (lower(e.what()).find(lower(phrase)) != std::string::npos) return {};
    return std::string("refused, but the message lacks the phrase: ") + e.what();
  } catch (const std::exception& e) {
    return std::string("threw a non-sgckpt exception (") + typeid(e).name() + "): " + e.what();
  } catch (...) {
    return "threw something that is not a std::exception";
  }
  return "accepted (expected a refusal)";
}

Value read_pickle(const std::vector<std::uint8_t>& p, Limits lim = {}) {
  pickle::ReaderConfig cfg;
  cfg.limits = lim;
  auto zeros = [](const pickle::StorageRequest& r) { return Storage::zeros(r.nbytes); };
  return pickle::read(std::as_bytes(std::span(p)), zeros, cfg);
}

void put_u32(std::vector<std::uint8_t>& b, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put_str(std::vector<std::uint8_t>& b, const std::string& s) {
  b.push_back('X');
  put_u32(b, static_cast<std::uint32_t>(s.size()));
  b.insert(b.end(), s.begin(), s.end());
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_SUITE("security") {
  TEST_CASE("the hostile corpus is complete: at least 60 files, each listed once, each present") {
    const auto cases = manifest();
    CHECK(cases.size() >= 60);
    std::vector<std::string> names;
    for (const auto& c : cases) {
      names.push_back(c.file);
      CHECK_MESSAGE(std::filesystem::is_regular_file(hostile_dir() / c.file),
                    c.file << " is listed but missing");
      CHECK_MESSAGE(!c.phrase.empty(), c.file << " has no expected phrase");
    }
    std::sort(names.begin(), names.end());
    CHECK(std::adjacent_find(names.begin(), names.end()) == names.end());
    // Every corpus file is listed (a file nobody checks is a file nobody reads).
    for (const auto& ent : std::filesystem::directory_iterator(hostile_dir())) {
      if (ent.path().extension() != ".pt") continue;
      CHECK_MESSAGE(std::binary_search(names.begin(), names.end(), ent.path().filename().string()),
                    ent.path().filename().string() << " is not in MANIFEST.tsv");
    }
  }

  TEST_CASE("every hostile file is refused with sgckpt::Error naming the problem (path, mmap, memory)") {
    const auto cases = manifest();
    int failures = 0;
    for (const auto& c : cases) {
      const auto path = hostile_dir() / c.file;
      const auto t0 = std::chrono::steady_clock::now();
      std::string why = check_refusal([&] { (void)sgckpt::load(path); }, c.phrase);
      if (why.empty()) {
        LoadOptions mm;
        mm.mmap = true;
        why = check_refusal([&] { (void)sgckpt::load(path, mm); }, c.phrase);
        if (!why.empty()) why = "[mmap] " + why;
      }
      if (why.empty()) {
        const auto bytes = test::read_file(path);
        why = check_refusal([&] { (void)sgckpt::load(std::span<const std::byte>(bytes)); }, c.phrase);
        if (!why.empty()) why = "[memory] " + why;
      }
      const double secs = seconds_since(t0);
      if (!why.empty()) {
        ++failures;
        FAIL_CHECK(c.file << " (want '" << c.phrase << "'): " << why);
      }
      // Three loads of a small file: generous for sanitizers and a busy machine.
      if (secs > 60) FAIL_CHECK(c.file << " took " << secs << " s to refuse");
    }
    MESSAGE(cases.size() << " hostile files, " << failures << " not refused as expected");
  }

  TEST_CASE("a large honest pickle is accepted: 100k SETITEMS of small ints, 100k OrderedDict attributes") {
    // 100k int -> int items in one SETITEMS batch.
    std::vector<std::uint8_t> p = {0x80, 2, '}', '('};
    for (std::uint32_t i = 0; i < 100'000; ++i) {
      p.push_back('J');
      put_u32(p, i);
      p.push_back('K');
      p.push_back(static_cast<std::uint8_t>(i));
    }
    p.insert(p.end(), {'u', '.'});
    const auto t0 = std::chrono::steady_clock::now();
    const Value v = read_pickle(p);
    CHECK(v.size() == 100'000);
    CHECK(v[99'999].as_int() == (99'999 & 0xFF));

    // One BUILD with 100k attribute names: linear, not quadratic (it was minutes before).
    std::vector<std::uint8_t> q;
    for (char c : std::string("\x80\x02"
                              "ccollections\nOrderedDict\n)R}("))
      q.push_back(static_cast<std::uint8_t>(c));
    for (int i = 0; i < 100'000; ++i) {
      put_str(q, "k" + std::to_string(i));
      q.push_back('N');
    }
    q.insert(q.end(), {'u', 'b', '.'});
    const Value w = read_pickle(q);
    CHECK(w.dict().attributes().size() == 100'000);
    CHECK(seconds_since(t0) < 120);
  }

  TEST_CASE("large honest strings load: a 20 MB str key, a 20 MB str value, 20 MB of bytes") {
    // Only repeated copies of memoized data are charged as amplification; a first copy is not.
    const std::string big(20u << 20, 'x');
    std::vector<std::uint8_t> p = {0x80, 2, '}', '('};
    put_str(p, "k" + big);
    put_str(p, big);
    put_str(p, "b");
    for (char c : std::string("c_codecs\nencode\n")) p.push_back(static_cast<std::uint8_t>(c));
    put_str(p, big);
    put_str(p, "latin1");
    p.insert(p.end(), {0x86, 'R', 'u', '.'});
    const Value v = read_pickle(p);
    CHECK(v.size() == 2);
    CHECK(v.at(Key("k" + big)).as_str().size() == big.size());
    CHECK(v.at(Key("b")).as_bytes().data.size() == big.size());

    // A 1 MB key above 100k list items: every item's key path used to copy the whole key
    // (100 GB of copies); paths now abbreviate long keys.
    std::vector<std::uint8_t> q = {0x80, 2, '}'};
    put_str(q, std::string(1u << 20, 'k'));
    q.insert(q.end(), {']', '('});
    q.insert(q.end(), 100'000, 'N');
    q.insert(q.end(), {'e', 's', '.'});
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(read_pickle(q).at(Key(std::string(1u << 20, 'k'))).size() == 100'000);
    CHECK(seconds_since(t0) < 60);
  }

  TEST_CASE("1M-entry SETITEMS is accepted [slow]") {
    std::vector<std::uint8_t> p = {0x80, 2, '}', '('};
    for (std::uint32_t i = 0; i < 1'000'000; ++i) {
      p.push_back('J');
      put_u32(p, i);
      p.push_back('K');
      p.push_back(1);
    }
    p.insert(p.end(), {'u', '.'});
    CHECK(read_pickle(p).size() == 1'000'000);
  }

  TEST_CASE("resource limits turn exhaustion into refusals") {
    Limits small;
    small.max_values = 1000;
    small.max_depth = 10;
    small.max_string_bytes = 100;
    small.max_memo = 10;
    small.max_opcodes = 10'000;

    std::vector<std::uint8_t> many = {0x80, 2, ']', '('};
    many.insert(many.end(), 2000, 'N');
    many.insert(many.end(), {'e', '.'});
    CHECK(test::contains(test::error_message([&] { read_pickle(many, small); }), "objects (limit)"));

    std::vector<std::uint8_t> deep = {0x80, 2};
    deep.insert(deep.end(), 20, ']');
    deep.insert(deep.end(), 19, 'a');
    deep.push_back('.');
    CHECK(test::contains(test::error_message([&] { read_pickle(deep, small); }), "nested deeper than 10"));

    std::vector<std::uint8_t> str = {0x80, 2};
    put_str(str, std::string(101, 'x'));
    str.push_back('.');
    CHECK(test::contains(test::error_message([&] { read_pickle(str, small); }), "exceeds the limit"));

    std::vector<std::uint8_t> memo = {0x80, 2, 'N'};
    for (int i = 0; i < 11; ++i) memo.insert(memo.end(), {'q', static_cast<std::uint8_t>(i)});
    memo.push_back('.');
    CHECK(test::contains(test::error_message([&] { read_pickle(memo, small); }), "memo exceeds 10"));

    std::vector<std::uint8_t> ops = {0x80, 2, 'N'};
    for (int i = 0; i < 10'000; ++i) ops.insert(ops.end(), {'(', '1'});  // MARK, POP_MARK: no objects
    ops.push_back('.');
    CHECK(test::contains(test::error_message([&] { read_pickle(ops, small); }), "opcodes"));
  }

  TEST_CASE("legitimate memo reuse loads: 300k references to one str, 1000 to one tensor") {
    // torch.save memoizes a repeated object: a list of one str 300k times is 300k BINGETs.
    std::vector<std::uint8_t> p = {0x80, 2, ']', '('};
    put_str(p, "label");
    p.insert(p.end(), {'q', 0});
    for (int i = 1; i < 300'000; ++i) p.insert(p.end(), {'h', 0});
    p.insert(p.end(), {'e', '.'});
    const Value v = read_pickle(p);
    CHECK(v.size() == 300'000);
    CHECK(v[299'999].as_str() == "label");

    // One tensor referenced 1000 times (the views share one storage).
    std::vector<std::uint8_t> t = {0x80, 2, ']', '('};
    for (char c : std::string("ctorch._utils\n_rebuild_tensor_v2\n(("))
      t.push_back(static_cast<std::uint8_t>(c));
    put_str(t, "storage");
    for (char c : std::string("ctorch\nFloatStorage\n")) t.push_back(static_cast<std::uint8_t>(c));
    put_str(t, "0");
    put_str(t, "cpu");
    t.insert(t.end(), {'K', 4, 't', 'Q', 'K', 0, 'K', 4, 0x85, 'K', 1, 0x85, 0x89});
    for (char c : std::string("ccollections\nOrderedDict\n)RtR")) t.push_back(static_cast<std::uint8_t>(c));
    t.insert(t.end(), {'q', 0});
    for (int i = 1; i < 1000; ++i) t.insert(t.end(), {'h', 0});
    t.insert(t.end(), {'e', '.'});
    const Value w = read_pickle(t);
    REQUIRE(w.size() == 1000);
    CHECK(w[999].tensor().storage() == w[0].tensor().storage());
  }

  TEST_CASE("a shared container referenced many times is copied within bounds, then refused") {
    // 10 references to a 100-element list: copied (1000 values), fine.
    std::vector<std::uint8_t> p = {0x80, 2, ']', 'q', 0, '('};
    p.insert(p.end(), 100, 'N');
    p.insert(p.end(), {'e', '0', ']', '('});
    for (int i = 0; i < 10; ++i) p.insert(p.end(), {'h', 0});
    p.insert(p.end(), {'e', '.'});
    const Value v = read_pickle(p);
    CHECK(v.size() == 10);
    CHECK(v[9].size() == 100);

    // Nested fan-out (billion laughs) is refused long before it could exhaust memory.
    std::vector<std::uint8_t> b = {0x80, 2, ']', 'q', 0, '0'};
    for (std::uint8_t i = 1; i < 40; ++i) {
      b.insert(b.end(), {']', '('});
      for (int k = 0; k < 10; ++k) b.insert(b.end(), {'h', static_cast<std::uint8_t>(i - 1)});
      b.insert(b.end(), {'e', 'q', i, '0'});
    }
    b.insert(b.end(), {'h', 39, '.'});
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(test::contains(test::error_message([&] { read_pickle(b); }), "billion-laughs"));
    CHECK(seconds_since(t0) < 60);
  }
}
