"""What the reference scripts share: the class folders of a split and PNG
copies of them, NT-Xent, a network's eval-mode features on a test batch
written for runner/tests/interop.rs,
known answers printed as Rust constants, and Augur's `knn` protocol (solo-learn's weighted kNN) on features already
extracted."""
import torch
import torch.nn.functional as F


def files_of(split_dir):
    """The class names (sorted) and each class's image files (sorted)."""
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    return classes, {c: sorted(p for p in (split_dir / c).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")) for c in classes}


def write_png_subset(data, out, limits):
    """The first `limits[split]` images of each class of DATA/split (all of
    them for None), in file-name order, as lossless PNG under OUT/split."""
    from PIL import Image
    for split, limit in limits.items():
        classes, files = files_of(data / split)
        for c in classes:
            target = out / split / c
            target.mkdir(parents=True, exist_ok=True)
            for i, f in enumerate(files[c][:limit]):
                Image.open(f).convert("RGB").save(target / f"{i:05d}.png")


def features_on_batch(net, batch_dir):
    """`net`'s eval-mode features on BATCH_DIR/images.f32 (float32,
    little-endian, shape in images.json), written to torch_features.f32
    there with the weights as torch.pth beside them; returns the features."""
    import json
    net.eval()
    shape = json.loads((batch_dir / "images.json").read_text())["shape"]
    images = torch.frombuffer(bytearray((batch_dir / "images.f32").read_bytes()), dtype=torch.float32).reshape(shape)
    with torch.no_grad():
        features = net(images)
    (batch_dir / "torch_features.f32").write_bytes(features.contiguous().numpy().astype("<f4").tobytes())
    torch.save(net.state_dict(), batch_dir / "torch.pth")
    return features


def weighted_knn(train_f, train_y, test_f, test_y, classes, k, temperature):
    """Top-1 accuracy: features L2-normalised, the k most cosine-similar
    bank images vote for their class with weight exp(similarity / T)."""
    train_f, test_f = F.normalize(train_f, dim=1), F.normalize(test_f, dim=1)
    correct = 0
    for i in range(0, len(test_f), 256):
        sim = test_f[i:i + 256] @ train_f.t()
        top, idx = sim.topk(k, dim=1)
        weights = (top.double() / temperature).exp()
        scores = torch.zeros(len(top), classes, dtype=torch.float64).scatter_add_(1, train_y[idx], weights)
        correct += (scores.argmax(1) == test_y[i:i + 256]).sum().item()
    return correct / len(test_f)


def nt_xent(z1, z2, temperature):
    """NT-Xent over the 2n views: each view's positive is its pair."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    n = z1.shape[0]
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, targets)


def rust_const(name, t):
    """Print tensor `t` as a Rust `const NAME: [f32; n]` for a known-answer test."""
    values = ", ".join(f"{v:.6}" for v in t.flatten().tolist())
    print(f"const {name}: [f32; {t.numel()}] = [{values}];")
