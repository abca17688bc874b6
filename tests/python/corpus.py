"""The test corpus: checkpoint files written by real torch at test time.

build_corpus(dir) writes every case into `dir` and returns [(name, path)]; the expected
object of each file is `torch.load(path, weights_only=False)` (the oracle), never the object
that was saved (torch itself decides what survives a save/load round trip).
"""
import sys

sys.dont_write_bytecode = True

import collections
import io
import os

from oracle import torch

nn = torch.nn

DTYPES = [
    torch.float64,
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.uint8,
    torch.bool,
    torch.complex64,
    torch.complex128,
]


# The dtypes torch 2.x added (no legacy storage class; torch writes them through
# UntypedStorage and _rebuild_tensor_v3), those this torch has and can save (torch 1.13 has
# complex32 but no way to save it).
DTYPES_2X = [
    getattr(torch, n)
    for n in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu", "uint16", "uint32", "uint64", "complex32")
    if hasattr(torch, n) and hasattr(torch._utils, "_rebuild_tensor_v3")
]


def dtype_sample_2x(dt, shape=(2, 3), seed=0):
    """Values of a torch 2.x dtype, made the way torch can make them (it has few kernels for
    them): float8 by conversion from float32 (specials included), unsigned ints through int64
    with their extremes, complex32 from complex64."""
    g = torch.Generator().manual_seed(seed)
    n = 1
    for s in shape:
        n *= s
    if dt == getattr(torch, "complex32", None):
        c = torch.complex(torch.randn(n, generator=g), torch.randn(n, generator=g))
        return c.to(dt).view(shape)
    if dt.is_floating_point:
        x = torch.randn(n, generator=g) * 8
        for k, v in enumerate([float("nan"), float("inf"), -0.0, 1e-3][: max(0, n - 1)]):
            x[k + 1] = v
        return x.to(dt).view(shape)
    bits = torch.iinfo(dt).bits
    x = torch.randint(0, 2**62, (n,), generator=g, dtype=torch.int64) % (2 ** min(bits, 62))
    if n >= 2:
        x[0] = 0
        x[1] = 2 ** min(bits, 63) - 1  # the largest value int64 can carry over
    return x.to(dt).view(shape)


