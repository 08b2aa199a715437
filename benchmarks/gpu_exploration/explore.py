"""Recipe exploration for the from-scratch CNN (PyTorch, GPU): which size/architecture/
augmentation/schedule reaches what weighted F1 on the leakage-free splits. Exploration only:
the numbers the project reports come from the Keras/TF code on the CPU machine."""

import csv
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]
dev = torch.device("cuda")
here = os.path.dirname(os.path.abspath(__file__))
d = np.load(os.path.join(here, "raw128.npz"), allow_pickle=True)
X = torch.tensor(d["x"], dtype=torch.float32)[:, None] / 255.0  # N,1,128,128
paths = list(d["paths"])
index = {p: i for i, p in enumerate(paths)}


def crop_head(x):
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        m = x[i, 0] > 20 / 255
        rows, cols = torch.where(m.any(1))[0], torch.where(m.any(0))[0]
        if len(rows) == 0:
            out[i] = x[i]
            continue
        top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        patch = x[i : i + 1, :, top:bottom, left:right]
        h, w = patch.shape[2:]
        s = max(h, w)
        pad = torch.zeros(1, 1, s, s)
        pad[:, :, (s - h) // 2 : (s - h) // 2 + h, (s - w) // 2 : (s - w) // 2 + w] = patch
        out[i] = F.interpolate(pad, size=128, mode="area")[0]
    return out


XC = None


def split_data(protocol):
    with open(os.path.join(here, f"splits_{protocol}.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "kept"]
    out = {}
    for name in ("train", "val", "test"):
        chosen = [r for r in rows if r["split"] == name]
        idx = torch.tensor([index[r["path"]] for r in chosen])
        y = torch.tensor([CLASSES.index(r["label"]) for r in chosen])
        out[name] = (idx, y)
    return out


class Net(nn.Module):
    def __init__(self, filters, convs, head, dense, dropout, in_norm):
        super().__init__()
        layers, c = [], 1
        for f in filters:
            for _ in range(convs):
                layers += [nn.Conv2d(c, f, 3, padding=1, bias=False), nn.BatchNorm2d(f), nn.ReLU()]
                c = f
            layers += [nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.head = head
        self.in_norm = in_norm
        self.drop = nn.Dropout(dropout)
        self.dense = nn.LazyLinear(dense) if dense else None
        self.out = nn.LazyLinear(4)

    def forward(self, x):
        if self.in_norm == "image":
            m = x.mean((1, 2, 3), keepdim=True)
            sd = x.std((1, 2, 3), keepdim=True) + 1e-3
            x = (x - m) / sd
        x = self.features(x)
        x = x.mean((2, 3)) if self.head == "avg" else x.flatten(1)
        x = self.drop(x)
        if self.dense:
            x = self.drop(F.relu(self.dense(x)))
        return self.out(x)


def augment(x, g, cfg):
    n = x.shape[0]
    ang = (torch.rand(n, device=dev) * 2 - 1) * cfg["rot"] * np.pi / 180
    sc = 1 + (torch.rand(n, device=dev) * 2 - 1) * cfg["zoom"]
    tx = (torch.rand(n, 2, device=dev) * 2 - 1) * cfg["shift"]
    flip = torch.where(torch.rand(n, device=dev) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, tx[:, 0]], 1), torch.stack([sin * flip, cos, tx[:, 1]], 1)],
        1,
    )
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    b = 1 + (torch.rand(n, 1, 1, 1, device=dev) * 2 - 1) * cfg["bright"]
    c = 1 + (torch.rand(n, 1, 1, 1, device=dev) * 2 - 1) * cfg["contrast"]
    m = x.mean((1, 2, 3), keepdim=True)
    x = ((x - m) * c + m) * b
    if cfg.get("gamma"):
        gm = torch.exp((torch.rand(n, 1, 1, 1, device=dev) * 2 - 1) * cfg["gamma"])
        x = x.clamp(0, 1) ** gm
    if cfg.get("blur") and cfg["blur"] > 0:
        k = torch.tensor([1, 4, 6, 4, 1.0], device=dev)
        k = (k[:, None] * k[None]) / 256
        blurred = F.conv2d(x, k[None, None], padding=2)
        sel = (torch.rand(n, 1, 1, 1, device=dev) < cfg["blur"]).float()
        x = sel * blurred + (1 - sel) * x
    if cfg.get("lowres") and cfg["lowres"] > 0:
        s = x.shape[-1]
        small = F.interpolate(
            F.interpolate(x, scale_factor=0.4, mode="area"), size=s, mode="bilinear"
        )
        sel = (torch.rand(n, 1, 1, 1, device=dev) < cfg["lowres"]).float()
        x = sel * small + (1 - sel) * x
    return x.clamp(0, 1.5)


def wf1(y, p):
    f1s, sup = [], []
    rec = {}
    for k in range(4):
        tp = ((p == k) & (y == k)).sum()
        fp = ((p == k) & (y != k)).sum()
        fn = ((p != k) & (y == k)).sum()
        pr = tp / max(tp + fp, 1)
        rc = tp / max(tp + fn, 1)
        f1s.append(0 if pr + rc == 0 else 2 * pr * rc / (pr + rc))
        sup.append((y == k).sum())
        rec[CLASSES[k]] = round(float(rc), 3) if (y == k).sum() else None
    sup = np.array(sup)
    return float((np.array(f1s) * sup).sum() / sup.sum()), rec


def run(cfg, protocol):
    torch.manual_seed(cfg.get("seed", 42))
    data = split_data(protocol)
    src = XC if cfg.get("crop") else X
    size = cfg["size"]

    def get(name):
        idx, y = data[name]
        x = src[idx]
        if size != 128:
            x = F.interpolate(x, size=size, mode="area")
        return x.to(dev), y.to(dev)

    xt, yt = get("train")
    xv, yv = get("val")
    xs, ys = get("test")
    counts = torch.bincount(yt, minlength=4).float()
    w = (len(yt) / (4 * counts)).to(dev) if cfg.get("cw", True) else None
    net = Net(
        cfg["filters"],
        cfg["convs"],
        cfg["head"],
        cfg["dense"],
        cfg["dropout"],
        cfg.get("norm", "none"),
    ).to(dev)
    net(xt[:2])
    opt = torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=cfg.get("wd", 1e-4))
    epochs = cfg["epochs"]
    steps = (len(yt) + cfg["bs"] - 1) // cfg["bs"]
    sched = (
        torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=epochs * steps)
        if cfg.get("sched") == "onecycle"
        else None
    )
    plateau = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=3)
        if sched is None
        else None
    )
    best, best_state, bad = 1e9, None, 0
    t0 = time.time()
    for ep in range(epochs):  # noqa: B007 (ep is reported after the loop)
        net.train()
        perm = torch.randperm(len(yt), device=dev)
        for s in range(steps):
            b = perm[s * cfg["bs"] : (s + 1) * cfg["bs"]]
            x = augment(xt[b], None, cfg["aug"]) if cfg["aug"] else xt[b]
            loss = F.cross_entropy(net(x), yt[b], weight=w, label_smoothing=cfg.get("ls", 0.0))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched:
                sched.step()
        net.eval()
        with torch.no_grad():
            vl = F.cross_entropy(net(xv), yv).item()
        if plateau:
            plateau.step(vl)
        if vl < best:
            best, bad = vl, 0
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
            if cfg.get("patience") and bad >= cfg["patience"]:
                break
    net.load_state_dict(best_state)
    net.eval()
    with torch.no_grad():
        pv = net(xv).argmax(1).cpu().numpy()
        ps = net(xs).argmax(1).cpu().numpy()
    vf, _ = wf1(yv.cpu().numpy(), pv)
    tf, rec = wf1(ys.cpu().numpy(), ps)
    return {
        "val_wf1": round(vf, 4),
        "test_wf1": round(tf, 4),
        "recall": rec,
        "epochs": ep + 1,
        "secs": round(time.time() - t0, 1),
    }


