"""Text-to-image diffusion: a diffusers ``UNet2DConditionModel`` + LoRA on its attention projections.

Per-sample loss (documented so that gradients are deterministic): for a sample with stable id
``uid`` (the data source's ``uid`` column), K = ``model.options.noise_draws`` pairs (timestep t_k,
noise eps_k) are drawn from a generator seeded by ``sha256(noise_seed, uid)`` (``draws: per_sample``,
the default) or by ``sha256(noise_seed, "shared")`` (``draws: shared``: every sample sees the same K
draws, so gradients differ only through image and prompt); the loss is

    L = (1/K) sum_k mean( (eps_theta(x_t_k, t_k, c) - eps_k)^2 ),  x_t_k = sqrt(abar_t_k) x_0 + sqrt(1 - abar_t_k) eps_k

(``v`` targets instead of eps for v-prediction schedulers). The draws are made in ``encode`` and
travel with the sample, so the loss (and its gradient) is the same in any batch, split or process.
The model batch holds K rows per sample (``rows_per_sample = K``); the gradient engine sums them.
This fixed loss is used whenever the model is in eval mode (validation loss, gradients). In train mode
(fine-tuning) each step draws one fresh (t, eps) per sample from the torch generator, as in standard
diffusion training (``train_draws: fresh``, seeded through the run seed), unless ``train_draws: fixed``.

Models (``model.name_or_path``):

* ``tiny:unet`` -- offline default: a small random-initialised UNet on pixel space (x_0 = the image
  upsampled to ``resolution``, scaled to [-1, 1]; no VAE) conditioned on a small frozen random
  ``CLIPTextModel`` built from ``CLIPTextConfig`` over the offline WordPiece tokenizer; a
  ``DDPMScheduler`` with 1000 steps.
* a diffusers pipeline id or folder (paper: ``stable-diffusion-v1-5/stable-diffusion-v1-5``): its
  ``unet``, ``vae`` (x_0 = the latent mean times the VAE scaling factor), ``text_encoder``,
  ``tokenizer`` and ``scheduler`` subfolders.

The text encoder and VAE are frozen and run in ``encode`` (on CUDA when available); only the UNet's
LoRA matrices are trainable, and every LoRA target must be an ``nn.Linear`` (``to_q``, ``to_k``,
``to_v``, ``to_out.0``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from inflbench.errors import ConfigError
from inflbench.models.base import Batch, ModelFamily, resolve_pretrained
from inflbench.models.causal_lm import check_lora_targets
from inflbench.schemas import resolve_options

log = logging.getLogger("inflbench")

TINY = "tiny:unet"
TINY_UNET = {"sample_size": 16, "block_out_channels": [32, 64], "layers_per_block": 1,
             # attention only at the 8x8 level and in the mid block: most of the cost of attention at 16x16 saved
             "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
             "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "cross_attention_dim": 32,
             "attention_head_dim": 4, "norm_num_groups": 32}
TINY_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}


def draw_seed(noise_seed: int, uid: str) -> int:
    """63-bit generator seed of one sample's noise draws."""
    return int.from_bytes(hashlib.sha256(f"{noise_seed}/{uid}".encode()).digest()[:8], "little") >> 1


