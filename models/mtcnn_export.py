"""MTCNN face detection as one TorchScript model of the fleet's detector contract.

Source: the `facenet-pytorch` 2.6.0 wheel on PyPI (MIT, Tim Esler; MTCNN by Zhang et al., its
weights converted from davidsandberg/facenet, MIT), which ships the three networks' weights
inside it (`facenet_pytorch/data/pnet.pt`, `rnet.pt`, `onet.pt`: 28 KB, 403 KB, 1.56 MB). The
wheel is fetched with `pip download` (a package registry, like libtorch's wheels) and checked
against WHEEL_SHA256 before anything reads it; its own PNet/RNet/ONet classes load the weights.

What is scripted: facenet-pytorch's `detect_face` for one image, in TorchScript so the whole
detector is one file the worker runs on its engine thread:
- the image pyramid (min face 20 px, factor 0.709, `area` resampling as the original);
- PNet on every scale, candidate boxes where the face probability is >= 0.6, non-maximum
  suppression (NMS) per scale (IoU 0.5) and across scales (0.7), box regression, squared boxes;
- RNet on 24x24 crops (>= 0.7, NMS 0.7, regression, squared), ONet on 48x48 crops (>= 0.7,
  regression, NMS 0.7 over the smaller box's area, the original's 'Min' strategy).
NMS is ours (torchvision's is not in libtorch): the same greedy rule, written as a loop over the
boxes kept. Two guards the original lacks: at most MAX_CANDIDATES boxes per pyramid scale and
per stage go on, the highest-scoring (a pathological texture cannot make NMS quadratic), and
crops that fall outside the image are dropped rather than misaligned. Left out: the five facial
landmarks ONet also computes. The fleet frames a video with the boxes; it has no use for
landmarks, and the policy promises no facial feature data is collected.

Contract (models/README.md):
    forward(image: float32[1, 3, H, W]) -> float32[N, 5]
with RGB in [0, 1], and one row per face: x1, y1, x2, y2 in the input's pixels and the face
probability, highest first (N may be 0).

Also writes mtcnn.expected.safetensors: the test photo (samples/portrait.jpg, made here from
scikit-image's public-domain `astronaut`) as the worker decodes it, and the boxes facenet-pytorch's
own `MTCNN.detect` finds on it; the Rust test holds the TorchScript model to them.
"""

import hashlib
import io
import os
import tempfile
import zipfile
from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from export_common import fetch_wheel, run_export, save_scripted, unpack_package

FACENET_VERSION = "2.6.0"
WHEEL = f"facenet_pytorch-{FACENET_VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca"

# The test photo's source: scikit-image ships `astronaut` (Eileen Collins, NASA, public domain)
# in its wheel. The wheel's name is per platform, so the image itself is what is checked.
SKIMAGE_VERSION = "0.26.0"
ASTRONAUT_SHA256 = "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"

MIN_FACE = 20.0
FACTOR = 0.709
THRESHOLDS = (0.6, 0.7, 0.7)
MAX_CANDIDATES = 2000


def nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, over_min: bool, plus_one: float) -> torch.Tensor:
    """Indices of the boxes greedy NMS keeps, highest score first. `plus_one` is 1.0 for the
    original's pixel-inclusive areas (its numpy NMS), 0.0 for torchvision's."""
    order = scores.argsort(descending=True)
    area = (boxes[:, 2] - boxes[:, 0] + plus_one) * (boxes[:, 3] - boxes[:, 1] + plus_one)
    keep: List[int] = []
    while order.numel() > 0:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = torch.maximum(boxes[rest, 0], boxes[i, 0])
        yy1 = torch.maximum(boxes[rest, 1], boxes[i, 1])
        xx2 = torch.minimum(boxes[rest, 2], boxes[i, 2])
        yy2 = torch.minimum(boxes[rest, 3], boxes[i, 3])
        inter = (xx2 - xx1 + plus_one).clamp(min=0.0) * (yy2 - yy1 + plus_one).clamp(min=0.0)
        if over_min:
            overlap = inter / torch.minimum(area[rest], area[i])
        else:
            overlap = inter / (area[rest] + area[i] - inter)
        order = rest[overlap <= threshold]
    return torch.tensor(keep, dtype=torch.long, device=boxes.device)


def top(scores: torch.Tensor, limit: int) -> torch.Tensor:
    """Indices of at most `limit` highest scores (all of them, in order, when fewer)."""
    if scores.numel() <= limit:
        return torch.arange(scores.numel(), device=scores.device)
    return scores.topk(limit).indices.sort().values


