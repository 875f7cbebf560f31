"""The overlay parser: reads the gamepad state off a controller overlay whose layout it is not told.

Input. The overlay's box (located in the video) is letterboxed into a crop of `CROP` pixels; three crops are
stacked as 9 channels: the video's reference look of the overlay (the per-pixel median of frames sampled across
the video: mostly at rest), the previous frame and the current frame. The difference to the reference says what
is pressed, whatever the skin's style; the previous frame adds motion.

Network (stage A). A small SegFormer encoder (transformers `SegformerModel`, trained from scratch) and an all-MLP
decoder give maps at a quarter of the crop's resolution:
- `region` (17 channels): where each button is drawn (the layout);
- `pressed` (1): where a pressed button is drawn, whichever button it is (the look of "pressed" is learned once
  for every button, whatever the skin);
- `centre` (2): a peak at each stick's knob rest position; `travel` (2): the stick's travel there, in crop pixels;
and from pooled features the controller family and whether each stick exists. The layout maps do not change
within a video, so they are averaged over frames; a button's probability is the `pressed` map averaged over the
button's (video-level) region. For a known preset the regions come from the preset instead.

Sticks (stage B). Around each stick's rest position, a square patch of the full-resolution frame is taken at a
scale where one unit of travel is `PATCH_TRAVEL` pixels (again reference, previous and current: 9 channels). A
small convolutional network turns it into a knob heatmap, sampled on an 11 x 11 grid of knob positions spanning
+-`GRID_SPAN` travel units; a softmax over the 121 cells gives the position classes and their expectation the
sub-cell position, trained with cross-entropy against soft (bilinear) targets.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from azote.errors import AzoteError
from azote.gamepad import BUTTONS, NUM_BUTTONS
from azote.labeling.presets import FAMILIES

CROP = (160, 104)  # (W, H) of the overlay crop
MARGIN = 0.1  # the box is grown by this share of its size on every side before letterboxing
STRIDE = 4
MAP = ((CROP[1] + 2 * 3 - 7) // STRIDE + 1, (CROP[0] + 2 * 3 - 7) // STRIDE + 1)  # (h, w) of the maps
PATCH = 48  # stick patch, pixels
PATCH_TRAVEL = 7.0  # patch pixels per unit of (estimated) travel
GRID = 11  # stick position classes per axis
GRID_SPAN = 1.3  # the grid spans +-GRID_SPAN units of estimated travel
TRAVEL_UNIT = 8.0  # crop pixels per unit of the travel map
N_REGION, N_PRESSED = NUM_BUTTONS, 1
CHANNELS = N_REGION + N_PRESSED + 2 + 2
WEIGHTS_DIR = Path(__file__).parent / "weights"
FAMILY_INDEX = {f: i for i, f in enumerate(FAMILIES)}
ARCH = 4  # bumped when the network's inputs or outputs change meaning


class WeightsError(AzoteError, RuntimeError):
    """Parser weights that are missing or were made for another network."""


@dataclass
class ParserConfig:
    hidden_sizes: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    depths: list[int] = field(default_factory=lambda: [1, 1, 2, 1])
    num_attention_heads: list[int] = field(default_factory=lambda: [1, 1, 2, 4])
    sr_ratios: list[int] = field(default_factory=lambda: [8, 4, 2, 1])
    decoder_hidden_size: int = 32
    stick_channels: list[int] = field(default_factory=lambda: [16, 24, 32])
    arch: int = ARCH

    def segformer(self) -> Any:
        from transformers import SegformerConfig

        return SegformerConfig(num_channels=9, num_encoder_blocks=4, depths=self.depths, sr_ratios=self.sr_ratios,
                               hidden_sizes=self.hidden_sizes, patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2],
                               num_attention_heads=self.num_attention_heads, mlp_ratios=[4, 4, 4, 4],
                               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, drop_path_rate=0.0)


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
                               torch.nn.BatchNorm2d(cout), torch.nn.ReLU(inplace=True))


class StickNet(torch.nn.Module):
    """9-channel patch [B, 9, PATCH, PATCH] -> knob heatmap logits [B, 1, PATCH / 2, PATCH / 2]: a small encoder to
    an eighth of the patch (to see the whole knob) and back up to a half (where it is read, bilinearly)."""

    def __init__(self, ch: list[int]) -> None:
        super().__init__()
        a, b, c = ch
        self.enc2 = torch.nn.Sequential(_conv(9, a, 2), _conv(a, a))
        self.enc4 = torch.nn.Sequential(_conv(a, b, 2), _conv(b, b))
        self.enc8 = torch.nn.Sequential(_conv(b, c, 2), _conv(c, c, dilation=2))
        self.dec4 = _conv(b + c, b)
        self.dec2 = _conv(a + b, a)
        self.head = torch.nn.Conv2d(a, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e2 = self.enc2(x)
        e4 = self.enc4(e2)
        e8 = self.enc8(e4)
        d4 = self.dec4(torch.cat([e4, F.interpolate(e8, size=e4.shape[2:], mode="bilinear", align_corners=False)], 1))
        d2 = self.dec2(torch.cat([e2, F.interpolate(d4, size=e2.shape[2:], mode="bilinear", align_corners=False)], 1))
        return self.head(d2)


def grid_points() -> torch.Tensor:
    """[G*G, 2]: the stick value (x, y) of each cell, row-major (cell k = row y, column x), in travel units."""
    v = torch.linspace(-GRID_SPAN, GRID_SPAN, GRID)
    vy, vx = torch.meshgrid(v, v, indexing="ij")
    return torch.stack([vx.reshape(-1), vy.reshape(-1)], 1)


class OverlayParser(torch.nn.Module):
    def __init__(self, config: ParserConfig | None = None) -> None:
        super().__init__()
        from transformers import SegformerModel

        self.config = config or ParserConfig()
        c = self.config
        self.encoder = SegformerModel(c.segformer())
        d = c.decoder_hidden_size
        self.proj = torch.nn.ModuleList(torch.nn.Conv2d(h, d, 1) for h in c.hidden_sizes)
        self.fuse = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Conv2d(d, d, 3, padding=1), torch.nn.ReLU())
        self.maps = torch.nn.Conv2d(d, CHANNELS, 1)
        self.globals = torch.nn.Linear(c.hidden_sizes[-1], len(FAMILIES) + 2)  # family, stick presence
        self.stick = StickNet(c.stick_channels)
        self.register_buffer("cells", grid_points(), persistent=False)
        # patch position of each cell in pixel-edge coordinates (the rest position is the patch's middle); the
        # heatmap covers the patch at half its resolution, so the same normalised coordinates read it
        pix = PATCH / 2 + self.cells * PATCH_TRAVEL
        self.register_buffer("cell_grid", (pix / PATCH * 2 - 1).view(1, 1, GRID * GRID, 2), persistent=False)

    @staticmethod
    def _normalise(x: torch.Tensor) -> torch.Tensor:
        """uint8-range NHWC with 9 channels -> NCHW in [-1, 1], stored channels-last (as the loaded parser's
        convolutions are: a third faster on the CPU than contiguous NCHW)."""
        if x.dtype == torch.uint8 and x.device.type == "cpu":  # numpy converts uint8 several times faster
            out = np.multiply(x.numpy(), np.float32(1 / 127.5), dtype=np.float32)
            return torch.from_numpy(np.subtract(out, np.float32(1.0), out=out)).permute(0, 3, 1, 2)
        return x.float().mul_(1 / 127.5).sub_(1.0).permute(0, 3, 1, 2)

    def forward_maps(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """crops [B, H, W, 9] (0..255) -> maps [B, CHANNELS, h, w] and global logits [B, 4 + 2]. The decoder
        sums every stage's projection at a quarter of the crop (SegFormer's all-MLP decoder, summed rather than
        concatenated: the same reach at a third of the cost)."""
        hs = self.encoder(pixel_values=self._normalise(crops), output_hidden_states=True).hidden_states
        size = hs[0].shape[2:]
        y = self.proj[0](hs[0])
        for p, h in zip(self.proj[1:], hs[1:]):
            y = y + F.interpolate(p(h), size=size, mode="bilinear", align_corners=False)
        return self.maps(self.fuse(y)), self.globals(hs[-1].mean(dim=(2, 3)))

    def forward_sticks(self, patches: torch.Tensor) -> torch.Tensor:
        """patches [B, PATCH, PATCH, 9] (0..255) -> stick cell logits [B, G*G]."""
        heat = self.stick(self._normalise(patches))
        b = heat.shape[0]
        return F.grid_sample(heat, self.cell_grid.expand(b, -1, -1, -1), mode="bilinear",
                             align_corners=False).view(b, GRID * GRID)

    def decode_sticks(self, logits: torch.Tensor) -> torch.Tensor:
        """Cell logits [..., G*G] -> stick positions [..., 2] in travel units (expectation over the cells)."""
        return logits.softmax(-1) @ self.cells

    def read_sticks(self, patches: torch.Tensor) -> torch.Tensor:
        """patches [B, PATCH, PATCH, 9] (0..255) -> stick positions [B, 2]: the mean of the patch's reading and of
        its half turn's, turned back. The reader is trained under every flip of the patch (`train.knob_symmetries`)
        but keeps some of its training skins' lighting; the half turn cancels most of what is left (held-out
        shaded skins read up to 0.1 better in correlation) at twice the reader's cost, about 7% of zero-shot
        labelling."""
        turned = torch.flip(patches, dims=(1, 2))
        both = self.decode_sticks(self.forward_sticks(torch.cat([patches, turned])))
        return (both[: len(patches)] - both[len(patches):]) / 2


# --- reading the maps --------------------------------------------------------------------------------------------
@dataclass
class LayoutEstimate:
    """The overlay's layout in crop coordinates: per button a normalised weight map over the parser's map grid
    (None: the skin has no such button), per stick its rest position and travel in crop pixels (None: no stick)."""

    weights: np.ndarray  # [17, h, w] float32; rows of absent buttons are 0
    present: np.ndarray  # [17] bool
    sticks: list[tuple[float, float, float] | None]  # (cx, cy, travel) in crop pixels
    family: str
    family_probs: np.ndarray


def map_pixel_centres() -> tuple[np.ndarray, np.ndarray]:
    """Crop-pixel coordinates (x, y) of each map pixel's centre: the patch embedding (kernel 7, stride 4, padding
    3) centres map pixel j on crop pixel 4j (pixel-centre coordinates, as everywhere in the labeller)."""
    h, w = MAP
    return np.arange(w) * float(STRIDE), np.arange(h) * float(STRIDE)


def boxes_to_masks(boxes: dict[str, list[tuple[float, float, float, float]]]) -> np.ndarray:
    """Button boxes (x0, y0, x1, y1 in crop pixels) -> [17, h, w] uint8 region masks on the map grid (a tiny
    button gets its nearest map pixel)."""
    xs, ys = map_pixel_centres()
    out = np.zeros((NUM_BUTTONS, len(ys), len(xs)), np.uint8)
    for j, name in enumerate(BUTTONS):
        for x0, y0, x1, y1 in boxes.get(name, []):
            m = (xs[None, :] >= x0 - 1) & (xs[None, :] <= x1 + 1) & (ys[:, None] >= y0 - 1) & (ys[:, None] <= y1 + 1)
            if not m.any():
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                if -4 <= cx <= CROP[0] + 4 and -4 <= cy <= CROP[1] + 4:
                    m[int(np.clip(round(cy / STRIDE), 0, len(ys) - 1)), int(np.clip(round(cx / STRIDE), 0, len(xs) - 1))] = True
            out[j] |= m.astype(np.uint8)
    return out


def layout_from_masks(masks: np.ndarray, sticks: list[tuple[float, float, float] | None], family: str) -> LayoutEstimate:
    present = masks.reshape(NUM_BUTTONS, -1).max(axis=1) > 0
    # a map pixel inside two buttons' regions lights up when either is pressed: read each button where it is
    # alone (all of its region when it has no such pixel)
    shared = masks.astype(np.int32).sum(0) > 1
    alone = (masks > 0) & ~shared[None]
    keep = alone.reshape(NUM_BUTTONS, -1).any(axis=1)
    w = np.where(keep[:, None, None], alone, masks > 0).astype(np.float32)
    w /= np.maximum(w.reshape(NUM_BUTTONS, -1).sum(axis=1), 1.0)[:, None, None]
    probs = np.eye(len(FAMILIES), dtype=np.float32)[FAMILY_INDEX[family]]
    return LayoutEstimate(w, present, sticks, family, probs)


def layout_from_maps(maps: torch.Tensor, glob: torch.Tensor, threshold: float = 0.5) -> LayoutEstimate:
    """The video-level layout from stage A's outputs on several frames ([N, C, h, w], [N, 6]): maps and logits
    averaged over the frames, a button present where its region probability peaks above `threshold`."""
    with torch.no_grad():
        m = maps.float().mean(0)
        g = glob.float().mean(0)
        region = torch.sigmoid(m[:N_REGION])
        peak = region.flatten(1).max(1).values
        present = peak > threshold
        # the region: where the probability is at least half its peak (sharper than the raw map)
        w = region * (region >= 0.5 * peak[:, None, None])
        w = w / w.flatten(1).sum(1).clamp_min(1e-6)[:, None, None]
        w[~present] = 0
        fam = g[:len(FAMILIES)].softmax(0)
        has_stick = torch.sigmoid(g[len(FAMILIES):]) > 0.5
        xs, ys = (torch.from_numpy(a).float() for a in map_pixel_centres())
        sticks: list[tuple[float, float, float] | None] = []
        for s in range(2):
            c = m[N_REGION + N_PRESSED + s]
            p = c.flatten().softmax(0).view_as(c)
            cx, cy = float((p.sum(0) * xs).sum()), float((p.sum(1) * ys).sum())
            travel = float((p * m[N_REGION + N_PRESSED + 2 + s]).sum()) * TRAVEL_UNIT
            sticks.append((cx, cy, max(travel, 0.5)) if has_stick[s] else None)
    return LayoutEstimate(w.numpy(), present.numpy(), sticks, FAMILIES[int(fam.argmax())], fam.numpy())


def button_probs(maps: torch.Tensor, layout: LayoutEstimate) -> torch.Tensor:
    """[B, C, h, w] maps -> [B, 17] button probabilities: the pressed map averaged over each button's region."""
    w = torch.from_numpy(layout.weights).to(maps.device)
    return (torch.sigmoid(maps[:, N_REGION:N_REGION + 1]) * w).sum(dim=(2, 3))


