// optim_steps: runs the engine's optimizers / LR schedulers on float32 buffers, for the torch
// oracle test (tests/python/test_engine_optim.py).
//
//   optim_steps <in.pth> <out.pth>
//
// in.pth: {'params': {name: float tensor} (in order), 'grads': [{name: tensor}, ...] (one dict
// per optimizer step; a missing name = no grad that step), 'optimizer': {'type': 'sgd' | 'adam'
// | 'adamw', 'options': {...}, optional 'groups': [{'params': [names], 'options': {...}}],
// optional 'zero_wd_bias_bn': bool, optional 'load': a state_dict to load first},
// optional 'scheduler': {'type': 'step' | 'multistep' | 'cosine' | 'sg', ...}, optional
// 'steps': number of iterations (default len(grads)).
// Each iteration i: optimizer.step() with grads[i] (if i < len(grads)), then scheduler.step().
// out.pth: {'params': {...}, 'optimizer': state_dict, 'lrs': [[lr per group] after construction
// and after every iteration], 'scheduler': state_dict (torch schedulers)}.
// SG schedules: 'lrs' = [lr_for_epoch(e) for e in 0..steps].
#include <sgckpt/engine/optim/optim.hpp>
#include <sgckpt/sgckpt.hpp>

#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

using namespace sgckpt;
using namespace sgckpt::engine;

