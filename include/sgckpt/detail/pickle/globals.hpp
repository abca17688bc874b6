// sgckpt/detail/pickle/globals.hpp: torch's globals, the only names a checkpoint pickle may name.
//
// A GLOBAL is only a name looked up in a fixed allowlist (tensor rebuild functions, storage
// classes, dtypes, OrderedDict, Counter, torch.Size, torch.device, and the four numpy names
// that numpy's own pickles of numeric arrays and scalars use); no Python object is ever
// created from a name, so nothing can execute. What calling one means is in rebuild.hpp and
// numpy.hpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "sgckpt/core/dtype.hpp"

namespace sgckpt::detail::pickle {

enum class G : std::uint8_t {
  OrderedDict,
  Counter,
  RebuildTensor,
  RebuildTensorV2,
  RebuildTensorV3,
  RebuildParameter,
  RebuildParameterWithState,
  RebuildFromTypeV2,
  TorchSize,
  TensorClass,
  ParameterClass,
  StorageClass,      // a typed storage class; dtype says which
  UntypedStorage,    // torch.storage.UntypedStorage
  DTypeObject,       // torch.float32 etc.; dtype says which
  CodecsEncode,      // _codecs.encode(str, 'latin1'): how protocol 2 pickles bytes
  BytesClass,        // builtins.bytes(): empty bytes
  TorchDevice,       // torch.device
  NumpyDType,        // numpy.dtype
  NumpyScalar,       // numpy.core.multiarray.scalar (numpy 2: numpy._core.multiarray)
  NumpyReconstruct,  // numpy.core.multiarray._reconstruct
  NumpyNDArray,      // numpy.ndarray, the class _reconstruct is given
  // DCP's .metadata vocabulary (lookup_dcp_global), never allowed in a .pth pickle:
  DcpClass,      // one of DCP's metadata dataclasses; name says which
  DcpGetLayout,  // torch.serialization._get_layout('torch.strided')
  DcpMemFormat,  // torch.distributed.checkpoint.metadata._MEM_FORMAT_ENCODING(int)
  PathClass,     // pathlib.PosixPath(str, ...): StorageMeta.checkpoint_id
};

inline bool is_numpy_global(G id) {
  return id == G::NumpyDType || id == G::NumpyScalar || id == G::NumpyReconstruct || id == G::NumpyNDArray;
}

struct Global {
  G id;
  DType dtype = DType::Float32;
  std::string name;  // "module.name", for messages
};

// The allowlist. Returns nullopt for anything not listed.
inline std::optional<Global> lookup_global(std::string module, const std::string& name) {
  // Python 2 and old-torch module names, as torch's loaders map them.
  if (module == "__builtin__") module = "builtins";
  if (module == "torch.tensor") module = "torch._tensor";
  const std::string full = module + "." + name;
  auto g = [&](G id, DType d = DType::Float32) { return Global{id, d, full}; };
  if (module == "collections") {
    if (name == "OrderedDict") return g(G::OrderedDict);
    if (name == "Counter") return g(G::Counter);
    return std::nullopt;
  }
  if (module == "torch._utils") {
    if (name == "_rebuild_tensor") return g(G::RebuildTensor);
    if (name == "_rebuild_tensor_v2") return g(G::RebuildTensorV2);
    if (name == "_rebuild_tensor_v3") return g(G::RebuildTensorV3);
    if (name == "_rebuild_parameter") return g(G::RebuildParameter);
    if (name == "_rebuild_parameter_with_state") return g(G::RebuildParameterWithState);
    return std::nullopt;
  }
  if (module == "_codecs" && name == "encode") return g(G::CodecsEncode);
  if (module == "numpy") {
    if (name == "dtype") return g(G::NumpyDType);
    if (name == "ndarray") return g(G::NumpyNDArray);
    return std::nullopt;
  }
  if (module == "numpy.core.multiarray" || module == "numpy._core.multiarray") {
    if (name == "scalar") return g(G::NumpyScalar);
    if (name == "_reconstruct") return g(G::NumpyReconstruct);
    return std::nullopt;
  }
  if (module == "builtins" && name == "bytes") return g(G::BytesClass);
  if (module == "torch._tensor" && name == "_rebuild_from_type_v2") return g(G::RebuildFromTypeV2);
  if (module == "torch.nn.parameter" && name == "Parameter") return g(G::ParameterClass);
  if (module == "torch.storage" && name == "UntypedStorage") return g(G::UntypedStorage);
  if (module == "torch" || module == "torch.cuda") {
    if (auto d = dtype_from_storage_class(name)) return g(G::StorageClass, *d);
    if (module == "torch") {
      if (name == "Size") return g(G::TorchSize);
      if (name == "device") return g(G::TorchDevice);
      if (name == "Tensor") return g(G::TensorClass);
      for (const auto& i : kDTypes)
        if (i.name == name) return g(G::DTypeObject, i.dtype);
    }
  }
  return std::nullopt;
}

// The allowlist of a torch.distributed.checkpoint .metadata pickle: DCP's metadata dataclasses,
// torch.Size, dtypes, the layout and memory-format encodings TensorProperties pickles, and the
// path class StorageMeta.checkpoint_id may hold. Global::name is the bare class name for a
// DcpClass. Nothing of the .pth vocabulary (tensors, storages) is allowed here.
inline std::optional<Global> lookup_dcp_global(const std::string& module, const std::string& name) {
  auto g = [&](G id, std::string n) { return Global{id, DType::Float32, std::move(n)}; };
  if (module == "torch.distributed.checkpoint.metadata") {
    for (const char* cls : {"Metadata", "TensorStorageMetadata", "BytesStorageMetadata",
                            "ChunkStorageMetadata", "TensorProperties", "MetadataIndex", "StorageMeta"})
      if (name == cls) return g(G::DcpClass, name);
    if (name == "_MEM_FORMAT_ENCODING") return g(G::DcpMemFormat, module + "." + name);
    return std::nullopt;
  }
  if (module == "torch.distributed.checkpoint.filesystem" && name == "_StorageInfo")
    return g(G::DcpClass, name);
  if (module == "torch.serialization" && name == "_get_layout")
    return g(G::DcpGetLayout, module + "." + name);
  if ((module == "pathlib" || module == "pathlib._local") && name == "PosixPath")
    return g(G::PathClass, module + "." + name);
  if (module == "torch") {
    if (name == "Size") return g(G::TorchSize, "torch.Size");
    for (const auto& i : kDTypes)
      if (i.name == name) return Global{G::DTypeObject, i.dtype, "torch." + name};
  }
  return std::nullopt;
}

}  // namespace sgckpt::detail::pickle
