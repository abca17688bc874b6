// The CUDA backend on a machine without a GPU (CI): what must work with no driver and no
// device. The probe names the reason, the backend refuses to start with it, the error funnel
// names call, file, line and the library's error, and the cuDNN / cuBLASLt descriptions of the
// engine's shapes are right (building them needs no device).
#include <doctest/doctest.h>

#include <string>

#include "check.hpp"
#include "conv_cudnn.hpp"
#include "linear_cublaslt.hpp"
#include "sgckpt/cuda/cuda.hpp"

using namespace sgckpt;
namespace cd = sgckpt::cuda::detail;

TEST_SUITE("cuda/host") {
  TEST_CASE("the probe says whether a device is usable, and why not") {
    const cuda::DeviceStatus s = cuda::probe();
    MESSAGE("probe: ", s.usable ? s.name : s.reason, "; ", cuda::library_versions());
    if (s.usable) {
      CHECK(s.reason.empty());
      CHECK(s.major >= 5);
      CHECK(s.memory > 0);
    } else {
      CHECK(s.error != 0);
      CHECK(s.reason.find("CUDA error " + std::to_string(s.error)) != std::string::npos);
      // Without a device the backend refuses to start, with the probe's reason.
      try {
        cuda::make_backend();
        FAIL("make_backend() started without a device");
      } catch (const Error& e) {
        CHECK(std::string(e.what()) == "CUDA backend: " + s.reason);
      }
    }
    CHECK(cuda::library_versions().find("cuDNN 9.") != std::string::npos);
  }

  TEST_CASE("every library's error becomes an sgckpt::Error naming the call, the place and the error") {
    auto message = [](auto status) {
      try {
        SGCKPT_CUDA_CHECK(status);
      } catch (const Error& e) {
        return std::string(e.what());
      }
      return std::string("no error");
    };
    CHECK(message(cudaErrorNoDevice).find("CUDA error 100 (cudaErrorNoDevice) in status at ") == 0);
    CHECK(message(cudaErrorNoDevice).find("cuda_host.cpp:") != std::string::npos);
    CHECK(message(CUDNN_STATUS_BAD_PARAM).find("cuDNN error 2000 (CUDNN_STATUS_BAD_PARAM") == 0);
    CHECK(message(CUBLAS_STATUS_INVALID_VALUE).find("cuBLASLt error 7 (CUBLAS_STATUS_INVALID_VALUE)") == 0);
    CHECK(message(cudaSuccess) == "no error");
  }

  TEST_CASE("cuDNN describes every convolution of ResNet18 with the engine's output shape") {
    struct Conv {
      std::int64_t C, H, K, R, stride, pad;
    };
    // CIFAR ResNet18 (stem 3x3) and ImageNet's 7x7 stem; 1x1 downsampling shortcuts.
    for (const Conv c : {Conv{3, 32, 64, 3, 1, 1}, Conv{64, 32, 128, 3, 2, 1}, Conv{64, 32, 128, 1, 2, 0},
                         Conv{256, 8, 512, 3, 2, 1}, Conv{3, 224, 64, 7, 2, 3}}) {
      engine::ops::Conv2dShape s;
      s.N = 256, s.C = c.C, s.H = c.H, s.W = c.H, s.K = c.K, s.R = c.R, s.S = c.R, s.stride = c.stride,
      s.pad = c.pad;
      cd::ConvDescriptors d(s);  // throws if cuDNN's output shape differed from s.P(), s.Q()
      cudnnDataType_t type{};
      int n = 0, ch = 0, h = 0, w = 0, ns = 0, cs = 0, hs = 0, ws = 0;
      REQUIRE(cudnnGetTensor4dDescriptor(d.y, &type, &n, &ch, &h, &w, &ns, &cs, &hs, &ws) ==
              CUDNN_STATUS_SUCCESS);
      CHECK(type == CUDNN_DATA_FLOAT);
      CHECK(n == 256);
      CHECK(ch == c.K);
      CHECK(h == s.P());
      CHECK(ws == 1);  // NCHW, dense
      cudnnMathType_t math{};
      REQUIRE(cudnnGetConvolutionMathType(d.conv, &math) == CUDNN_STATUS_SUCCESS);
      CHECK(math == CUDNN_FMA_MATH);  // no TF32
    }
    engine::ops::Conv2dShape too_big;
    too_big.N = std::int64_t{1} << 32;
    CHECK_THROWS_WITH(cd::ConvDescriptors{too_big}, doctest::Contains("exceeds int32"));
  }

  TEST_CASE("cuBLASLt describes the linear layer's three products") {
    const std::int64_t N = 256, I = 512, O = 10;
    const cd::LtGemm fwd(true, false, O, N, I, I, I);  // y^T = W * x^T
    CHECK(cd::LtGemm::rows(fwd.a) == static_cast<std::uint64_t>(I));
    CHECK(cd::LtGemm::cols(fwd.a) == static_cast<std::uint64_t>(O));
    CHECK(cd::LtGemm::rows(fwd.c) == static_cast<std::uint64_t>(O));
    CHECK(cd::LtGemm::cols(fwd.c) == static_cast<std::uint64_t>(N));
    const cd::LtGemm wgrad(false, true, I, O, N, I, O);  // dW^T += x^T * dy
    CHECK(cd::LtGemm::rows(wgrad.b) == static_cast<std::uint64_t>(O));
    CHECK(cd::LtGemm::cols(wgrad.b) == static_cast<std::uint64_t>(N));
    CHECK_THROWS_WITH(cd::LtGemm(false, false, 0, 1, 1, 1, 1), doctest::Contains("empty matmul"));
  }
}
