// tools/sgckpt/cmd_remote.cpp: the remote-store commands (docs/remote.md).
//
//   sgckpt push DIR URL [--endpoint E]              every file of DIR -> URL/<name>
//   sgckpt pull URL DIR [--endpoint E] [--overwrite] every object URL/<name> -> DIR/<name>
//   sgckpt ls URL [--endpoint E]                    "<size> <key>" per object under URL
//
// URL: s3://bucket[/prefix] (credentials and endpoint from the AWS_* environment or the
// shared credentials file; --endpoint for MinIO, Ceph, a local server) or a directory. A run
// directory and its remote copy: `sgckpt push ckpts/exp/RUN_x s3://bucket/runs/exp/RUN_x`,
// the layout the trainer's remote copies use. Only plain files directly in DIR are pushed
// (temporaries of interrupted saves are not); pull keeps files that exist locally unless
// --overwrite, and each download is atomic and verified against the SHA-256 recorded at upload.
#include <chrono>
#include <filesystem>
#include <string>

#include "cli_common.hpp"
#include "commands.hpp"
#include "sgckpt/core/error.hpp"

#ifdef SGCKPT_TOOL_REMOTE
#include "sgckpt/remote.hpp"
#endif

namespace sgckpt::tool {

namespace {

struct RemoteOptions {
  std::string url;
  std::string dir;
  std::string endpoint;
  bool overwrite = false;
};

#ifdef SGCKPT_TOOL_REMOTE

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

std::string rate(std::uint64_t bytes, double s) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.1f MB in %.2f s, %.1f MB/s", static_cast<double>(bytes) / 1e6, s,
                s > 0 ? static_cast<double>(bytes) / 1e6 / s : 0.0);
  return buf;
}

void push(const RemoteOptions& o) {
  const auto store = remote::open_store(o.url, o.endpoint);
  std::error_code ec;
  if (!std::filesystem::is_directory(o.dir, ec)) throw Error("push: \"" + o.dir + "\" is not a directory");
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(o.dir))
    if (e.is_regular_file() && !e.is_symlink() && !is_temporary_name(e.path().filename().string()))
      files.push_back(e.path());
  std::sort(files.begin(), files.end());
  const auto t0 = std::chrono::steady_clock::now();
  std::uint64_t bytes = 0;
  for (const auto& f : files) {
    const remote::SourceFile src = remote::SourceFile::open(f);
    store->put(src, f.filename().string());
    bytes += src.size();
    write_stdout("uploaded " + f.filename().string() + " (" + std::to_string(src.size()) + " bytes)\n");
  }
  write_stdout("pushed " + std::to_string(files.size()) + " files to " + store->url() + ": " +
               rate(bytes, seconds_since(t0)) + "\n");
}

void pull(const RemoteOptions& o) {
  const auto store = remote::open_store(o.url, o.endpoint);
  const auto t0 = std::chrono::steady_clock::now();
  const remote::PullReport r = remote::pull_dir(*store, "", o.dir, o.overwrite);
  for (const auto& n : r.downloaded) write_stdout("downloaded " + n + "\n");
  for (const auto& n : r.kept) write_stdout("kept " + n + " (exists locally; --overwrite replaces it)\n");
  for (const auto& n : r.skipped) write_stdout("skipped " + n + " (not a plain file name)\n");
  write_stdout("pulled " + std::to_string(r.downloaded.size()) + " files from " + store->url() + ": " +
               rate(r.bytes, seconds_since(t0)) + "\n");
}

void ls(const RemoteOptions& o) {
  const auto store = remote::open_store(o.url, o.endpoint);
  for (const auto& obj : store->list("")) write_stdout(std::to_string(obj.size) + " " + obj.key + "\n");
}

#else

[[noreturn]] void unavailable(const RemoteOptions&) {
  throw Error(
      "this sgckpt was built without libcurl: remote stores are unavailable (install libcurl4-openssl-dev)");
}
void push(const RemoteOptions& o) {
  unavailable(o);
}
void pull(const RemoteOptions& o) {
  unavailable(o);
}
void ls(const RemoteOptions& o) {
  unavailable(o);
}

#endif

}  // namespace

void register_remote(CLI::App& app) {
  auto o = std::make_shared<RemoteOptions>();
  const char* endpoint_help = "S3 endpoint URL (default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else AWS)";

  CLI::App* p = app.add_subcommand("push", "Upload every file of a directory (a run) to a store");
  p->add_option("dir", o->dir, "local directory")->required();
  p->add_option("url", o->url, "s3://bucket[/prefix] or a directory")->required();
  p->add_option("--endpoint", o->endpoint, endpoint_help);
  p->callback([o] { push(*o); });

  CLI::App* q = app.add_subcommand("pull", "Download every object under a store URL into a directory");
  q->add_option("url", o->url, "s3://bucket[/prefix] or a directory")->required();
  q->add_option("dir", o->dir, "local directory (created if needed)")->required();
  q->add_option("--endpoint", o->endpoint, endpoint_help);
  q->add_flag("--overwrite", o->overwrite, "replace files that exist locally");
  q->callback([o] { pull(*o); });

  CLI::App* l = app.add_subcommand("ls", "List the objects under a store URL");
  l->add_option("url", o->url, "s3://bucket[/prefix] or a directory")->required();
  l->add_option("--endpoint", o->endpoint, endpoint_help);
  l->callback([o] { ls(*o); });
}

}  // namespace sgckpt::tool
