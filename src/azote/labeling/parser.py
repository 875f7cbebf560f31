"""The overlay parser: a small SegFormer that reads the gamepad state off two consecutive overlay crops.

Input. Each video frame's overlay region is warped onto the skin's template grid at `CROP_SCALE` (a crop of
`CROP_W` x `CROP_H` pixels, whatever the overlay's size in the video), and the previous frame's crop and this
frame's crop are placed side by side: one image of `CROP_H` x `2 * CROP_W`. The output is the state of the
right-hand (current) crop; the left one gives the network motion and "what changed" context.

Network. transformers' `SegformerForSemanticSegmentation`, configured small (about 0.4 M parameters) and trained
from scratch on synthetic overlays (`azote.labeling.train`). Its segmentation logits, at a quarter of the input
resolution, have `2 + 17` channels: a "knob is here" channel per stick and a "pressed" channel per button.

Heads, decoded from those logits with the controller family's layout (known once the overlay is located):
- stick: the knob channel is sampled (bilinear) at an 11 x 11 grid of knob positions covering the stick's travel
  in the current crop; a softmax over the 121 cells gives the position classes and the expectation of the cell
  centres gives the sub-cell position in [-1, 1]^2. Trained with cross-entropy against soft targets (the true
  position's bilinear weights over its four nearest cells), so the expectation is unbiased between cells.
- button: the mean of the button's channel over the button's region in the current crop is its logit
  (pressed if > 0); trained with binary cross-entropy.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from azote.gamepad import BUTTONS, NUM_BUTTONS
from azote.labeling import skins as sk

CROP_SCALE = 0.75
CROP_W = int(round(sk.TEMPLATE_W * CROP_SCALE))
CROP_H = int(round(sk.TEMPLATE_H * CROP_SCALE))
GRID = 11  # stick position classes per axis
STRIDE = 4  # SegFormer's logits are at 1/4 of the input
NUM_CHANNELS = 2 + NUM_BUTTONS
WEIGHTS_DIR = Path(__file__).parent / "weights"
FAMILY_INDEX = {f: i for i, f in enumerate(sk.FAMILIES)}


# --- geometry: video frame -> parser crop ----------------------------------------------------------------
def crop_affine(affine: np.ndarray, scale: float = CROP_SCALE) -> np.ndarray:
    """2x3 map from video pixels to crop pixels, given `affine` (template coordinates -> video pixels)."""
    inv = cv2.invertAffineTransform(np.asarray(affine, np.float64))
    return np.array([[scale, 0, 0], [0, scale, 0]], np.float64) @ np.vstack([inv, [0, 0, 1]])


def crop_overlay(frame: np.ndarray, affine: np.ndarray, scale: float = CROP_SCALE) -> np.ndarray:
    """The overlay region of an RGB frame resampled onto the template grid at `scale` ([CROP_H, CROP_W, 3]).

    A large overlay is first shrunk with area averaging (plain bilinear sampling would alias thin outlines)."""
    affine = np.asarray(affine, np.float64)
    size = (int(round(sk.TEMPLATE_W * scale)), int(round(sk.TEMPLATE_H * scale)))
    video_scale = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
    shrink = scale / max(video_scale, 1e-6)
    if shrink < 0.66:
        corners = np.array([[0, 0, 1], [sk.TEMPLATE_W, 0, 1], [0, sk.TEMPLATE_H, 1], [sk.TEMPLATE_W, sk.TEMPLATE_H, 1]],
                           np.float64) @ affine.T
        h, w = frame.shape[:2]
        x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 4
        x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 4
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 - x0 >= 4 and y1 - y0 >= 4:
            region = frame[y0:y1, x0:x1]
            rw, rh = max(1, int(round((x1 - x0) * shrink * 1.25))), max(1, int(round((y1 - y0) * shrink * 1.25)))
            small = cv2.resize(region, (rw, rh), interpolation=cv2.INTER_AREA)
            fx, fy = rw / (x1 - x0), rh / (y1 - y0)
            # template -> small-region pixels (pixel-centre convention of cv2.resize)
            to_small = np.array([[fx, 0, -x0 * fx + 0.5 * fx - 0.5], [0, fy, -y0 * fy + 0.5 * fy - 0.5]])
            affine = to_small @ np.vstack([affine, [0, 0, 1]])
            frame = small
    return cv2.warpAffine(frame, crop_affine(affine, scale), size, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def region_rgb(frame: Any, box: tuple[int, int, int, int]) -> np.ndarray:
    """RGB pixels of `box` (x0, y0, x1, y1; even numbers) of a decoded frame. For 4:2:0 video only the box is
    converted from YUV (the whole frame's conversion costs more than the rest of labelling a frame)."""
    x0, y0, x1, y1 = box
    h, w = frame.height, frame.width
    if frame.format.name != "yuv420p" or h % 2 or w % 2 or (x0 | y0 | x1 | y1) & 1:
        return frame.to_ndarray(format="rgb24")[y0:y1, x0:x1]
    flat = frame.to_ndarray().reshape(-1)  # the three planes one after the other
    a = flat[:h * w].reshape(h, w)
    u = flat[h * w:h * w + h * w // 4].reshape(h // 2, w // 2)
    v = flat[h * w + h * w // 4:h * w + h * w // 2].reshape(h // 2, w // 2)
    i420 = np.concatenate([a[y0:y1, x0:x1].ravel(), u[y0 // 2:y1 // 2, x0 // 2:x1 // 2].ravel(),
                           v[y0 // 2:y1 // 2, x0 // 2:x1 // 2].ravel()]).reshape((y1 - y0) * 3 // 2, x1 - x0)
    return cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)


def placement_affine(x: float, y: float, scale: float) -> np.ndarray:
    """Template -> video pixels for an overlay drawn at `scale` with its top-left corner at (x, y)."""
    return np.array([[scale, 0, x], [0, scale, y]], np.float64)


# --- layout tensors ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Readout:
    """Where each head reads the logits of the current (right-hand) crop, per family: `grids` [F, 2, G*G, 2]
    in grid_sample's normalised coordinates of the whole logit map, `masks` [F, 17, h, w] normalised button
    regions over the whole logit map, `cells` [G*G, 2] the stick value at each cell."""

    grids: torch.Tensor
    masks: torch.Tensor
    cells: torch.Tensor


def logit_size(crop_h: int = CROP_H, crop_w: int = CROP_W) -> tuple[int, int]:
    """SegFormer's first patch embedding (kernel 7, stride 4, padding 3) sets the logit map's size."""
    return (crop_h + 2 * 3 - 7) // STRIDE + 1, (2 * crop_w + 2 * 3 - 7) // STRIDE + 1


@lru_cache(maxsize=4)
def readout(crop_h: int = CROP_H, crop_w: int = CROP_W, scale: float = CROP_SCALE) -> Readout:
    lh, lw = logit_size(crop_h, crop_w)
    values = np.linspace(-1.0, 1.0, GRID)
    vx, vy = np.meshgrid(values, values)  # row-major: cell k = (row y, column x)
    cells = np.stack([vx.ravel(), vy.ravel()], axis=1)
    grids = np.zeros((len(sk.FAMILIES), 2, GRID * GRID, 2), np.float32)
    masks = np.zeros((len(sk.FAMILIES), NUM_BUTTONS, lh, lw), np.float32)
    # a logit pixel j covers input pixels [4j, 4j + 4) shifted by the patch embedding's padding: centre 4j + 0.5
    ly = (np.arange(lh) * STRIDE + 0.5)[:, None]
    lx = (np.arange(lw) * STRIDE + 0.5)[None, :]
    for f, family in enumerate(sk.FAMILIES):
        lay = sk.layout(family)
        for s, stick in enumerate(("j_left", "j_right")):
            cx, cy, r = lay.wells[stick]
            travel = r * sk.STICK_TRAVEL
            px = (cx + cells[:, 0] * travel) * scale + crop_w  # input pixels of the right-hand crop
            py = (cy + cells[:, 1] * travel) * scale
            # input pixel u sits at logit coordinate (u - 0.5) / 4; grid_sample (align_corners=False) wants
            # (coordinate + 0.5) / size * 2 - 1
            grids[f, s, :, 0] = ((px - 0.5) / STRIDE + 0.5) / lw * 2 - 1
            grids[f, s, :, 1] = ((py - 0.5) / STRIDE + 0.5) / lh * 2 - 1
        for j, name in enumerate(BUTTONS):
            x0, y0, x1, y1 = (v * scale for v in lay.buttons[name])
            x0, x1 = x0 + crop_w, x1 + crop_w
            m = ((lx >= x0 - 1) & (lx <= x1 + 1) & (ly >= y0 - 1) & (ly <= y1 + 1)).astype(np.float32)
            if m.sum() == 0:  # a tiny button: the nearest logit pixel
                cxp, cyp = (x0 + x1) / 2, (y0 + y1) / 2
                m[int(np.clip(round((cyp - 0.5) / STRIDE), 0, lh - 1)), int(np.clip(round((cxp - 0.5) / STRIDE), 0, lw - 1))] = 1
            masks[f, j] = m / m.sum()
    return Readout(torch.from_numpy(grids), torch.from_numpy(masks), torch.from_numpy(cells.astype(np.float32)))


def layout_fingerprint() -> str:
    """A hash of every family's layout and the stick travel: weights trained for other layouts are refused."""
    data = {f: asdict(sk.layout(f)) | {"round_buttons": sorted(sk.layout(f).round_buttons)} for f in sk.FAMILIES}
    data["_"] = {"travel": sk.STICK_TRAVEL, "template": [sk.TEMPLATE_W, sk.TEMPLATE_H], "crop_scale": CROP_SCALE}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --- model -------------------------------------------------------------------------------------------------
@dataclass
class ParserConfig:
    hidden_sizes: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    depths: list[int] = field(default_factory=lambda: [1, 1, 1, 1])
    num_attention_heads: list[int] = field(default_factory=lambda: [1, 1, 2, 4])
    sr_ratios: list[int] = field(default_factory=lambda: [8, 4, 2, 1])
    decoder_hidden_size: int = 32
    crop_scale: float = CROP_SCALE
    layout: str = ""  # layout_fingerprint() of the skins the weights were trained on

    def segformer(self) -> Any:
        from transformers import SegformerConfig

        return SegformerConfig(num_channels=3, num_encoder_blocks=4, depths=self.depths, sr_ratios=self.sr_ratios,
                               hidden_sizes=self.hidden_sizes, patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2],
                               num_attention_heads=self.num_attention_heads, mlp_ratios=[4, 4, 4, 4],
                               decoder_hidden_size=self.decoder_hidden_size, num_labels=NUM_CHANNELS,
                               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                               classifier_dropout_prob=0.0, drop_path_rate=0.0)


class OverlayParser(torch.nn.Module):
    """SegFormer + the stick and button readouts. `forward(pairs, family)` -> (stick_logits [B, 2, 121],
    button_logits [B, 17])."""

    def __init__(self, config: ParserConfig | None = None) -> None:
        super().__init__()
        from transformers import SegformerForSemanticSegmentation

        self.config = config or ParserConfig()
        self.segformer = SegformerForSemanticSegmentation(self.config.segformer())
        r = readout()
        self.register_buffer("grids", r.grids, persistent=False)
        self.register_buffer("masks", r.masks, persistent=False)
        self.register_buffer("cells", r.cells, persistent=False)
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1) * 255, persistent=False)

    def logits(self, pairs: torch.Tensor) -> torch.Tensor:
        """pairs: uint8 or float [B, H, 2W, 3] (NHWC, 0..255) -> segmentation logits [B, 19, h, w]."""
        x = pairs.permute(0, 3, 1, 2).float()
        x = (x - self.mean) / self.std
        return self.segformer(pixel_values=x).logits

    def forward(self, pairs: torch.Tensor, family: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.logits(pairs)
        b = logits.shape[0]
        grids = self.grids[family]  # [B, 2, G*G, 2]
        knob = logits[:, :2]  # [B, 2, h, w]: sample each stick's channel at its own grid
        sticks = F.grid_sample(knob.reshape(b * 2, 1, *knob.shape[2:]), grids.reshape(b * 2, 1, -1, 2),
                               mode="bilinear", align_corners=False).reshape(b, 2, -1)
        buttons = (logits[:, 2:] * self.masks[family]).sum(dim=(2, 3))
        return sticks, buttons

    def decode(self, stick_logits: torch.Tensor, button_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """Sticks [B, 2, 2] (expectation over the cells), their class probabilities [B, 2, 121] and button
        probabilities [B, 17]."""
        p = stick_logits.softmax(dim=-1)
        return {"sticks": p @ self.cells, "stick_probs": p, "buttons": button_logits.sigmoid()}


def stick_targets(sticks: torch.Tensor) -> torch.Tensor:
    """Soft class targets [..., 121] for stick values [..., 2]: bilinear weights over the 4 nearest cells."""
    u = (sticks.clamp(-1, 1) + 1) / 2 * (GRID - 1)  # cell coordinates 0..G-1
    i0 = u.floor().clamp(0, GRID - 2)
    frac = u - i0
    out = torch.zeros(*sticks.shape[:-1], GRID * GRID, dtype=sticks.dtype, device=sticks.device)
    for dy in (0, 1):
        for dx in (0, 1):
            wx = frac[..., 0] if dx else 1 - frac[..., 0]
            wy = frac[..., 1] if dy else 1 - frac[..., 1]
            idx = ((i0[..., 1] + dy) * GRID + (i0[..., 0] + dx)).long()
            out.scatter_add_(-1, idx.unsqueeze(-1), (wx * wy).unsqueeze(-1))
    return out


def parser_loss(model: OverlayParser, pairs: torch.Tensor, family: torch.Tensor, sticks: torch.Tensor,
                buttons: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    stick_logits, button_logits = model(pairs, family)
    target = stick_targets(sticks)
    l_stick = -(target * stick_logits.log_softmax(-1)).sum(-1).mean()
    l_button = F.binary_cross_entropy_with_logits(button_logits, buttons.float())
    with torch.no_grad():
        pred = model.decode(stick_logits, button_logits)
        stick_mae = (pred["sticks"] - sticks).abs().mean().item()
        button_acc = ((pred["buttons"] > 0.5) == (buttons > 0.5)).float().mean().item()
    return l_stick + 2.0 * l_button, {"stick_ce": l_stick.item(), "button_bce": l_button.item(),
                                      "stick_mae": stick_mae, "button_acc": button_acc}


# --- weights -----------------------------------------------------------------------------------------------
def save_parser(model: OverlayParser, directory: str | Path) -> Path:
    """`parser.json` + `parser.safetensors` (written to temporary names, then renamed)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp_w, tmp_c = directory / ".parser.safetensors.tmp", directory / ".parser.json.tmp"
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(tmp_w))
    tmp_c.write_text(json.dumps(asdict(model.config), indent=1))
    tmp_w.replace(directory / "parser.safetensors")
    tmp_c.replace(directory / "parser.json")
    return directory


class WeightsError(RuntimeError):
    """Parser weights that are missing or do not fit the skins' layouts."""


def load_parser(directory: str | Path | None = None, check_layout: bool = True) -> OverlayParser:
    """The parser from `directory` (default: the weights shipped in the package), in eval mode."""
    from safetensors.torch import load_file

    directory = Path(directory) if directory else WEIGHTS_DIR
    cfg_path, w_path = directory / "parser.json", directory / "parser.safetensors"
    if not cfg_path.is_file() or not w_path.is_file():
        raise WeightsError(f"{directory}: parser.json and parser.safetensors are needed (train them with "
                           "`azote label-train`)")
    try:
        raw = json.loads(cfg_path.read_text())
        cfg = ParserConfig(**raw)
    except (json.JSONDecodeError, TypeError) as exc:
        raise WeightsError(f"{cfg_path}: not a parser configuration ({exc})") from None
    if check_layout and cfg.layout and cfg.layout != layout_fingerprint():
        raise WeightsError(f"{cfg_path}: layout: the weights were trained for skin layouts {cfg.layout}, the skins "
                           f"now have {layout_fingerprint()}; retrain with `azote label-train`")
    model = OverlayParser(cfg)
    missing, unexpected = model.load_state_dict(load_file(str(w_path)), strict=False)
    if missing or unexpected:
        raise WeightsError(f"{w_path}: tensors missing {missing[:3]} / unexpected {unexpected[:3]}")
    return model.eval()


@torch.inference_mode()
def parse_pairs(model: OverlayParser, crops: np.ndarray, previous: np.ndarray, family: str | int,
                batch_size: int = 64) -> dict[str, np.ndarray]:
    """Parses frames: `crops` [N, h, w, 3] and the crop before each one `previous` [N, h, w, 3] -> sticks
    [N, 2, 2], stick class probabilities [N, 2, 121], button probabilities [N, 17]."""
    f = FAMILY_INDEX[family] if isinstance(family, str) else int(family)
    out: dict[str, list[np.ndarray]] = {"sticks": [], "stick_probs": [], "buttons": []}
    for s in range(0, len(crops), batch_size):
        pairs = torch.from_numpy(np.concatenate([previous[s:s + batch_size], crops[s:s + batch_size]], axis=2))
        fam = torch.full((len(pairs),), f, dtype=torch.long)
        dec = model.decode(*model(pairs, fam))
        for k in out:
            out[k].append(dec[k].numpy())
    if not len(crops):
        return {"sticks": np.zeros((0, 2, 2), np.float32), "stick_probs": np.zeros((0, 2, GRID * GRID), np.float32),
                "buttons": np.zeros((0, NUM_BUTTONS), np.float32)}
    return {k: np.concatenate(v) for k, v in out.items()}
