"""One-shot CUDA probe: normal-generation rate, G&C draws/s and GD steps/s on the GPU."""
import json, os, sys, time
import torch
import volumelab as vl
from volumelab.samplers import select_sampler

out = os.environ.get("OUT", ".")
dev = torch.device("cuda")
print(torch.__version__, torch.cuda.get_device_name(0), flush=True)
rows = {}
buf = torch.empty(1 << 28, device=dev)
g = torch.Generator(device=dev).manual_seed(0)
buf.normal_(generator=g); torch.cuda.synchronize()
t = time.perf_counter()
for _ in range(10):
    buf.normal_(generator=g)
torch.cuda.synchronize()
rows["normals_per_s"] = 10 * buf.numel() / (time.perf_counter() - t)
print("normals/s", rows["normals_per_s"], flush=True)
del buf
problem = vl.make_sensing(5, 5, 1, 15, seed=0)
configs = [("linear", 160, 2, False), ("linear", 10000, 2, False), ("tanh", 160, 2, False), ("leaky_relu", 160, 2, False),
           ("tanh", 5, 2, False), ("tanh", 40, 2, False), ("linear", 5, 10, True), ("tanh", 5, 10, True)]
for act, w, d, norm in configs:
    model = vl.FactorizationModel(5, 5, w, d, activation=act, normalize=norm)
    gnc = vl.GuessCheck(eps=0.02, device="cuda")
    gnc.run(problem, model, 1 << 20, seed=1)
    n = 1 << 26 if w <= 40 or act == 'linear' else 1 << 25
    torch.cuda.synchronize(); t = time.perf_counter()
    r = gnc.run(problem, model, n, seed=1)
    s = time.perf_counter() - t
    key = f"{act}_w{w}_d{d}"
    sm = select_sampler(model)
    bound = rows["normals_per_s"] / sm.random_numbers_per_sample(model)
    print(key, f"bound {bound:,.0f}/s -> {100 * n / s / bound:.1f}% of RNG bound", flush=True)
    rows[key] = {"draws_per_s": n / s, "sampler": select_sampler(model).name, "bound": bound, "diag": {k: v for k, v in r.diagnostics.items() if isinstance(v, (int, float, str))}}
    print(key, f"{n / s:,.0f} draws/s", rows[key]["sampler"], rows[key]["diag"], flush=True)
for act in ("linear", "tanh"):
    model = vl.FactorizationModel(5, 5, 160, 2, activation=act)
    gd = vl.GradientDescent(lr=1e-4, step_rule="group_rmsprop", init_scale=1e-3, device="cuda")
    gd.run_batch([problem], model, 200, list(range(8)))
    torch.cuda.synchronize(); t = time.perf_counter()
    gd.run_batch([problem], model, 3000, list(range(8)))
    s = time.perf_counter() - t
    rows[f"gd_{act}_us_per_step"] = s / 3000 * 1e6
    print("GD", act, s / 3000 * 1e6, "us/step", flush=True)
json.dump(rows, open(os.path.join(out, "probe.json"), "w"), indent=1)