def dtype_sample(dt, shape=(2, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    n = 1
    for s in shape:
        n *= s
    if dt == torch.bool:
        return (torch.randint(0, 2, (n,), generator=g) == 1).view(shape)
    if dt.is_complex:
        real_dt = torch.float32 if dt == torch.complex64 else torch.float64
        r = torch.randn(n, generator=g, dtype=real_dt)
        i = torch.randn(n, generator=g, dtype=real_dt)
        c = torch.complex(r, i)
        if n >= 2:
            c[1] = complex(float("nan"), float("-inf"))
        return c.view(shape)
    if dt.is_floating_point:
        x = (torch.randn(n, generator=g, dtype=torch.float64) * 100).to(dt)
        specials = [float("nan"), float("inf"), float("-inf"), -0.0]
        for k, v in enumerate(specials[: max(0, n - 1)]):
            x[k + 1] = v
        return x.view(shape)
    info = torch.iinfo(dt)
    x = torch.randint(max(info.min, -(2**62)), min(info.max, 2**62), (n,), generator=g, dtype=torch.int64).to(dt)
    if n >= 3:
        x[0] = info.min
        x[1] = info.max
        x[2] = 0
    return x.view(shape)


def dtypes_2x_views():
    """Per torch 2.x dtype: a strided view, a second view of the same storage, a 0-d element
    and a Parameter over it, in a state dict as a model would hold them."""
    out = collections.OrderedDict()
    for i, dt in enumerate(DTYPES_2X):
        base = dtype_sample_2x(dt, (4, 5), seed=500 + i)
        out[dname(dt) + ".t"] = base[1:, ::2].t()
        out[dname(dt) + ".row"] = base[2]
        out[dname(dt) + ".elem"] = base[3, 4]
        out[dname(dt) + ".param"] = nn.Parameter(base, requires_grad=False)
    return out


def dname(dt):
    return str(dt).replace("torch.", "")


# ------------------------------------------------------------------------------------------


def scalars_obj():
    ints = [0, 1, 255, 256, 65535, 65536, -1, -255, -256, 2**31 - 1, -(2**31), 2**31, 2**32, 2**40,
            2**63 - 1, -(2**63), 2**63, 2**64, -(2**64), 2**70, -(2**70), 10**40, -(10**40), 2**255 - 1]
    floats = [0.0, -0.0, 1.0, 1.5, -2.25, 0.1, 1 / 3, 1e-300, 5e-324, 2.2250738585072014e-308,
              1.7976931348623157e308, 1e16, 1e22, 123456789.0, 65536.0, 0.5, 1e-7, 3.141592653589793,
              float("nan"), float("inf"), float("-inf")]
    strings = ["", "ascii", "h\u00e9llo w\u00f6rld", "\u65e5\u672c\u8a9e", "emoji \U0001F389", 'tab\tnl\ncr\rquote"bs\\',
               "\x00\x01\x1f\x7f", "\u2028\u2029", "slash/and.dots", "$tensor", "nan", "1"]
    return {
        "none": None,
        "true": True,
        "false": False,
        "ints": ints,
        "floats": floats,
        "strings": strings,
        "empty_str": "",
        "empty_list": [],
        "empty_dict": {},
        "empty_tuple": (),
        "tuples": [(1,), (1, "b"), (1, "b", 3.0), (1, 2, 3, 4), (None, True, False, 0, -1)],
        "nested_tuple": ((), ((),), (1, (2, (3, (4, (5,)))))),
        "int_keys": {0: "zero", 1: 1, -5: -5.0, 2**40: [2**40], 7: {3: None}},
        "mixed_list": [None, True, 0, 0.0, "", [], {}, (), [1, [2, [3]]], {"a": {"b": {"c": [1.5]}}}],
        "bool_vs_int": [True, 1, False, 0, 1.0, 0.0],
        "unicode_keys": {"\u00e9": 1, "\u65e5": 2, "": 3, " ": 4},
        "tensor": torch.tensor([1.0, 2.0]),
    }


def views_obj():
    base = torch.arange(12, dtype=torch.float32).view(3, 4)
    return {
        "base": base,
        "t": base.t(),
        "slice": base[1:, 1:3],
        "step": base.view(-1)[1::2],
        "rows_step": base[::2],
        "col": base[:, 2],
        "elem0d": base[2, 3],
        "empty_view": base[1:1],
        "permute3d": base.view(2, 2, 3).permute(2, 0, 1),
        "expand": base[0, :1].view(1, 1).expand(5, 3),
    }


def shared_obj():
    a = torch.arange(10, dtype=torch.int64)
    b = torch.randn(4, 4)
    return [a, a.view(2, 5), a[2:], a[::3], {"again": a, "b": b, "bt": b.t()}, b, b[1]]


def expand_obj():
    return {
        "expand_row": torch.arange(4.0).view(1, 4).expand(3, 4),
        "expand_col": torch.arange(3, dtype=torch.int32).view(3, 1).expand(3, 5),
        "expand_scalar": torch.tensor(7.0).expand(2, 3),
        "broadcast_new_dim": torch.arange(6.0).view(2, 3).expand(4, 2, 3),
    }


def big_storage_view():
    big = torch.arange(100, dtype=torch.float64)
    return big[37:41]


def params_obj():
    p = nn.Parameter(torch.randn(3, 2))
    q = nn.Parameter(torch.randn(4), requires_grad=False)
    return {"p": p, "q": q, "p_data": p.data, "plain": torch.ones(2), "list": [p, q]}


def conv():
    torch.manual_seed(1)
    return nn.Conv2d(3, 4, 3)


def bn_trained():
    torch.manual_seed(2)
    m = nn.BatchNorm2d(4)
    m.train()
    for _ in range(2):
        m(torch.randn(2, 4, 5, 5))
    return m


def sequential():
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (self.downsample(x) if self.downsample is not None else x))


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2), BasicBlock(16, 16))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(self.pool(self.layer2(self.layer1(self.stem(x)))).flatten(1))


