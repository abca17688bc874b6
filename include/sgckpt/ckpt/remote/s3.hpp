// sgckpt/ckpt/remote/s3.hpp: a Store on S3's API (AWS, MinIO, Ceph, cloud providers), over
// libcurl with its built-in AWS Signature V4 signing (docs/remote.md). Link sgckpt::remote.
//
//   auto store = std::make_shared<sgckpt::remote::S3Store>(S3Options::from_url("s3://bucket/runs"));
//
// - Credentials: S3Options::credentials, else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
//   (/ AWS_SESSION_TOKEN), else the shared credentials file (AWS_SHARED_CREDENTIALS_FILE or
//   ~/.aws/credentials, profile AWS_PROFILE or "default"). They go to libcurl's signer and
//   nowhere else: no message, log line or file ever holds them.
// - Endpoint: S3Options::endpoint, else AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS's
//   regional one. Addressing: path style for a custom endpoint, virtual host for AWS (or as
//   asked). TLS peers are verified (against AWS_CA_BUNDLE / ca_file, else the system's CAs)
//   unless verify_tls is false.
// - Integrity: every request signs the SHA-256 of its body (x-amz-content-sha256, checked by
//   the server); every object carries the SHA-256 of the whole file (x-amz-meta-sgckpt-sha256),
//   checked on download before the file is renamed into place.
// - Large files (> multipart_threshold) go up in parts, parallel_parts at a time; a failure
//   aborts the upload (its parts are deleted), so no object and no stray parts are left.
// - Transient failures (refused or cut connections, timeouts, HTTP 5xx, 429) are retried
//   `attempts` times per request with exponential backoff and jitter; a transfer that moves no
//   byte for stall_timeout fails (transiently) instead of hanging.
#pragma once

#include <curl/curl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "sgckpt/ckpt/remote/store.hpp"
#include "sgckpt/detail/fs/file.hpp"
#include "sgckpt/detail/s3/curl.hpp"
#include "sgckpt/detail/s3/sha256.hpp"
#include "sgckpt/detail/s3/text.hpp"

namespace sgckpt::remote {

struct S3Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;

  // The environment, else the shared credentials file. An Error (naming where it looked,
  // never a value) when neither has a key pair.
  static S3Credentials from_environment() {
    S3Credentials c;
    c.access_key_id = env("AWS_ACCESS_KEY_ID");
    c.secret_access_key = env("AWS_SECRET_ACCESS_KEY");
    c.session_token = env("AWS_SESSION_TOKEN");
    if (!c.access_key_id.empty() && !c.secret_access_key.empty()) return c;
    std::string file = env("AWS_SHARED_CREDENTIALS_FILE");
    if (file.empty() && !env("HOME").empty()) file = env("HOME") + "/.aws/credentials";
    std::string profile = env("AWS_PROFILE");
    if (profile.empty()) profile = "default";
    if (!file.empty()) {
      c = from_file(file, profile);
      if (!c.access_key_id.empty() && !c.secret_access_key.empty()) return c;
    }
    throw StoreError(
        ErrorKind::Usage,
        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give profile \"" + profile +
            "\" aws_access_key_id and aws_secret_access_key in \"" +
            (file.empty() ? std::string("~/.aws/credentials") : file) + "\"",
        false);
  }

  // The [profile] section of an AWS shared credentials file (INI); empty fields when absent.
  static S3Credentials from_file(const std::filesystem::path& file, const std::string& profile) {
    S3Credentials c;
    std::ifstream in(file);
    std::string line;
    bool inside = false;
    while (std::getline(in, line)) {
      const std::string t = trim(line);
      if (t.empty() || t[0] == '#' || t[0] == ';') continue;
      if (t.front() == '[') {
        inside = t.back() == ']' && trim(t.substr(1, t.size() - 2)) == profile;
        continue;
      }
      const auto eq = t.find('=');
      if (!inside || eq == std::string::npos) continue;
      const std::string k = trim(t.substr(0, eq)), v = trim(t.substr(eq + 1));
      if (k == "aws_access_key_id") c.access_key_id = v;
      if (k == "aws_secret_access_key") c.secret_access_key = v;
      if (k == "aws_session_token") c.session_token = v;
    }
    return c;
  }