def still_inputs(ref: np.ndarray, images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
    """The parser's inputs [N, H, W, 9] for images read on their own: the reference, then each image as its own
    previous frame and as the current one."""
    x = np.empty((len(images),) + ref.shape[:2] + (9,), np.uint8)
    x[..., :3] = ref
    for i, im in enumerate(images):
        x[i, ..., 3:6] = im
        x[i, ..., 6:] = im
    return torch.from_numpy(x)


@torch.inference_mode()
def still_button_probs(model: "OverlayParser", ref: np.ndarray, crops: Sequence[np.ndarray],
                       layout: LayoutEstimate, batch_size: int = 64) -> np.ndarray:
    """[N, 17] button probabilities of crops each read on its own (`still_inputs`), in batches."""
    return np.concatenate([button_probs(model.forward_maps(still_inputs(ref, crops[k:k + batch_size]))[0],
                                        layout).numpy() for k in range(0, len(crops), batch_size)]
                          or [np.zeros((0, NUM_BUTTONS), np.float32)])


# --- training losses ---------------------------------------------------------------------------------------------
def stick_targets(values: torch.Tensor) -> torch.Tensor:
    """Soft class targets [..., G*G] for knob positions [..., 2] in travel units: bilinear weights over the four
    nearest cells (positions beyond the grid are clamped to its edge)."""
    u = (values.clamp(-GRID_SPAN, GRID_SPAN) + GRID_SPAN) / (2 * GRID_SPAN) * (GRID - 1)
    i0 = u.floor().clamp(0, GRID - 2)
    frac = u - i0
    out = torch.zeros(*values.shape[:-1], GRID * GRID, dtype=values.dtype, device=values.device)
    for dy in (0, 1):
        for dx in (0, 1):
            wx = frac[..., 0] if dx else 1 - frac[..., 0]
            wy = frac[..., 1] if dy else 1 - frac[..., 1]
            idx = ((i0[..., 1] + dy) * GRID + (i0[..., 0] + dx)).long()
            out.scatter_add_(-1, idx.unsqueeze(-1), (wx * wy).unsqueeze(-1))
    return out


def centre_targets(centres: torch.Tensor, sigma: float = 1.2) -> torch.Tensor:
    """[B, 2, 2] rest positions (crop pixels) -> [B, 2, h, w] normalised Gaussian targets on the map grid."""
    xs, ys = (torch.from_numpy(a).float().to(centres.device) for a in map_pixel_centres())
    dx = (xs[None, None, None, :] - centres[..., 0, None, None]) / STRIDE
    dy = (ys[None, None, :, None] - centres[..., 1, None, None]) / STRIDE
    g = torch.exp(-(dx ** 2 + dy ** 2) / (2 * sigma ** 2))
    return g / g.flatten(2).sum(-1).clamp_min(1e-9)[..., None, None]


def parser_loss(model: OverlayParser, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Every head's loss on one batch (see `azote.labeling.synth` for the batch's fields)."""
    maps, glob = model.forward_maps(batch["crops"])
    masks = batch["masks"].float()  # [B, 17, h, w]
    pressed = batch["buttons"].float()  # [B, 17]
    present = (masks.flatten(2).amax(-1) > 0).float()
    region, press = maps[:, :N_REGION], maps[:, N_REGION:N_REGION + 1]
    l_region = F.binary_cross_entropy_with_logits(region, masks, pos_weight=torch.tensor(4.0))
    target_pix = (masks * pressed[..., None, None]).amax(1, keepdim=True)
    l_press_pix = F.binary_cross_entropy_with_logits(press, target_pix, pos_weight=torch.tensor(3.0))
    w = masks / masks.flatten(2).sum(-1).clamp_min(1.0)[..., None, None]
    prob = (torch.sigmoid(press) * w).sum(dim=(2, 3)).clamp(1e-5, 1 - 1e-5)
    l_press = (F.binary_cross_entropy(prob, pressed, reduction="none") * present).sum() / present.sum().clamp_min(1)
    has = batch["has_stick"].float()  # [B, 2]
    c_logits = maps[:, N_REGION + N_PRESSED:N_REGION + N_PRESSED + 2]
    c_target = centre_targets(batch["centres"])
    l_centre = (-(c_target * c_logits.flatten(2).log_softmax(-1).view_as(c_logits)).sum(dim=(2, 3)) * has).sum() \
        / has.sum().clamp_min(1)
    t_map = maps[:, N_REGION + N_PRESSED + 2:N_REGION + N_PRESSED + 4]
    t_pred = (t_map * c_target).sum(dim=(2, 3))
    l_travel = ((t_pred - batch["travel"] / TRAVEL_UNIT).abs() * has).sum() / has.sum().clamp_min(1)
    l_family = F.cross_entropy(glob[:, :len(FAMILIES)], batch["family"])
    l_has = F.binary_cross_entropy_with_logits(glob[:, len(FAMILIES):], has)
    loss = l_region + 2 * l_press_pix + 2 * l_press + 0.5 * l_centre + l_travel + 0.2 * l_family + 0.2 * l_has
    parts = {"region": l_region.item(), "press_pix": l_press_pix.item(), "press": l_press.item(),
             "centre": l_centre.item(), "travel": l_travel.item(), "family": l_family.item()}
    if "patches" in batch:
        l_stick, stick_parts = stick_loss(model, batch)
        loss = loss + l_stick
        parts.update(stick_parts)
    with torch.no_grad():
        acc = (((prob > 0.5).float() == pressed).float() * present).sum() / present.sum().clamp_min(1)
        parts["button_acc"] = acc.item()
    return loss, parts


def stick_loss(model: OverlayParser, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """The stick reader's loss alone (cross-entropy against the knob's soft grid cell) on a batch's patches."""
    ok = batch["patch_ok"].bool()
    if not ok.any():
        return batch["knob"].new_zeros(()), {}
    logits = model.forward_sticks(batch["patches"][ok])
    l_stick = -(stick_targets(batch["knob"][ok]) * logits.log_softmax(-1)).sum(-1).mean()
    with torch.no_grad():
        mae = (model.decode_sticks(logits) - batch["knob"][ok]).abs().mean().item()
    return l_stick, {"stick": l_stick.item(), "stick_mae": mae}


