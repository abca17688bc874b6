// sgckpt/engine/optim/fused_group.hpp: the multi-tensor table (ops/multi_tensor.hpp) of one
// optimizer parameter group on a device, kept between steps and rebuilt only when the tensors
// it lists change (new state buffers, a loaded state). SGD and Adam/AdamW step their device
// parameters through it: one fused launch per group and step.
#pragma once

#include <memory>
#include <vector>

#include "sgckpt/engine/backend.hpp"
#include "sgckpt/engine/ops/multi_tensor.hpp"

namespace sgckpt::engine {

class FusedGroupTable {
 public:
  // Runs `op` over `slots` on `be`, through the table built for the same pointers if there is one.
  void run(Backend& be, const std::vector<ops::mt::Slot>& slots, const ops::mt::FusedOp& op) {
    std::vector<const void*> key;
    for (const auto& s : slots) key.insert(key.end(), s.ptr, s.ptr + ops::mt::kMaxLists);
    if (!table_ || key_ != key) {
      table_ = be.make_fused_table(ops::mt::make_table(slots));
      key_ = std::move(key);
    }
    table_->run(op);
  }

 private:
  std::vector<const void*> key_;  // the pointers the table was built from
  std::unique_ptr<FusedTable> table_;
};

}  // namespace sgckpt::engine