 private:
  static std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v ? v : "";
  }
  static std::string trim(std::string s) {
    const auto a = s.find_first_not_of(" \t\r");
    const auto b = s.find_last_not_of(" \t\r");
    return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
  }
};

struct S3Options {
  std::string bucket;
  std::string prefix;    // keys are <prefix>/<key>
  std::string endpoint;  // "": AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else https://s3.<region>.amazonaws.com
  std::string region;    // "": AWS_REGION, AWS_DEFAULT_REGION, else us-east-1
  enum class Addressing { Auto, Path, VirtualHost } addressing = Addressing::Auto;
  bool verify_tls = true;
  std::string ca_file;  // a CA bundle instead of the system's ("": AWS_CA_BUNDLE, else the system's)
  std::uint64_t multipart_threshold = std::uint64_t{64} << 20;
  std::uint64_t part_size = std::uint64_t{16}
                            << 20;  // at least 5 MiB (S3's minimum for all but the last part)
  unsigned parallel_parts = 4;
  int attempts = 3;  // per request, for transient failures
  std::chrono::milliseconds backoff{200};
  std::chrono::seconds connect_timeout{10};
  std::chrono::seconds stall_timeout{60};  // no byte moved for this long: the transfer fails
  std::optional<S3Credentials> credentials;

  // "s3://bucket" or "s3://bucket/some/prefix".
  static S3Options from_url(std::string_view url) {
    constexpr std::string_view scheme = "s3://";
    if (url.substr(0, scheme.size()) != scheme || url.size() == scheme.size())
      throw StoreError(ErrorKind::Usage, "\"" + std::string(url) + "\" is not an s3://bucket[/prefix] URL",
                       false);
    S3Options o;
    const std::string_view rest = url.substr(scheme.size());
    const auto slash = rest.find('/');
    o.bucket = std::string(rest.substr(0, slash));
    if (slash != std::string_view::npos) o.prefix = std::string(rest.substr(slash + 1));
    while (!o.prefix.empty() && o.prefix.back() == '/') o.prefix.pop_back();
    // S3's names (plus the upper case and '_' of legacy buckets): nothing that could change the
    // host or the path a request goes to.
    const bool valid = o.bucket.size() >= 3 && o.bucket.size() <= 63 &&
                       std::all_of(o.bucket.begin(), o.bucket.end(), [](char c) {
                         return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                                c == '.' || c == '-' || c == '_';
                       });
    if (!valid)
      throw StoreError(
          ErrorKind::Usage,
          "\"" + std::string(url) + "\": a bucket name is 3 to 63 letters, digits, '.', '-' or '_'", false);
    if (!o.prefix.empty()) check_key(o.prefix);
    return o;
  }
};

class S3Store final : public Store {
 public:
  explicit S3Store(S3Options options) : o_(std::move(options)) {
    namespace d = ::sgckpt::detail::s3;
    if (o_.region.empty()) o_.region = d::env_or("AWS_REGION", d::env_or("AWS_DEFAULT_REGION", "us-east-1"));
    const bool custom =
        !o_.endpoint.empty() || std::getenv("AWS_ENDPOINT_URL_S3") || std::getenv("AWS_ENDPOINT_URL");
    if (o_.endpoint.empty())
      o_.endpoint = d::env_or("AWS_ENDPOINT_URL_S3",
                              d::env_or("AWS_ENDPOINT_URL", "https://s3." + o_.region + ".amazonaws.com"));
    while (!o_.endpoint.empty() && o_.endpoint.back() == '/') o_.endpoint.pop_back();
    const auto sep = o_.endpoint.find("://");
    if (sep == std::string::npos || sep == 0)
      throw StoreError(ErrorKind::Usage, "S3 endpoint \"" + o_.endpoint + "\" is not scheme://host[:port]",
                       false);
    scheme_ = o_.endpoint.substr(0, sep);
    authority_ = o_.endpoint.substr(sep + 3);
    if (o_.addressing == S3Options::Addressing::Auto)
      virtual_host_ = !custom && o_.bucket.find('.') == std::string::npos;
    else
      virtual_host_ = o_.addressing == S3Options::Addressing::VirtualHost;
    if (o_.part_size < (std::uint64_t{5} << 20)) o_.part_size = std::uint64_t{5} << 20;
    o_.multipart_threshold = std::max(o_.multipart_threshold, o_.part_size);
    o_.parallel_parts = std::clamp(o_.parallel_parts, 1u, 64u);
    o_.attempts = std::max(o_.attempts, 1);
    if (o_.ca_file.empty()) o_.ca_file = d::env_or("AWS_CA_BUNDLE", "");
    if (!o_.credentials) o_.credentials = S3Credentials::from_environment();
    sigv4_ = "aws:amz:" + o_.region + ":s3";
  }