def resnet():
    torch.manual_seed(4)
    m = TinyResNet()
    m.train()
    m(torch.randn(2, 3, 8, 8))
    return m


def trained_optimizer(make, steps=3, two_groups=False):
    torch.manual_seed(5)
    m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    if two_groups:
        params = [{"params": m[0].parameters()}, {"params": m[2].parameters(), "lr": 0.001}]
    else:
        params = m.parameters()
    opt = make(params)
    for _ in range(steps):
        opt.zero_grad()
        m(torch.randn(5, 4)).pow(2).sum().backward()
        opt.step()
    return m, opt


def scheduler_state(make, steps=4):
    m = nn.Linear(2, 2)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    s = make(opt)
    for _ in range(steps):
        opt.step()
        s.step()
    return s.state_dict()


class WarmupLambda:
    def __init__(self, warmup):
        self.warmup = warmup
        self.factor = 0.5

    def __call__(self, epoch):
        return min(1.0, (epoch + 1) / self.warmup) * self.factor


def gradscaler_dict():
    return {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 0}


def sg_checkpoint():
    net = resnet()
    _, opt = trained_optimizer(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True))
    sched = scheduler_state(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10))
    return {
        "net": net.state_dict(),
        "acc": 0.7345,
        "epoch": 12,
        "metrics": {"Accuracy": 0.7345, "Top5": 0.9512, "Loss": torch.tensor(0.25)},
        "optimizer_state_dict": opt.state_dict(),
        "scaler_state_dict": gradscaler_dict(),
        "torch_scheduler_state_dict": sched,
        "ema_net": net.state_dict(),
        "ema": {"decay": 0.9999, "updates": 1200},
    }


def many_storages():
    return {"t%02d" % i: torch.full((i % 4 + 1,), float(i)) for i in range(30)}


def many_items():
    return {
        "long_list": list(range(2500)),
        "long_dict": {"k%d" % i: i * 0.5 if i % 3 else i for i in range(2100)},
        "int_keyed": {i: str(i) for i in range(1500)},
        "many_strings": ["s%d" % (i % 400) for i in range(1200)],
    }


def deep_nesting(depth=100):
    x = [torch.tensor([1, 2])]
    for i in range(depth):
        x = [x] if i % 2 else {"d": x}
    return x


def same_object_twice():
    d = {"shared_dict": 1, "t": torch.ones(2)}
    lst = [1, 2, 3]
    return {"a": d, "b": d, "l1": lst, "l2": lst, "tup": (lst, lst)}


def legacy_shared():
    a = torch.arange(12, dtype=torch.float32)
    return [a, a[3:], a.view(3, 4).t(), {"a": a}]


def legacy_state_dict():
    return sequential().state_dict()


# ------------------------------------------------------------------------------------------


def _save(obj, **kw):
    def w(path):
        torch.save(obj, path, **kw)

    return w


def _save_buffer(obj):
    def w(path):
        buf = io.BytesIO()
        torch.save(obj, buf)
        with open(path, "wb") as f:
            f.write(buf.getvalue())

    return w