BASE = {
    "size": 128,
    "filters": [32, 64, 128, 256],
    "convs": 2,
    "head": "avg",
    "dense": 0,
    "dropout": 0.3,
    "lr": 1e-3,
    "bs": 32,
    "epochs": 40,
    "patience": 10,
    "aug": {"rot": 10, "zoom": 0.1, "shift": 0.05, "bright": 0.1, "contrast": 0.1},
}


def variant(**kw):
    c = json.loads(json.dumps(BASE))
    for k, v in kw.items():
        c[k] = v
    return c


if __name__ == "__main__":
    grid_name = sys.argv[1]
    if any("crop" in a for a in sys.argv):
        XC = crop_head(X)
    strong = {
        "rot": 15,
        "zoom": 0.15,
        "shift": 0.08,
        "bright": 0.2,
        "contrast": 0.2,
        "gamma": 0.3,
        "blur": 0.2,
        "lowres": 0.3,
    }
    grids = {
        "a": {
            "base128": variant(),
            "c1_128": variant(convs=1),
            "base96": variant(size=96),
            "c1_96": variant(size=96, convs=1),
            "flat_dense": variant(head="flatten", dense=256, dropout=0.5),
            "onecycle60": variant(sched="onecycle", epochs=60, patience=0, lr=3e-3),
            "noaug": variant(aug=None),
            "strongaug": variant(aug=strong),
            "imgnorm": variant(norm="image"),
            "wide": variant(filters=[64, 128, 256, 512], convs=1),
            "five": variant(filters=[32, 64, 128, 256, 256]),
            "bs64": variant(bs=64, lr=2e-3),
        },
    }
    extra = json.loads(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].startswith("{") else None
    grid = grids.get(grid_name) or {k: variant(**v) for k, v in extra.items()}
    results = {}
    for name, cfg in grid.items():
        for protocol in ("resplit", "official"):
            r = run(cfg, protocol)
            results[f"{name}/{protocol}"] = r
            print(name, protocol, json.dumps(r), flush=True)
    out = os.environ.get("OUT", ".")
    with open(os.path.join(out, f"explore_{grid_name}.json"), "w") as f:
        json.dump({"grid": {k: v for k, v in grid.items()}, "results": results}, f, indent=1)