  std::string url() const override {
    return "s3://" + o_.bucket + (o_.prefix.empty() ? "" : "/" + o_.prefix);
  }
  const S3Options& options() const noexcept { return o_; }

  void put(const SourceFile& source, const std::string& key, std::stop_token stop = {}) override {
    check_key(key);
    const std::string full = join_key(o_.prefix, key);
    if (source.size() <= o_.multipart_threshold)
      put_single(source, full, stop);
    else
      put_multipart(source, full, stop);
  }

  void get(const std::string& key, const std::filesystem::path& destination,
           std::stop_token stop = {}) override {
    check_key(key);
    const std::string full = join_key(o_.prefix, key);
    retry(stop, [&](::sgckpt::detail::s3::Easy& easy) {
      Download sink(destination);
      Response r = perform(easy, {.method = "GET", .key = full, .download = &sink}, stop);
      if (r.status != 200) throw http_error("GET", full, r);
      if (r.content_length && *r.content_length != sink.bytes)
        throw StoreError(ErrorKind::Truncated,
                         "GET " + object_url(full) + ": received " + std::to_string(sink.bytes) + " of " +
                             std::to_string(*r.content_length) + " bytes",
                         true);
      const std::string got = sink.hash.hex_digest();
      if (!r.meta_sha256.empty() && r.meta_sha256 != got)
        throw StoreError(ErrorKind::Corrupt,
                         "downloaded object " + object_url(full) +
                             " does not match the SHA-256 recorded when it was "
                             "uploaded (recorded " +
                             r.meta_sha256 + ", received " + got + "): refused, \"" + destination.string() +
                             "\" left as it was",
                         false);
      sink.file.commit();
    });
  }

  std::vector<ObjectInfo> list(const std::string& prefix, std::stop_token stop = {}) override {
    namespace d = ::sgckpt::detail::s3;
    std::vector<ObjectInfo> out;
    const std::string full = join_key(o_.prefix, prefix) + (prefix.empty() && !o_.prefix.empty() ? "/" : "");
    std::string token;
    for (int page = 0;; ++page) {
      std::string query = token.empty() ? "" : "continuation-token=" + d::uri_encode(token, false) + "&";
      query += "list-type=2&prefix=" + d::uri_encode(full, false);
      std::string body;
      retry(stop, [&](d::Easy& easy) {
        Response r = perform(easy, {.method = "GET", .key = "", .query = query}, stop);
        if (r.status != 200) throw http_error("LIST", full, r);
        body = std::move(r.body);
      });
      for (const auto c : d::xml_elements(body, "Contents")) {
        const auto key = d::xml_text(c, "Key");
        const auto size = d::xml_text(c, "Size");
        if (!key || !size || key->rfind(o_.prefix, 0) != 0) continue;
        std::string rel = o_.prefix.empty() ? *key : key->substr(std::min(key->size(), o_.prefix.size() + 1));
        out.push_back({std::move(rel), std::strtoull(size->c_str(), nullptr, 10)});
      }
      if (d::xml_text(body, "IsTruncated").value_or("false") != "true") break;
      token = d::xml_text(body, "NextContinuationToken").value_or("");
      if (token.empty() || page > 100000)
        throw StoreError(ErrorKind::Corrupt,
                         "LIST " + object_url(full) + ": a truncated page without a continuation token",
                         false);
    }
    std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
    return out;
  }

  void remove(const std::string& key) override {
    check_key(key);
    const std::string full = join_key(o_.prefix, key);
    retry({}, [&](::sgckpt::detail::s3::Easy& easy) {
      Response r = perform(easy, {.method = "DELETE", .key = full}, {});
      if (r.status != 204 && r.status != 200 && r.status != 404) throw http_error("DELETE", full, r);
    });
  }

 private:
  struct Download {
    ::sgckpt::detail::fs::AtomicFile file;
    ::sgckpt::detail::s3::Sha256 hash;
    std::uint64_t bytes = 0;
    explicit Download(const std::filesystem::path& dest) : file(dest, /*durable=*/true) {}
  };

