"""The torch peer of bench/gpu_bench on the same GPU, in the same run (bench/gpu_check.sh).

Usage: gpu_torch.py OUTDIR [--repeats N] [--train-steps N]
       gpu_torch.py OUTDIR --interop write|check   (only the interoperability step below)
Prints "name value unit" lines:
  copy_gbs                 dst.copy_(src) of 1 GiB (bytes read + written per second)
  ema_loop_<state>_gbs     SuperGradients' per-tensor EMA: e.mul_(d).add_(w, alpha=1-d)
  ema_lerp_<state>_gbs     torch._foreach_lerp_(E, W, 1-d)
  avg_sg_<state>_gbs       SuperGradients' running average per tensor: (avg*k + s)/(k+1)
  train_<mode>_b<B>_ips    ResNet18-CIFAR training, images/s: fp32 eager; fp16 / bf16 AMP with
                           channels_last and cudnn.benchmark
  save_stall_ms            SuperGradients' synchronous torch.save of the model and optimizer
--interop write: writes OUTDIR/torch2_written.pth (a ResNet18-CIFAR state_dict) for sgckpt to
read; --interop check: loads OUTDIR/sgckpt_written.pth (sgckpt's rewrite of it) with
weights_only=True and prints whether it equals the original.
Every timed repeat starts with L2 scrubbed (a 512 MiB write); times are medians.
"""
import argparse
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("outdir")
p.add_argument("--repeats", type=int, default=20)
p.add_argument("--train-steps", type=int, default=30)
p.add_argument("--interop", choices=["write", "check"])
args = p.parse_args()
dev = torch.device("cuda")


def timed(fn, repeats=args.repeats):
    fn()
    times = []
    for _ in range(repeats):
        scrub.zero_()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):  # the CIFAR variant the engine trains (3x3 stem, no max-pool)
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, cin = [], 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def say(name, value, unit):
    print(f"{name} {value} {unit}", flush=True)


def interop(mode):
    torch.manual_seed(0)
    sd = ResNet18().state_dict()
    if mode == "write":
        torch.save(sd, os.path.join(args.outdir, "torch2_written.pth"))
        say("torch_version", torch.__version__, "")
        return
    back = torch.load(os.path.join(args.outdir, "sgckpt_written.pth"), weights_only=True)
    same = back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
    say("sgckpt_file_loads_weights_only", "yes" if same else "DIFFERS", "")


if args.interop:
    interop(args.interop)
    raise SystemExit(0)
scrub = torch.empty(512 << 20, dtype=torch.uint8, device=dev)

# ---- copy bandwidth
src = torch.empty(1 << 30, dtype=torch.uint8, device=dev)
dst = torch.empty_like(src)
say("copy_gbs", f"{2 * src.numel() / timed(lambda: dst.copy_(src)) / 1e9:.1f}", "GB/s")
del src, dst

# ---- EMA and averaging
decay = 0.9998
states = {
    "resnet18": [p.detach().clone() for p in ResNet18().to(dev).parameters()],
    "1g": [torch.randn(1 << 20, device=dev) for _ in range(256)],
}
for name, W in states.items():
    E = [w.clone() for w in W]
    A = [w.clone() for w in W]
    n = sum(w.numel() for w in W)

    def ema_loop():
        with torch.no_grad():
            for e, w in zip(E, W):
                e.mul_(decay).add_(w, alpha=1 - decay)

    def ema_lerp():
        torch._foreach_lerp_(E, W, 1 - decay)

    def avg_sg(k=3):
        with torch.no_grad():
            for a, w in zip(A, W):
                a.copy_((a * k + w) / (k + 1))

    say(f"ema_loop_{name}_gbs", f"{12 * n / timed(ema_loop) / 1e9:.1f}", "GB/s")
    say(f"ema_lerp_{name}_gbs", f"{12 * n / timed(ema_lerp) / 1e9:.1f}", "GB/s")
    say(f"avg_sg_{name}_gbs", f"{12 * n / timed(avg_sg) / 1e9:.1f}", "GB/s")
del states

# ---- training throughput
torch.backends.cudnn.benchmark = True
for batch in (256, 512):
    for mode in ("fp32", "fp16", "bf16"):
        model = ResNet18().to(dev)
        x = torch.randn(batch, 3, 32, 32, device=dev)
        y = torch.randint(0, 10, (batch,), device=dev)
        if mode != "fp32":
            model = model.to(memory_format=torch.channels_last)
            x = x.to(memory_format=torch.channels_last)
        # fp32 means float32 math, as the engine's (cuDNN and cuBLAS would use TF32 by default)
        torch.backends.cudnn.allow_tf32 = mode != "fp32"
        torch.backends.cuda.matmul.allow_tf32 = mode != "fp32"
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        scaler = torch.amp.GradScaler("cuda", enabled=mode == "fp16")
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mode)

        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = F.cross_entropy(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            return loss.item()  # SG logs the loss every step: one synchronization, as the engine

        for _ in range(5):
            step()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.train_steps):
            step()
        torch.cuda.synchronize()
        say(f"train_{mode}_b{batch}_ips", f"{batch * args.train_steps / (time.perf_counter() - t0):.0f}", "images/s")
        if batch == 256 and mode == "fp32":
            path = os.path.join(args.outdir, "sg_ckpt.pth")
            stalls = []
            for _ in range(5):
                t0 = time.perf_counter()
                torch.save({"net": model.state_dict(), "optimizer_state_dict": opt.state_dict()}, path)
                stalls.append(time.perf_counter() - t0)
            say("save_stall_ms", f"{statistics.median(stalls) * 1e3:.1f}", "ms")
            os.remove(path)