namespace {

const Value* find(const Value& d, const char* k) {
  return d.is_dict() ? d.dict().find(k) : nullptr;
}

std::vector<float> floats(const sgckpt::Tensor& t) {
  std::vector<float> v(t.numel());
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(t.element_as_double(i));
  return v;
}

Value lr_row(const Optimizer& opt) {
  Value row = Value::make_list();
  for (const auto& g : opt.param_groups()) row.items().emplace_back(g.lr());
  return row;
}

int run(const std::string& in_path, const std::string& out_path) {
  const Value in = sgckpt::load(in_path);
  const Value& pd = in.at("params");
  std::vector<std::string> names;
  std::vector<std::vector<float>> data;
  std::vector<Shape> shapes;
  for (const auto& [k, v] : pd.dict()) {
    names.push_back(k.str());
    data.push_back(floats(v.tensor()));
    shapes.push_back(v.tensor().shape());
  }
  std::vector<ParamRef> refs;
  for (std::size_t i = 0; i < names.size(); ++i)
    refs.push_back({names[i], data[i].data(), nullptr, data[i].size(), shapes[i]});

  const Value& oc = in.at("optimizer");
  const std::string type = oc.at("type").as_str();
  const Value options = find(oc, "options") ? oc.at("options") : Value::make_dict();
  std::vector<GroupSpec> groups;
  if (const Value* gs = find(oc, "groups")) {
    for (const auto& g : gs->items()) {
      GroupSpec spec;
      for (const auto& n : g.at("params").items())
        for (std::size_t i = 0; i < names.size(); ++i)
          if (names[i] == n.as_str()) spec.params.push_back(i);
      if (const Value* o = find(g, "options")) spec.options = *o;
      groups.push_back(std::move(spec));
    }
  }
  const bool zwd = find(oc, "zero_wd_bias_bn") && oc.at("zero_wd_bias_bn").as_bool();
  std::unique_ptr<Optimizer> opt;
  if (type == "sgd")
    opt = zwd ? std::make_unique<SGD>(SGD::zero_wd_on_bias_and_bn(refs, options))
              : std::make_unique<SGD>(refs, groups, options);
  else if (type == "adam")
    opt = std::make_unique<Adam>(refs, groups, options);
  else if (type == "adamw")
    opt = std::make_unique<AdamW>(refs, groups, options);
  else
    throw Error("unknown optimizer type " + type);
  if (const Value* ld = find(oc, "load")) opt->load_state_dict(*ld);

  std::unique_ptr<TorchLRScheduler> sched;
  std::unique_ptr<SGLRSchedule> sg;
  if (const Value* sc = find(in, "scheduler")) {
    const std::string st = sc->at("type").as_str();
    const std::int64_t last = find(*sc, "last_epoch") ? sc->at("last_epoch").as_int() : -1;
    if (st == "step") {
      sched = std::make_unique<StepLR>(*opt, sc->at("step_size").as_int(), sc->at("gamma"), last);
    } else if (st == "multistep") {
      std::vector<std::int64_t> ms;
      for (const auto& m : sc->at("milestones").items()) ms.push_back(m.as_int());
      sched = std::make_unique<MultiStepLR>(*opt, ms, sc->at("gamma"), last);
    } else if (st == "cosine") {
      sched = std::make_unique<CosineAnnealingLR>(*opt, sc->at("T_max").as_int(),
                                                  find(*sc, "eta_min") ? sc->at("eta_min") : Value(0), last);
    } else if (st == "sg") {
      SGLRConfig c;
      const std::string mode = sc->at("mode").as_str();
      c.mode = mode == "step"     ? SGLRConfig::Mode::Step
               : mode == "cosine" ? SGLRConfig::Mode::Cosine
                                  : SGLRConfig::Mode::Poly;
      c.initial_lr = sc->at("initial_lr").as_number();
      c.max_epochs = static_cast<int>(sc->at("max_epochs").as_int());
      if (const Value* v = find(*sc, "lr_updates"))
        for (const auto& x : v->items()) c.lr_updates.push_back(static_cast<int>(x.as_int()));
      if (const Value* v = find(*sc, "lr_decay_factor")) c.lr_decay_factor = v->as_number();
      if (const Value* v = find(*sc, "cosine_final_lr_ratio")) c.cosine_final_lr_ratio = v->as_number();
      if (const Value* v = find(*sc, "lr_warmup_epochs")) c.lr_warmup_epochs = static_cast<int>(v->as_int());
      if (const Value* v = find(*sc, "warmup_initial_lr"); v && !v->is_none())
        c.warmup_initial_lr = v->as_number();
      sg = std::make_unique<SGLRSchedule>(c);
    } else {
      throw Error("unknown scheduler type " + st);
    }
    if (sched)
      if (const Value* ld = find(*sc, "load")) sched->load_state_dict(*ld);
  }

  const Value grads = find(in, "grads") ? in.at("grads") : Value::make_list();
  const std::size_t n_grads = grads.size();
  const std::size_t steps = find(in, "steps") ? static_cast<std::size_t>(in.at("steps").as_int()) : n_grads;
  Value lrs = Value::make_list();
  if (sg) {
    for (std::size_t e = 0; e <= steps; ++e) lrs.items().emplace_back(sg->lr_for_epoch(static_cast<int>(e)));
  } else {
    lrs.items().push_back(lr_row(*opt));
  }
  std::vector<std::vector<float>> gbuf(names.size());
  for (std::size_t s = 0; s < steps && !sg; ++s) {
    if (s < n_grads) {
      auto& ps = opt->params();
      for (std::size_t i = 0; i < names.size(); ++i) {
        const Value* g = grads.items()[s].dict().find(names[i]);
        if (g) gbuf[i] = floats(g->tensor());
        ps[i].grad = g ? gbuf[i].data() : nullptr;
      }
      opt->step();
    }
    if (sched) sched->step();
    lrs.items().push_back(lr_row(*opt));
  }

  Value out = Value::make_dict();
  Value po = Value::make_dict();
  for (std::size_t i = 0; i < names.size(); ++i)
    po[names[i]] = sgckpt::Tensor::from_values(DType::Float32, shapes[i], std::span<const float>(data[i]));
  out["params"] = std::move(po);
  out["optimizer"] = opt->state_dict();
  out["lrs"] = std::move(lrs);
  if (sched) out["scheduler"] = sched->state_dict();
  sgckpt::save(out, out_path);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: optim_steps <in.pth> <out.pth>\n");
    return 2;
  }
  try {
    return run(argv[1], argv[2]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "optim_steps: %s\n", e.what());
    return 1;
  }
}
