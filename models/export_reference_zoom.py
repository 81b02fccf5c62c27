"""Export the reference image-to-video module and its expected output for a fixed input.

The module is a slow push-in (zoom) rendered with real PyTorch ops, `affine_grid` +
`grid_sample`, eased with smoothstep. It proves the libtorch chain end to end: the Rust test
`crates/infer/tests/reference_model.rs` loads `reference_zoom.pt` with `tch::CModule`, runs it on
the stored input and must match the stored output within 1e-5.

Contract: forward(image: float32[B, 3, H, W] in [0, 1]) -> float32[B, T, 3, H, W] in [0, 1].

Run through scripts/export-models.sh, which installs the full `torch` into a cache first. Writes
(next to this file):
  reference_zoom.pt                       TorchScript module (T = 8 frames, zoom 25 %)
  reference_zoom.expected.safetensors     `input` [1, 3, 40, 56] and `expected` [1, 8, 3, 40, 56]
"""

import os

import torch
import torch.nn.functional as F

from safetensors_io import write_safetensors

FRAMES = 8
ZOOM = 0.25
INPUT_SHAPE = (1, 3, 40, 56)  # not square, so a swapped H/W shows up in the test


class ReferenceZoom(torch.nn.Module):
    def __init__(self, frames: int, zoom: float):
        super().__init__()
        self.frames = frames
        self.zoom = zoom

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        b, c, h, w = image.shape
        frames = []
        for t in range(self.frames):
            p = float(t) / float(max(self.frames - 1, 1))
            eased = p * p * (3.0 - 2.0 * p)  # smoothstep: no jolt at either end
            scale = 1.0 - self.zoom * eased  # sampling a smaller window = zooming in
            theta = torch.tensor(
                [[scale, 0.0, 0.0], [0.0, scale, 0.0]], dtype=image.dtype, device=image.device
            )
            grid = F.affine_grid(theta.unsqueeze(0).expand(b, 2, 3), [b, c, h, w], align_corners=False)
            frames.append(
                F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
            )
        return torch.stack(frames, dim=1).clamp(0.0, 1.0)


def main() -> None:
    out_dir = os.path.dirname(os.path.abspath(__file__))
    torch.manual_seed(20261129)
    torch.set_num_threads(1)
    module = torch.jit.script(ReferenceZoom(FRAMES, ZOOM).eval())
    image = torch.rand(INPUT_SHAPE, dtype=torch.float32)
    with torch.no_grad():
        expected = module(image)
    assert expected.shape == (INPUT_SHAPE[0], FRAMES, *INPUT_SHAPE[1:]), expected.shape
    module.save(os.path.join(out_dir, "reference_zoom.pt"))
    write_safetensors(
        os.path.join(out_dir, "reference_zoom.expected.safetensors"),
        {"input": image, "expected": expected},
    )
    print(f"torch {torch.__version__}: reference_zoom.pt, expected {tuple(expected.shape)}")


if __name__ == "__main__":
    main()