def cases():
    """[(name, filename, writer(path))]; objects are built lazily by the writers' closures."""
    out = []
    add = lambda name, fname, obj, **kw: out.append((name, fname, _save(obj, **kw)))  # noqa: E731

    for i, dt in enumerate(DTYPES):
        add("dtype_" + dname(dt), "dtype_%s.pt" % dname(dt), dtype_sample(dt, (2, 3), seed=i))
    add("dtypes_all", "dtypes_all.pt", {dname(dt): dtype_sample(dt, (3, 4), seed=100 + i) for i, dt in enumerate(DTYPES)})
    add("dtypes_noncontig", "dtypes_noncontig.pt", {dname(dt): dtype_sample(dt, (4, 5), seed=200 + i)[1:, ::2].t() for i, dt in enumerate(DTYPES)})
    if DTYPES_2X:  # torch >= 2.1
        add("dtypes_2x", "dtypes_2x.pt", {dname(dt): dtype_sample_2x(dt, (3, 4), seed=400 + i) for i, dt in enumerate(DTYPES_2X)})
        add("dtypes_2x_views", "dtypes_2x_views.pt", dtypes_2x_views())
    add("scalar0d", "scalar0d.pt", torch.tensor(3.5))
    add("scalars0d_all", "scalars0d_all.pt", {dname(dt): dtype_sample(dt, (1,), seed=300 + i).view(()) for i, dt in enumerate(DTYPES)})
    add("empty_0x3", "empty_0x3.pt", torch.empty(0, 3))
    add("empty_0", "empty_0.pt", torch.empty(0))
    add("empty_mixed", "empty_mixed.pt", {"i64": torch.zeros(0, dtype=torch.int64), "b": torch.zeros(2, 0, 3, dtype=torch.bool), "c": torch.zeros(0, 1, dtype=torch.complex128)})
    add("views", "views.pt", views_obj())
    add("view_alone", "view_alone.pt", torch.arange(12.0).view(3, 4)[1:, 1:3])
    add("view_big_storage", "view_big_storage.pt", big_storage_view())
    add("transpose_alone", "transpose_alone.pt", torch.randn(3, 5).t())
    add("expand", "expand.pt", expand_obj())
    add("shared", "shared.pt", shared_obj())
    add("same_object_twice", "same_object_twice.pt", same_object_twice())
    add("param_grad", "param_grad.pt", nn.Parameter(torch.randn(2, 3)))
    add("param_nograd", "param_nograd.pt", nn.Parameter(torch.randn(2, 3), requires_grad=False))
    add("params_mixed", "params_mixed.pt", params_obj())
    add("requires_grad_tensor", "requires_grad_tensor.pt", torch.randn(3, requires_grad=True))
    add("requires_grad_in_dict", "requires_grad_in_dict.pt", {"x": torch.randn(2, 2, requires_grad=True), "y": torch.randn(2)})
    add("scalars", "scalars.pt", scalars_obj())
    add("big_ints_root", "big_ints_root.pt", 2**70)
    add("float_root", "float_root.pt", -0.0)
    add("str_root", "str_root.pt", "just a string \u00e9")
    add("none_root", "none_root.pt", None)
    add("empty_dict_root", "empty_dict_root.pt", {})
    add("tuple_root", "tuple_root.pt", (torch.ones(1), 1, "x"))
    add("conv2d_state", "conv2d_state.pt", conv().state_dict())
    add("conv2d_half_state", "conv2d_half_state.pt", conv().half().state_dict())
    add("bn2d_state", "bn2d_state.pt", bn_trained().state_dict())
    add("linear_state", "linear_state.pt", nn.Linear(5, 3).state_dict())
    add("sequential_state", "sequential_state.pt", sequential().state_dict())
    add("resnet_state", "resnet_state.pt", resnet().state_dict())
    add("sgd_momentum", "sgd_momentum.pt", trained_optimizer(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9))[1].state_dict())
    add("sgd_nesterov", "sgd_nesterov.pt", trained_optimizer(lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4))[1].state_dict())
    add("sgd_nomomentum", "sgd_nomomentum.pt", trained_optimizer(lambda p: torch.optim.SGD(p, lr=0.1))[1].state_dict())
    add("sgd_two_groups", "sgd_two_groups.pt", trained_optimizer(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.5), two_groups=True)[1].state_dict())
    add("adam", "adam.pt", trained_optimizer(lambda p: torch.optim.Adam(p, lr=1e-3))[1].state_dict())
    add("adam_amsgrad", "adam_amsgrad.pt", trained_optimizer(lambda p: torch.optim.Adam(p, lr=1e-3, amsgrad=True))[1].state_dict())
    add("adamw", "adamw.pt", trained_optimizer(lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.05))[1].state_dict())
    add("adamw_amsgrad", "adamw_amsgrad.pt", trained_optimizer(lambda p: torch.optim.AdamW(p, lr=1e-3, amsgrad=True))[1].state_dict())
    add("steplr", "steplr.pt", scheduler_state(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5)))
    add("multisteplr", "multisteplr.pt", scheduler_state(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[2, 5, 5, 9], gamma=0.1)))
    add("cosine", "cosine.pt", scheduler_state(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10)))
    add("cosine_eta", "cosine_eta.pt", scheduler_state(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=1e-5)))
    add("lambdalr", "lambdalr.pt", scheduler_state(lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda e: 0.9**e)))
    add("lambdalr_callable", "lambdalr_callable.pt", scheduler_state(lambda o: torch.optim.lr_scheduler.LambdaLR(o, WarmupLambda(5))))
    a = torch.arange(6, dtype=torch.float32)
    add("storage_bare_bf16", "storage_bare_bf16.pt", torch.arange(5, dtype=torch.bfloat16).storage())
    add("storage_with_views", "storage_with_views.pt", [a, a.storage(), a[1:].view(1, 5)])
    add("bytes_values", "bytes_values.pt", {"b": b"\x00\xffab", "empty": b"", "list": [b"x" * 300], "t": torch.ones(1)})
    add("counter_root", "counter_root.pt", collections.Counter({3: 2, 7: 1, "x": 5}))
    add("gradscaler", "gradscaler.pt", gradscaler_dict())
    add("sg_checkpoint", "sg_checkpoint.pt", sg_checkpoint())
    add("many_storages", "many_storages.pt", many_storages())
    add("many_items", "many_items.pt", many_items())
    add("deep_nesting_100", "deep_nesting_100.pt", deep_nesting(100))
    add("large_tensor_4MB", "large_tensor_4MB.pt", {"w": torch.randn(1024, 1024), "b": torch.zeros(1024)})
    add("several.dots.in.name", "several.dots.in.name.pth", {"w": torch.ones(2, 2), "n": 3})
    add("noext", "noext", {"w": torch.ones(3)})
    add("protocol2_explicit", "protocol2_explicit.pt", {"w": torch.ones(2), "lr": 0.1}, pickle_protocol=2)
    out.append(("file_like_buffer", "file_like_buffer.pt", _save_buffer({"w": torch.arange(6.0).view(2, 3), "e": 1})))
    # pre-1.6 legacy stream format
    add("legacy_tensor", "legacy_tensor.pt", torch.randn(3, 4), _use_new_zipfile_serialization=False)
    add("legacy_dict", "legacy_dict.pt", {"a": 1, "b": [1.5, "x", None], "t": torch.arange(5, dtype=torch.int16), "p": nn.Parameter(torch.ones(2))}, _use_new_zipfile_serialization=False)
    add("legacy_shared_views", "legacy_shared_views.pt", legacy_shared(), _use_new_zipfile_serialization=False)
    add("legacy_state_dict", "legacy_state_dict.pt", legacy_state_dict(), _use_new_zipfile_serialization=False)
    add("legacy_dtypes", "legacy_dtypes.pt", {dname(dt): dtype_sample(dt, (2, 2), seed=400 + i) for i, dt in enumerate(DTYPES)}, _use_new_zipfile_serialization=False)
    add("legacy_scalars", "legacy_scalars.pt", scalars_obj(), _use_new_zipfile_serialization=False)
    return out


def build_corpus(directory):
    """Writes every case into `directory`; returns [(name, path)]."""
    res = []
    for name, fname, writer in cases():
        path = os.path.join(directory, fname)
        writer(path)
        res.append((name, path))
    return res
