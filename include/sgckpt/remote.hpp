// sgckpt/remote.hpp: remote copies of runs (docs/remote.md): the Store interface, the local
// directory and S3 stores, the background uploader and the pull / resume_from_remote side.
// Needs libcurl and OpenSSL's libcrypto: link sgckpt::remote.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "sgckpt/ckpt/remote/pull.hpp"
#include "sgckpt/ckpt/remote/s3.hpp"
#include "sgckpt/ckpt/remote/store.hpp"
#include "sgckpt/ckpt/remote/sync.hpp"

namespace sgckpt::remote {

// The store a URL names: "s3://bucket[/prefix]" (endpoint: the argument, else the AWS_*
// environment), "file:///path" or a plain directory path.
inline std::shared_ptr<Store> open_store(std::string_view url, std::string endpoint = {}) {
  if (url.substr(0, 5) == "s3://") {
    S3Options o = S3Options::from_url(url);
    o.endpoint = std::move(endpoint);
    return std::make_shared<S3Store>(std::move(o));
  }
  if (url.find("://") != std::string_view::npos && url.substr(0, 7) != "file://")
    throw StoreError(
        ErrorKind::Usage,
        "\"" + std::string(url) + "\": a store is s3://bucket[/prefix], file:///path or a directory", false);
  if (url.substr(0, 7) == "file://") url.remove_prefix(7);
  if (url.empty()) throw StoreError(ErrorKind::Usage, "empty store path", false);
  return std::make_shared<LocalDirStore>(std::string(url));
}

}  // namespace sgckpt::remote