def square(boxes: torch.Tensor) -> torch.Tensor:
    """The original's `rerec`: each box widened to a square about its centre."""
    h = boxes[:, 3] - boxes[:, 1]
    w = boxes[:, 2] - boxes[:, 0]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    return torch.cat([torch.stack([x1, y1, x1 + side, y1 + side], 1), boxes[:, 4:]], 1)


def regress(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """The original's `bbreg` (pixel-inclusive sides)."""
    w = boxes[:, 2] - boxes[:, 0] + 1.0
    h = boxes[:, 3] - boxes[:, 1] + 1.0
    moved = torch.stack([boxes[:, 0] + reg[:, 0] * w, boxes[:, 1] + reg[:, 1] * h,
                         boxes[:, 2] + reg[:, 2] * w, boxes[:, 3] + reg[:, 3] * h], 1)
    return torch.cat([moved, boxes[:, 4:]], 1)


def crops(image: torch.Tensor, boxes: torch.Tensor, size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The original's `pad` + crop + `area` resample to size x size, normalised as the nets
    expect; and the indices of the boxes that had a crop (inside the image)."""
    h, w = image.shape[2], image.shape[3]
    ints = boxes[:, :4].trunc().to(torch.int64)
    out: List[torch.Tensor] = []
    kept: List[int] = []
    for k in range(ints.shape[0]):
        x = max(int(ints[k, 0]), 1)
        y = max(int(ints[k, 1]), 1)
        ex = min(int(ints[k, 2]), w)
        ey = min(int(ints[k, 3]), h)
        if ey > y - 1 and ex > x - 1:
            patch = image[:, :, y - 1:ey, x - 1:ex]
            out.append(F.interpolate(patch, size=[size, size], mode="area"))
            kept.append(k)
    index = torch.tensor(kept, dtype=torch.long, device=image.device)
    if len(out) == 0:
        return torch.zeros(0, 3, size, size, device=image.device), index
    return (torch.cat(out, 0) - 127.5) * 0.0078125, index


class Detector(nn.Module):
    def __init__(self, pnet: nn.Module, rnet: nn.Module, onet: nn.Module):
        super().__init__()
        self.pnet = pnet
        self.rnet = rnet
        self.onet = onet
        # Attributes, not globals: TorchScript closes over none.
        self.min_face = MIN_FACE
        self.factor = FACTOR
        self.thresholds: List[float] = list(THRESHOLDS)
        self.max_candidates = MAX_CANDIDATES

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # The original works on 0..255 values.
        img = image[:1].float() * 255.0
        h, w = img.shape[2], img.shape[3]
        empty = torch.zeros(0, 5, device=image.device)
        m = 12.0 / self.min_face
        minl = float(min(h, w)) * m
        scale = m
        per_scale: List[torch.Tensor] = []
        while minl >= 12.0:
            data = F.interpolate(img, size=[int(h * scale + 1), int(w * scale + 1)], mode="area")
            reg, probs = self.pnet((data - 127.5) * 0.0078125)
            prob = probs[0, 1]
            mask = prob >= self.thresholds[0]
            cells = mask.nonzero()
            if cells.shape[0] > 0:
                score = prob[mask]
                offsets = reg[0][:, mask].permute(1, 0)
                xy = cells.flip(1).to(torch.float32)
                q1 = ((2.0 * xy + 1.0) / scale).floor()
                q2 = ((2.0 * xy + 12.0) / scale).floor()
                boxes = torch.cat([q1, q2, score.unsqueeze(1), offsets], 1)
                boxes = boxes[top(score, self.max_candidates)]
                per_scale.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5, False, 0.0)])
            scale = scale * self.factor
            minl = minl * self.factor
        if len(per_scale) == 0:
            return empty
        boxes = torch.cat(per_scale, 0)
        boxes = boxes[top(boxes[:, 4], self.max_candidates)]
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7, False, 0.0)]
        regw = boxes[:, 2] - boxes[:, 0]
        regh = boxes[:, 3] - boxes[:, 1]
        boxes = torch.stack([boxes[:, 0] + boxes[:, 5] * regw, boxes[:, 1] + boxes[:, 6] * regh,
                             boxes[:, 2] + boxes[:, 7] * regw, boxes[:, 3] + boxes[:, 8] * regh, boxes[:, 4]], 1)
        boxes = square(boxes)

        # RNet on 24x24 crops.
        data, index = crops(img, boxes, 24)
        if index.numel() == 0:
            return empty
        boxes = boxes[index]
        reg, probs = self.rnet(data)
        score = probs[:, 1]
        passed = score > self.thresholds[1]
        boxes = torch.cat([boxes[passed, :4], score[passed].unsqueeze(1)], 1)
        reg = reg[passed]
        if boxes.shape[0] == 0:
            return empty
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7, False, 0.0)
        boxes = square(regress(boxes[pick], reg[pick]))

        # ONet on 48x48 crops.
        data, index = crops(img, boxes, 48)
        if index.numel() == 0:
            return empty
        boxes = boxes[index]
        reg, _landmarks, probs = self.onet(data)
        score = probs[:, 1]
        passed = score > self.thresholds[2]
        boxes = torch.cat([boxes[passed, :4], score[passed].unsqueeze(1)], 1)
        reg = reg[passed]
        if boxes.shape[0] == 0:
            return empty
        boxes = regress(boxes, reg)
        return boxes[nms(boxes[:, :4], boxes[:, 4], 0.7, True, 1.0)]


def load_facenet(wheel: str, workdir: str):
    """facenet-pytorch's own networks (weights from the wheel) and its `MTCNN`, the reference."""
    # facenet_pytorch/__init__.py pulls in the face-recognition network and its downloader,
    # which the detector does not need.
    unpack_package(wheel, workdir, "facenet_pytorch")
    from facenet_pytorch.models import mtcnn  # noqa: E402  (after the package is registered)
    original = mtcnn.MTCNN(keep_all=True, device=torch.device("cpu"))
    return original.eval(), mtcnn


def test_photo(here: str, cache: str) -> str:
    """samples/portrait.jpg: scikit-image's `astronaut` (512x512) placed right of centre on a
    wide, plain 1024x512 canvas, so a centre crop to a square would cut the face in half."""
    from PIL import Image

    wheel = fetch_wheel(cache, "scikit-image", SKIMAGE_VERSION, None, binary=True)
    with zipfile.ZipFile(wheel) as z:
        png = z.read("skimage/data/astronaut.png")
    digest = hashlib.sha256(png).hexdigest()
    if digest != ASTRONAUT_SHA256:
        raise SystemExit(f"astronaut.png: sha256 {digest} is not the reviewed {ASTRONAUT_SHA256}")
    astronaut = Image.open(io.BytesIO(png)).convert("RGB")
    canvas = Image.new("RGB", (1024, 512), (128, 140, 160))
    canvas.paste(astronaut, (1024 - 512, 0))
    path = os.path.join(here, "samples", "portrait.jpg")
    canvas.save(path, quality=88, optimize=True)
    return path


def export(here: str, cache: str, threads: int = 2) -> dict:
    """Writes mtcnn.pt, mtcnn.expected.safetensors and samples/portrait.jpg into `here`;
    returns facts for the manifest."""
    from PIL import Image
    from safetensors_io import write_safetensors

    torch.set_num_threads(threads)
    wheel = fetch_wheel(cache, "facenet-pytorch", FACENET_VERSION, WHEEL_SHA256)
    with tempfile.TemporaryDirectory() as workdir:
        original, mtcnn = load_facenet(wheel, workdir)
        ours = Detector(mtcnn.PNet(), mtcnn.RNet(), mtcnn.ONet()).eval()
        scripted = torch.jit.script(ours)  # needs the wheel's sources, still on disk here
    path = os.path.join(here, "mtcnn.pt")
    digest = save_scripted(scripted, path)

    photo = Image.open(test_photo(here, cache)).convert("RGB")
    image = torch.frombuffer(bytearray(photo.tobytes()), dtype=torch.uint8)
    image = image.view(photo.height, photo.width, 3).permute(2, 0, 1).unsqueeze(0).float() / 255.0
    with torch.no_grad():
        boxes, probs = original.detect(photo)
        got = scripted(image)
    if boxes is None or len(boxes) != got.shape[0]:
        raise SystemExit(f"facenet-pytorch found {0 if boxes is None else len(boxes)} faces, the export {got.shape[0]}")
    expected = torch.cat([torch.tensor(boxes.astype("float32")),
                          torch.tensor(probs.astype("float32")).unsqueeze(1)], 1)
    # The original orders by area (select_largest); the export by probability.
    expected = expected[expected[:, 4].argsort(descending=True)]
    err = (got - expected).abs().max().item()
    if err > 1e-3:
        raise SystemExit(f"scripted MTCNN differs from facenet-pytorch by {err}")
    write_safetensors(os.path.join(here, "mtcnn.expected.safetensors"), {"image": image, "expected": expected})
    params = sum(p.numel() for p in ours.parameters())
    print(f"mtcnn: {params} parameters, {got.shape[0]} face(s) on the test photo, "
          f"max |scripted - original| = {err:.2e}, {os.path.getsize(path)} bytes")
    return {"sha256": digest, "parameters": params}


if __name__ == "__main__":
    # Standalone: checks the export against the original. The committed file and its sha256 in
    # the manifest come from export_fleet_models.py (scripts/export-models.sh): TorchScript
    # records the module a class was defined in, so a file written from here differs from it.
    run_export(export, __file__)