class DiffusionUNet(ModelFamily):
    name = "diffusion_unet"

    def __init__(self, cfg: dict, num_labels: int | None = None):
        super().__init__(cfg, num_labels)
        if importlib.util.find_spec("diffusers") is None:
            raise ConfigError("model.family", "diffusion_unet needs diffusers: pip install 'inflbench[diffusion]'")
        self.options = self.resolve_options(cfg)
        self.rows_per_sample = int(self.options["noise_draws"])

    # ------------------------------------------------------------------ config

    @staticmethod
    def resolve_options(cfg: dict) -> dict:
        """``model.options`` with the defaults of schemas/model_options/diffusion_unet.schema.yaml."""
        return resolve_options("model", "diffusion_unet", cfg.get("options"))

    @property
    def is_tiny(self) -> bool:
        return self.cfg["name_or_path"] == TINY

    def _unet_config(self) -> dict:
        fields = {**TINY_UNET, **self.options["tiny_unet"]}
        channels = self.options["channels"]
        return {**fields, "sample_size": self.options["resolution"], "in_channels": channels, "out_channels": channels}

    def _new_tiny_unet(self):
        from diffusers import UNet2DConditionModel

        fields = self._unet_config()
        text_dim = {**TINY_TEXT, **self.options["tiny_text_encoder"]}["hidden_size"]
        if fields.get("cross_attention_dim") != text_dim:
            raise ConfigError("model.options.tiny_unet.cross_attention_dim",
                              f"must equal the text encoder's hidden_size ({text_dim})")
        try:
            return UNet2DConditionModel(**fields)
        except (TypeError, ValueError) as exc:
            raise ConfigError("model.options.tiny_unet", f"not a valid UNet2DConditionModel config: {exc}") from None

    def check(self, cfg: dict) -> None:
        """Pre-run checks (called from ``inflbench.config.validate_config``): options and LoRA targets.

        The tiny UNet is instantiated (fast); for a hub model only the UNet config is fetched (skipped
        with a warning when that is not possible offline -- then ``build`` checks).
        """
        targets = list(cfg["model"]["lora"]["target_modules"])
        if self.is_tiny:
            check_lora_targets(self._new_tiny_unet(), targets, "the tiny UNet")
            return
        from accelerate import init_empty_weights
        from diffusers import UNet2DConditionModel

        name = cfg["model"]["name_or_path"]
        try:
            config = UNet2DConditionModel.load_config(resolve_pretrained(name), subfolder="unet")
        except (OSError, ValueError) as exc:
            log.warning("cannot fetch the UNet config of %s (%s); LoRA targets are checked when the model is built",
                        name, str(exc).splitlines()[0])
            return
        with init_empty_weights():
            skeleton = UNet2DConditionModel.from_config(config)
        check_lora_targets(skeleton, targets, f"the UNet of {name}")

    # ------------------------------------------------------------------ frozen parts

    def scheduler(self):
        from diffusers import DDPMScheduler

        if not hasattr(self, "_scheduler"):
            self._scheduler = (DDPMScheduler(num_train_timesteps=1000) if self.is_tiny else
                               DDPMScheduler.from_pretrained(resolve_pretrained(self.cfg["name_or_path"]),
                                                             subfolder="scheduler"))
        return self._scheduler

    def _text_parts(self):
        """(tokenizer, frozen text encoder) -- the tiny encoder is rebuilt identically from its own seed."""
        from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel, CLIPTokenizer

        if hasattr(self, "_text"):
            return self._text
        if self.is_tiny:
            tok = AutoTokenizer.from_pretrained(resolve_pretrained(self.options["tokenizer"]))
            fields = {**TINY_TEXT, **self.options["tiny_text_encoder"],
                      "max_position_embeddings": self.options["prompt_length"], "vocab_size": len(tok),
                      "pad_token_id": tok.pad_token_id, "bos_token_id": tok.cls_token_id,
                      "eos_token_id": tok.sep_token_id}
            state = torch.random.get_rng_state()
            torch.manual_seed(self.options["text_encoder_seed"])
            try:
                encoder = CLIPTextModel(CLIPTextConfig(**fields))
            finally:
                torch.random.set_rng_state(state)
        else:
            name = resolve_pretrained(self.cfg["name_or_path"])
            tok = CLIPTokenizer.from_pretrained(name, subfolder="tokenizer")
            encoder = CLIPTextModel.from_pretrained(name, subfolder="text_encoder")
        self._text = (tok, encoder.eval().requires_grad_(False))
        return self._text

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        tok, encoder = self._text_parts()
        length = self.options["prompt_length"] if self.is_tiny else tok.model_max_length
        device = _frozen_device()
        encoder.to(device)
        out = []
        size = self.options["encode_batch_size"]
        for start in range(0, len(prompts), size):
            enc = tok(prompts[start:start + size], padding="max_length", truncation=True, max_length=length,
                      return_tensors="pt")
            out.append(encoder(input_ids=enc["input_ids"].to(device)).last_hidden_state.float().cpu())
        encoder.to("cpu")  # frees the accelerator for the UNet
        return torch.cat(out)

    def load_pixels(self, refs: list[str]) -> torch.Tensor:
        """Images as (N, channels, resolution, resolution) in [-1, 1]."""
        from inflbench.data.digits import load_image

        res, channels = self.options["resolution"], self.options["channels"]
        images = []
        for ref in refs:
            image = load_image(ref)
            if isinstance(image, np.ndarray):  # digits: (H, W) in [0, 1]
                x = torch.from_numpy(np.asarray(image, np.float32))[None, None]
                x = F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False)[0]
            else:
                image = image.convert("L" if channels == 1 else "RGB")
                w, h = image.size
                side = min(w, h)  # centre crop to a square, then resize
                image = image.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
                from PIL import Image

                image = image.resize((res, res), Image.Resampling.BICUBIC)
                x = torch.from_numpy(np.asarray(image, np.float32) / 255.0)
                x = x[None] if x.dim() == 2 else x.permute(2, 0, 1)
            if x.shape[0] != channels:
                x = x.expand(channels, -1, -1) if x.shape[0] == 1 else x[:channels]
            images.append(x.clamp(0, 1) * 2 - 1)
        return torch.stack(images)

    @torch.no_grad()
    def to_latents(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.is_tiny:
            return pixels
        from diffusers import AutoencoderKL

        if not hasattr(self, "_vae"):
            self._vae = AutoencoderKL.from_pretrained(resolve_pretrained(self.cfg["name_or_path"]),
                                                      subfolder="vae").eval()
        vae, device = self._vae, _frozen_device()
        vae.to(device)
        size = self.options["encode_batch_size"]
        out = [vae.encode(pixels[s:s + size].to(device)).latent_dist.mean.float().cpu()
               for s in range(0, len(pixels), size)]
        vae.to("cpu")
        return torch.cat(out) * vae.config.scaling_factor

    # ------------------------------------------------------------------ family interface

    def build(self, seed: int) -> nn.Module:
        from peft import LoraConfig

        torch.manual_seed(seed)  # same tiny weights and LoRA initialisation for every (re)build from this seed
        if self.is_tiny:
            unet = self._new_tiny_unet()
        else:
            from diffusers import UNet2DConditionModel

            unet = UNet2DConditionModel.from_pretrained(resolve_pretrained(self.cfg["name_or_path"]), subfolder="unet")
        lora = self.cfg["lora"]
        targets = list(lora["target_modules"])
        check_lora_targets(unet, targets, self.cfg["name_or_path"])
        unet.requires_grad_(False)
        unet.add_adapter(LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora.get("dropout", 0.0),
                                    init_lora_weights="gaussian", target_modules=targets))
        for name, param in unet.named_parameters():  # only LoRA: the per-sample gradient engine needs Linear blocks
            param.requires_grad_("lora_" in name)
        return unet

    def encode(self, frame: pd.DataFrame) -> Batch:
        """``latents`` (x_0), ``text`` (prompt embeddings), per sample K ``timesteps`` and ``noise``, ``labels``."""
        latents = self.to_latents(self.load_pixels(list(frame["image"].astype(str))))
        text = self.encode_prompts(list(frame["prompt"].astype(str)))
        k, steps = self.rows_per_sample, self.scheduler().config.num_train_timesteps
        uids = frame["uid"].astype(str) if "uid" in frame else frame["id"].astype(str)
        timesteps, noise = [], []
        shared = self.options["draws"] == "shared"
        for uid in uids:
            gen = torch.Generator().manual_seed(draw_seed(self.options["noise_seed"], "shared" if shared else uid))
            timesteps.append(torch.randint(0, steps, (k,), generator=gen))
            noise.append(torch.randn((k, *latents.shape[1:]), generator=gen))
        return {"latents": latents, "text": text, "timesteps": torch.stack(timesteps), "noise": torch.stack(noise),
                "labels": torch.tensor(frame["label"].to_numpy(), dtype=torch.long)}

    def per_sample_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        sched = self.scheduler()
        if model.training and self.options["train_draws"] == "fresh":
            k, x0 = 1, batch["latents"]
            noise = torch.randn_like(x0)
            t = torch.randint(0, sched.config.num_train_timesteps, (x0.shape[0],), device=x0.device)
        else:
            k = self.rows_per_sample
            x0 = batch["latents"].repeat_interleave(k, 0)
            noise, t = batch["noise"].flatten(0, 1), batch["timesteps"].flatten()
        noisy = sched.add_noise(x0, noise, t)
        text = batch["text"].repeat_interleave(k, 0)
        dtype = next(p.dtype for p in model.parameters())
        pred = model(noisy.to(dtype), t, encoder_hidden_states=text.to(dtype)).sample.float()
        kind = sched.config.prediction_type
        target = noise if kind == "epsilon" else sched.get_velocity(x0, noise, t)
        if kind not in ("epsilon", "v_prediction"):
            raise ValueError(f"unsupported scheduler prediction_type {kind!r}")
        rows = (pred - target).pow(2).flatten(1).mean(1)
        return rows.view(-1, k).mean(1)


def _frozen_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
