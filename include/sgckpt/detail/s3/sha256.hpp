// sgckpt/detail/s3/sha256.hpp: SHA-256 through OpenSSL's libcrypto, which libcurl's OpenSSL
// build already links: SHA-NI / AVX2 code at GB/s, where the upload path hashes every byte
// (the SigV4 payload hash of each request and the object's own checksum).
#pragma once

#include <openssl/evp.h>

#include <cstddef>
#include <string>

#include "sgckpt/detail/s3/text.hpp"

namespace sgckpt::detail::s3 {

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) {
    if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) {
      EVP_MD_CTX_free(ctx_);
      throw std::bad_alloc();
    }
  }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  ~Sha256() { EVP_MD_CTX_free(ctx_); }

  void update(const void* p, std::size_t n) { EVP_DigestUpdate(ctx_, p, n); }

  // 64 lower-case hex digits; finishes the hash.
  std::string hex_digest() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_, md, &n);
    return hex(md, n);
  }

 private:
  EVP_MD_CTX* ctx_;
};

inline std::string sha256_hex(const void* p, std::size_t n) {
  Sha256 h;
  h.update(p, n);
  return h.hex_digest();
}

}  // namespace sgckpt::detail::s3
