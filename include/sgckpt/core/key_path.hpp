// sgckpt/core/key_path.hpp: the key path of a node ("net/layer1.0.weight", "state/0/exp_avg")
// while a value tree is walked, kept in one buffer.
//
// Each level appends "/<key>" for as long as its Level guard lives and removes it again, so a
// walk holds one path, not a copy of the whole path per level: a file of 900 nested dicts
// under one memoized 1000-byte key made a per-level-string walk allocate 810 MB from 619
// bytes. Long keys are abbreviated (abbreviate_key), so the path stays proportional to the
// depth whatever keys a file holds; the loader bounds the depth (Limits::max_depth).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sgckpt {

class KeyPath {
 public:
  // A key as messages and listings show it in a key path: keys over 64 bytes become their
  // first 48 bytes (cut at a UTF-8 character boundary) and their length.
  static std::string abbreviate_key(std::string_view key) {
    if (key.size() <= 64) return std::string(key);
    std::size_t cut = 48;
    while (cut > 0 && (static_cast<unsigned char>(key[cut]) & 0xC0) == 0x80) --cut;
    return std::string(key.substr(0, cut)) + "...(" + std::to_string(key.size()) + " bytes)";
  }

  // One level of the path; removes itself when it goes out of scope.
  class [[nodiscard]] Level {
   public:
    Level(const Level&) = delete;
    Level& operator=(const Level&) = delete;
    ~Level() { path_.resize(size_); }

   private:
    friend class KeyPath;
    Level(std::string& path, std::string_view segment) : path_(path), size_(path.size()) {
      if (!path.empty()) path.push_back('/');
      path.append(segment);
    }
    std::string& path_;
    std::size_t size_;
  };

  Level key(std::string_view k) {
    if (k.size() <= 64) return Level(path_, k);
    return Level(path_, abbreviate_key(k));
  }
  Level key(std::int64_t k) { return Level(path_, std::to_string(k)); }  // an int dict key
  Level index(std::size_t i) { return Level(path_, std::to_string(i)); }
  // An attribute of an OrderedDict (its _metadata): ".name".
  Level attribute(std::string_view name) { return Level(path_, "." + abbreviate_key(name)); }

  const std::string& str() const noexcept { return path_; }
  bool empty() const noexcept { return path_.empty(); }

 private:
  std::string path_;
};

}  // namespace sgckpt