  // Where a request's body comes from: a range of a file, or a text.
  struct Request {
    const char* method = "GET";
    std::string key{};    // full key ("" for the bucket)
    std::string query{};  // canonical: parameters sorted by name, values encoded, "name=" for flags
    std::vector<std::string> headers{};
    const SourceFile* file = nullptr;
    std::uint64_t offset = 0, size = 0;
    std::string_view text{};
    std::string payload_sha256{};  // "" : computed from text (or the empty body)
    long max_seconds = 0;          // the whole exchange at most this long (0: no limit but stalls)
    Download* download = nullptr;
  };

  struct Response {
    long status = 0;
    std::string body;  // error bodies and small answers (bounded)
    std::string etag;
    std::string meta_sha256;
    std::optional<std::uint64_t> content_length;
  };

  struct Transfer {
    const Request* req;
    Response* resp;
    CURL* easy;
    std::uint64_t sent = 0;
    std::stop_token stop;
    std::exception_ptr error;  // from a callback (a read or write that failed)
  };

  static constexpr std::size_t kMaxBody = std::size_t{16} << 20;

  std::string host_and_path(const std::string& key) const {
    const std::string path = "/" + ::sgckpt::detail::s3::uri_encode(key, true);
    if (virtual_host_) return scheme_ + "://" + o_.bucket + "." + authority_ + path;
    return o_.endpoint + "/" + ::sgckpt::detail::s3::uri_encode(o_.bucket, false) +
           (key.empty() ? "/" : path);
  }

  std::string object_url(const std::string& full_key) const { return "s3://" + o_.bucket + "/" + full_key; }

