// sgckpt/detail/s3/curl.hpp: what S3Store needs of libcurl: one global initialization, an
// easy handle and a header list that free themselves.
#pragma once

#include <curl/curl.h>

#include <cstdlib>
#include <new>
#include <string>

#include "sgckpt/ckpt/remote/store.hpp"

namespace sgckpt::detail::s3 {

inline void curl_global_init_once() {
  static const CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);  // thread-safe: a static's initializer
  if (rc != CURLE_OK)
    throw ::sgckpt::remote::StoreError(
        ErrorKind::Io, std::string("libcurl failed to initialize: ") + curl_easy_strerror(rc), false);
}

// One libcurl easy handle; reused between requests of one thread (it keeps the connection).
class Easy {
 public:
  Easy() {
    curl_global_init_once();
    h_ = curl_easy_init();
    if (h_ == nullptr) throw std::bad_alloc();
  }
  Easy(const Easy&) = delete;
  Easy& operator=(const Easy&) = delete;
  ~Easy() { curl_easy_cleanup(h_); }
  CURL* get() const noexcept { return h_; }

 private:
  CURL* h_;
};

struct CurlList {
  curl_slist* list = nullptr;
  CurlList() = default;
  CurlList(const CurlList&) = delete;
  CurlList& operator=(const CurlList&) = delete;
  ~CurlList() { curl_slist_free_all(list); }
  void add(const std::string& h) {
    curl_slist* n = curl_slist_append(list, h.c_str());
    if (n == nullptr) throw std::bad_alloc();
    list = n;
  }
};

inline std::string env_or(const char* name, std::string fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

}  // namespace sgckpt::detail::s3