# --- weights -----------------------------------------------------------------------------------------------------
def save_parser(model: OverlayParser, directory: str | Path, extra: dict | None = None) -> Path:
    """`parser.json` + `parser.safetensors` (written to temporary names, then renamed)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp_w, tmp_c = directory / ".parser.safetensors.tmp", directory / ".parser.json.tmp"
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(tmp_w))
    tmp_c.write_text(json.dumps({**asdict(model.config), **({"about": extra} if extra else {})}, indent=1))
    tmp_w.replace(directory / "parser.safetensors")
    tmp_c.replace(directory / "parser.json")
    return directory


def load_parser(directory: str | Path | None = None) -> OverlayParser:
    """The parser from `directory` (default: the weights shipped in the package), in eval mode."""
    from safetensors.torch import load_file

    directory = Path(directory) if directory else WEIGHTS_DIR
    cfg_path, w_path = directory / "parser.json", directory / "parser.safetensors"
    if not cfg_path.is_file() or not w_path.is_file():
        raise WeightsError(f"{directory}: parser.json and parser.safetensors are needed (train them with "
                           "`azote label-train`)")
    from azote.safeload import JsonFileError, read_json

    try:
        raw = read_json(cfg_path, 1 << 16)
    except JsonFileError as exc:
        raise WeightsError(str(exc)) from None
    try:
        if not isinstance(raw, dict):
            raise TypeError("not a JSON object")
        raw.pop("about", None)
        cfg = ParserConfig(**raw)
        if cfg.arch != ARCH:
            raise TypeError(f"arch {cfg.arch}, this version reads arch {ARCH}")
        # SegFormer has four stages; bounded sizes, so a hostile file cannot make building the network take long
        for v, n in ((cfg.hidden_sizes, 4), (cfg.depths, 4), (cfg.num_attention_heads, 4), (cfg.sr_ratios, 4),
                     (cfg.stick_channels, 3)):
            if not (isinstance(v, list) and len(v) == n and all(type(i) is int and 0 < i <= 1024 for i in v)):
                raise TypeError(f"bad size list {v if len(str(v)) < 80 else str(v)[:80] + '...'}")
        if max(cfg.depths) > 16:
            raise TypeError(f"depths {cfg.depths}: at most 16 blocks a stage")
        if type(cfg.decoder_hidden_size) is not int or not 0 < cfg.decoder_hidden_size <= 1024:
            raise TypeError("bad decoder_hidden_size")
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{cfg_path}: not a parser configuration of this version ({exc}); retrain with "
                           "`azote label-train`") from None
    model = OverlayParser(cfg)
    try:
        state = load_file(str(w_path))
    except Exception as exc:  # safetensors raises several kinds for a damaged file
        raise WeightsError(f"{w_path}: cannot read the weights ({exc})") from None
    own = model.state_dict()
    bad = [k for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    if bad or missing or unexpected:
        raise WeightsError(f"{w_path}: tensors missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}, "
                           f"wrong shape {bad[:3]}")
    model.load_state_dict(state)
    return model.to(memory_format=torch.channels_last).eval()


def load_parser_copy(model: OverlayParser) -> OverlayParser:
    """An independent copy of `model` (for fine-tuning without touching the original)."""
    copy = OverlayParser(ParserConfig(**asdict(model.config)))
    copy.load_state_dict(model.state_dict())
    return copy.to(memory_format=torch.channels_last)