  // One HTTP exchange; a libcurl failure is a StoreError (transient unless it cannot pass).
  Response perform(::sgckpt::detail::s3::Easy& easy, const Request& req, std::stop_token stop) const {
    namespace d = ::sgckpt::detail::s3;
    CURL* h = easy.get();
    curl_easy_reset(h);
    Response resp;
    Transfer t{&req, &resp, h, 0, stop, nullptr};
    std::string url = host_and_path(req.key);
    if (!req.query.empty()) url += "?" + req.query;
    d::CurlList headers;
    const std::string payload =
        !req.payload_sha256.empty() ? req.payload_sha256 : d::sha256_hex(req.text.data(), req.text.size());
    headers.add("x-amz-content-sha256: " + payload);
    if (!o_.credentials->session_token.empty())
      headers.add("x-amz-security-token: " + o_.credentials->session_token);
    for (const auto& x : req.headers) headers.add(x);
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sigv4_.c_str());
    curl_easy_setopt(h, CURLOPT_USERNAME, o_.credentials->access_key_id.c_str());
    curl_easy_setopt(h, CURLOPT_PASSWORD, o_.credentials->secret_access_key.c_str());
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.list);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, static_cast<long>(o_.connect_timeout.count()));
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, static_cast<long>(o_.stall_timeout.count()));
    if (req.max_seconds > 0) curl_easy_setopt(h, CURLOPT_TIMEOUT, req.max_seconds);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, o_.verify_tls ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, o_.verify_tls ? 2L : 0L);
    if (!o_.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, o_.ca_file.c_str());
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &t);
    const std::string_view method = req.method;
    if (method == "PUT") {
      curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(h, CURLOPT_READFUNCTION, &on_read);
      curl_easy_setopt(h, CURLOPT_READDATA, &t);
      curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
                       static_cast<curl_off_t>(req.file ? req.size : req.text.size()));
    } else if (method == "POST") {
      curl_easy_setopt(h, CURLOPT_POST, 1L);
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, req.text.data());
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.text.size()));
    } else if (method == "DELETE") {
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
    }
    const CURLcode rc = curl_easy_perform(h);
    if (t.error) std::rethrow_exception(t.error);
    if (rc != CURLE_OK) {
      if (rc == CURLE_ABORTED_BY_CALLBACK && stop.stop_requested())
        throw StoreError(ErrorKind::Usage,
                         std::string(req.method) + " " + object_url(req.key) + ": cancelled", false);
      const bool permanent = rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT ||
                             rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
                             rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_NOT_BUILT_IN;
      std::string why = errbuf[0] ? std::string(errbuf) : curl_easy_strerror(rc);
      throw StoreError(
          rc == CURLE_OPERATION_TIMEDOUT ? ErrorKind::Timeout : ErrorKind::Io,
          std::string(req.method) + " " + object_url(req.key) + " at " + o_.endpoint + ": " + scrub(why),
          !permanent);
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp.status);
    return resp;
  }

  static size_t on_header(char* p, size_t size, size_t n, void* user) {
    auto& t = *static_cast<Transfer*>(user);
    const std::string_view line(p, size * n);
    if (line.rfind("HTTP/", 0) == 0) {  // a new response (after "100 Continue"): forget the last one's
      t.resp->etag.clear();
      t.resp->meta_sha256.clear();
      t.resp->content_length.reset();
      return size * n;
    }
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return size * n;
    std::string name(line.substr(0, colon));
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' '))
      value.remove_suffix(1);
    if (name == "etag") t.resp->etag = std::string(value);
    if (name == "x-amz-meta-sgckpt-sha256") t.resp->meta_sha256 = std::string(value);
    if (name == "content-length")
      t.resp->content_length = std::strtoull(std::string(value).c_str(), nullptr, 10);
    return size * n;
  }

  static size_t on_write(char* p, size_t size, size_t n, void* user) {
    auto& t = *static_cast<Transfer*>(user);
    const size_t bytes = size * n;
    long status = 0;
    curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &status);
    try {
      if (t.req->download && status == 200) {
        t.req->download->file.write(std::as_bytes(std::span<const char>(p, bytes)));
        t.req->download->hash.update(p, bytes);
        t.req->download->bytes += bytes;
      } else if (t.resp->body.size() + bytes <= kMaxBody) {
        t.resp->body.append(p, bytes);
      } else {
        throw StoreError(ErrorKind::Limit, "an S3 answer larger than 16 MiB", false);
      }
    } catch (...) {
      t.error = std::current_exception();
      return 0;  // libcurl stops the transfer
    }
    return bytes;
  }

  static size_t on_read(char* p, size_t size, size_t n, void* user) {
    auto& t = *static_cast<Transfer*>(user);
    const Request& r = *t.req;
    const std::uint64_t total = r.file ? r.size : r.text.size();
    const size_t k = static_cast<size_t>(std::min<std::uint64_t>(size * n, total - t.sent));
    try {
      if (r.file)
        r.file->read_at(r.offset + t.sent, std::span(reinterpret_cast<std::byte*>(p), k));
      else
        std::memcpy(p, r.text.data() + t.sent, k);
    } catch (...) {
      t.error = std::current_exception();
      return CURL_READFUNC_ABORT;
    }
    t.sent += k;
    return k;
  }

  static int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    return static_cast<Transfer*>(user)->stop.stop_requested() ? 1 : 0;
  }

  // The error of a non-2xx answer: S3's code and message, what it means, no secret.
  StoreError http_error(const std::string& what, const std::string& key, const Response& r) const {
    namespace d = ::sgckpt::detail::s3;
    const std::string code = d::xml_text(r.body, "Code").value_or("");
    const std::string message = d::xml_text(r.body, "Message").value_or("");
    const bool transient =
        r.status >= 500 || r.status == 429 || code == "RequestTimeout" || code == "SlowDown";
    ErrorKind kind = ErrorKind::Usage;
    std::string hint;
    if (r.status == 403 || code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch") {
      kind = ErrorKind::Refused;
      hint =
          " (check the credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the shared credentials "
          "file)";
    } else if (code == "NoSuchBucket") {
      hint = " (bucket \"" + o_.bucket + "\" does not exist at " + o_.endpoint + ")";
    } else if (transient) {
      kind = ErrorKind::Io;
    }
    std::string text = what + " " + object_url(key) + ": HTTP " + std::to_string(r.status);
    if (!code.empty()) text += " " + code;
    if (!message.empty()) text += ": " + message;
    return StoreError(kind, scrub(text + hint), transient, r.status);
  }

  // Belt and braces: whatever a server or libcurl echoes, a credential never reaches a message.
  std::string scrub(std::string s) const {
    for (const std::string* secret : {&o_.credentials->secret_access_key, &o_.credentials->session_token}) {
      if (secret->size() < 4) continue;
      for (std::size_t p; (p = s.find(*secret)) != std::string::npos;)
        s.replace(p, secret->size(), "<redacted>");
    }
    return s;
  }

  // Runs `fn` with this thread's handle; transient StoreErrors are tried again o_.attempts
  // times in all, after 1, 2, 4... x backoff, each with up to 50 % jitter either way.
  template <class Fn>
  void retry(std::stop_token stop, Fn&& fn) const {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    thread_local ::sgckpt::detail::s3::Easy easy;  // one per thread: it keeps its connection between requests
    for (int attempt = 1;; ++attempt) {
      try {
        fn(easy);
        return;
      } catch (const StoreError& e) {
        if (!e.transient() || attempt >= o_.attempts || stop.stop_requested()) throw;
      }
      const double jitter = std::uniform_real_distribution<double>(0.5, 1.5)(rng);
      const auto wait = std::chrono::duration<double, std::milli>(o_.backoff.count() * jitter *
                                                                  (1 << std::min(attempt - 1, 20)));
      std::mutex m;
      std::condition_variable_any cv;
      std::unique_lock lock(m);
      cv.wait_for(lock, stop, wait, [] { return false; });
    }
  }

  static void check_stop(const std::stop_token& stop, const SourceFile& source) {
    if (stop.stop_requested())
      throw StoreError(ErrorKind::Usage, "upload of \"" + source.path().string() + "\" cancelled", false);
  }

  void put_single(const SourceFile& source, const std::string& full, std::stop_token stop) const {
    const std::string sha = hash_range(source, 0, source.size(), stop);
    retry(stop, [&](::sgckpt::detail::s3::Easy& easy) {
      Response r =
          perform(easy,
                  {.method = "PUT",
                   .key = full,
                   .headers = {"x-amz-meta-sgckpt-sha256: " + sha, "Content-Type: application/octet-stream"},
                   .file = &source,
                   .offset = 0,
                   .size = source.size(),
                   .payload_sha256 = sha},
                  stop);
      if (r.status != 200) throw http_error("PUT", full, r);
    });
  }

  std::string hash_range(const SourceFile& source, std::uint64_t offset, std::uint64_t size,
                         std::stop_token stop) const {
    ::sgckpt::detail::s3::Sha256 h;
    std::vector<std::byte> buf(std::size_t{1} << 20);
    for (std::uint64_t done = 0; done < size;) {
      check_stop(stop, source);
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size - done));
      source.read_at(offset + done, std::span(buf.data(), n));
      h.update(buf.data(), n);
      done += n;
    }
    return h.hex_digest();
  }

  void put_multipart(const SourceFile& source, const std::string& full, std::stop_token stop) const {
    namespace d = ::sgckpt::detail::s3;
    std::uint64_t part = o_.part_size;
    if ((source.size() + part - 1) / part > 10000)
      part = ((source.size() + 9999) / 10000 + (1 << 20) - 1) >> 20 << 20;
    const std::size_t parts = static_cast<std::size_t>((source.size() + part - 1) / part);
    // One pass: the whole file's hash (recorded on the object) and each part's (its payload hash).
    std::vector<std::string> part_sha(parts);
    std::string whole;
    {
      d::Sha256 all;
      std::vector<std::byte> buf(std::size_t{1} << 20);
      for (std::size_t i = 0; i < parts; ++i) {
        d::Sha256 one;
        const std::uint64_t begin = i * part, end = std::min(source.size(), begin + part);
        for (std::uint64_t off = begin; off < end;) {
          check_stop(stop, source);
          const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), end - off));
          source.read_at(off, std::span(buf.data(), n));
          all.update(buf.data(), n);
          one.update(buf.data(), n);
          off += n;
        }
        part_sha[i] = one.hex_digest();
      }
      whole = all.hex_digest();
    }
    std::string upload_id;
    retry(stop, [&](d::Easy& easy) {
      Response r = perform(
          easy,
          {.method = "POST",
           .key = full,
           .query = "uploads=",
           .headers = {"x-amz-meta-sgckpt-sha256: " + whole, "Content-Type: application/octet-stream"}},
          stop);
      if (r.status != 200) throw http_error("CreateMultipartUpload", full, r);
      upload_id = d::xml_text(r.body, "UploadId").value_or("");
      if (upload_id.empty())
        throw StoreError(ErrorKind::Corrupt,
                         "CreateMultipartUpload " + object_url(full) + ": no UploadId in the answer", false);
    });
    const std::string id_query = "uploadId=" + d::uri_encode(upload_id, false);
    try {
      std::vector<std::string> etags = upload_parts(source, full, id_query, part, part_sha, stop);
      std::string xml = "<CompleteMultipartUpload>";
      for (std::size_t i = 0; i < parts; ++i)
        xml += "<Part><PartNumber>" + std::to_string(i + 1) + "</PartNumber><ETag>" +
               d::xml_escape(etags[i]) + "</ETag></Part>";
      xml += "</CompleteMultipartUpload>";
      retry(stop, [&](d::Easy& easy) {
        Response r = perform(easy,
                             {.method = "POST",
                              .key = full,
                              .query = id_query,
                              .headers = {"Content-Type: application/xml"},
                              .text = xml},
                             stop);
        // S3 may answer 200 and put the error in the body.
        if (r.status != 200 || d::xml_text(r.body, "Code"))
          throw http_error("CompleteMultipartUpload", full, r);
      });
    } catch (const StoreError& e) {
      abort_multipart(full, id_query);
      throw StoreError(e.kind(),
                       "multipart upload of " + object_url(full) + " (" + std::to_string(parts) +
                           " parts) failed and was aborted: " + e.message(),
                       e.transient(), e.http_status());
    } catch (...) {
      abort_multipart(full, id_query);
      throw;
    }
  }

  std::vector<std::string> upload_parts(const SourceFile& source, const std::string& full,
                                        const std::string& id_query, std::uint64_t part,
                                        const std::vector<std::string>& part_sha,
                                        std::stop_token stop) const {
    const std::size_t parts = part_sha.size();
    std::vector<std::string> etags(parts);
    std::atomic<std::size_t> next{0};
    std::stop_source failed;
    std::stop_callback forward(stop, [&] { failed.request_stop(); });
    std::mutex m;
    std::exception_ptr first;
    auto work = [&] {
      for (;;) {
        const std::size_t i = next.fetch_add(1);
        if (i >= parts || failed.stop_requested()) return;
        try {
          const std::uint64_t begin = i * part, size = std::min(source.size() - begin, part);
          retry(failed.get_token(), [&](::sgckpt::detail::s3::Easy& easy) {
            Response r = perform(easy,
                                 {.method = "PUT",
                                  .key = full,
                                  .query = "partNumber=" + std::to_string(i + 1) + "&" + id_query,
                                  .file = &source,
                                  .offset = begin,
                                  .size = size,
                                  .payload_sha256 = part_sha[i]},
                                 failed.get_token());
            if (r.status != 200) throw http_error("UploadPart " + std::to_string(i + 1), full, r);
            if (r.etag.empty())
              throw StoreError(ErrorKind::Corrupt,
                               "UploadPart " + object_url(full) + ": no ETag in the answer", false);
            etags[i] = r.etag;
          });
        } catch (const StoreError& e) {
          std::lock_guard lock(m);
          if (!first)
            first = std::make_exception_ptr(StoreError(e.kind(),
                                                       "part " + std::to_string(i + 1) + ": " + e.message(),
                                                       e.transient(), e.http_status()));
          failed.request_stop();
          return;
        } catch (...) {
          std::lock_guard lock(m);
          if (!first) first = std::current_exception();
          failed.request_stop();
          return;
        }
      }
    };
    {
      std::vector<std::jthread> threads;
      const std::size_t n = std::min<std::size_t>(o_.parallel_parts, parts);
      for (std::size_t k = 1; k < n; ++k) threads.emplace_back(work);
      work();
    }
    if (first) std::rethrow_exception(first);
    return etags;
  }

  // Best effort and short (one try of at most 10 s: a cancelled or timed-out upload must not
  // hang here): the upload failed already; its parts should not stay billed in the bucket.
  // Parts that stay behind are what a bucket lifecycle rule for incomplete uploads removes.
  void abort_multipart(const std::string& full, const std::string& id_query) const noexcept {
    try {
      thread_local ::sgckpt::detail::s3::Easy easy;
      perform(easy, {.method = "DELETE", .key = full, .query = id_query, .max_seconds = 10}, {});
    } catch (...) {
    }
  }

  S3Options o_;
  std::string scheme_, authority_, sigv4_;
  bool virtual_host_ = false;
};

}  // namespace sgckpt::remote
