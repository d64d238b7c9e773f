"""The frozen base model: a diffusers SD-family folder (SD 1.x/2.x or SDXL)
with `image_encoder/`, loaded component by component, and the conditioning it
gives, computed the way Sources/NestDiffusion/Pipeline/PromptEncoder.swift does."""
import json
import os

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer, CLIPVisionModelWithProjection


class BaseModel:
    """`for_adapters=False` (the UNet stage): no image encoder is needed and the
    UNet is left to the caller (`self.unet` None), which may train it from its config."""
    def __init__(self, folder, dtype=torch.float32, device="cpu", for_adapters=True):
        index = json.load(open(os.path.join(folder, "model_index.json")))
        part = lambda name: os.path.join(folder, name)
        if for_adapters and not os.path.isdir(part("image_encoder")):
            raise ValueError(f"{folder}: no image_encoder/ in the model folder (subject adapters need a CLIP image encoder)")
        self.folder = folder
        self.device = torch.device(device)
        self.unet = UNet2DConditionModel.from_pretrained(part("unet"), torch_dtype=dtype).to(device) if for_adapters else None
        self.vae = AutoencoderKL.from_pretrained(part("vae"), torch_dtype=dtype).to(device)
        self.tokenizers, self.text_encoders = [], []
        for tok, enc in (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")):
            if index.get(enc, [None])[0] is None and not os.path.isdir(part(enc)):
                continue
            cls = CLIPTextModelWithProjection if enc == "text_encoder_2" else CLIPTextModel
            self.tokenizers.append(CLIPTokenizer.from_pretrained(part(tok)))
            self.text_encoders.append(cls.from_pretrained(part(enc), torch_dtype=dtype).to(device))
        self.is_xl = len(self.text_encoders) == 2
        self.image_encoder = self.image_processing = None
        if for_adapters:
            self.image_encoder = CLIPVisionModelWithProjection.from_pretrained(part("image_encoder"), torch_dtype=dtype).to(device)
            processor = part("feature_extractor") if os.path.isdir(part("feature_extractor")) else part("image_encoder")
            self.image_processing = json.load(open(os.path.join(processor, "preprocessor_config.json")))
        self.scheduler_config = json.load(open(os.path.join(part("scheduler"), "scheduler_config.json")))
        # Only the forward-process constants are used in training (ᾱ_t from the betas).
        self.noise = DDPMScheduler.from_pretrained(part("scheduler"))
        self.predicts_velocity = self.scheduler_config.get("prediction_type", "epsilon") == "v_prediction"
        for m in [self.unet, self.vae, self.image_encoder] + self.text_encoders:
            if m is not None:
                m.requires_grad_(False).eval()

    @property
    def cross_attention_dim(self):
        return self.unet.config.cross_attention_dim

    def clip_crop_size(self):
        crop = self.image_processing.get("crop_size", self.image_encoder.config.image_size)
        return crop["height"] if isinstance(crop, dict) else int(crop)

    def add_placeholder(self, token, class_word):
        add_placeholder(self.tokenizers, self.text_encoders, token, class_word)

    def ids(self, tokenizer, prompts):
        return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids

    def position(self, token, prompt):
        """Index of `token` in the first tokenizer's ids of `prompt` (with BOS), or None."""
        tokenizer = self.tokenizers[0]
        wanted = tokenizer.convert_tokens_to_ids(token)
        ids = self.ids(tokenizer, [prompt])[0].tolist()
        return ids.index(wanted) if wanted in ids else None

    @torch.no_grad()
    def encode_prompts(self, prompts):
        """(context [B, 77, C], pooled [B, P] or None). SD 1/2: the last (normed)
        hidden state; SDXL: both encoders' penultimate states side by side, and
        the second encoder's projected pooled output."""
        device = self.device
        parts, pooled = [], None
        for i, (tokenizer, encoder) in enumerate(zip(self.tokenizers, self.text_encoders)):
            out = encoder(self.ids(tokenizer, prompts).to(device), output_hidden_states=True)
            parts.append(out.hidden_states[-2] if self.is_xl else out.last_hidden_state)
            if self.is_xl and i == len(self.text_encoders) - 1:
                pooled = out.text_embeds
        return torch.cat(parts, dim=-1), pooled

    def image_features(self, pixels, feature_layer, encoder=None):
        """CLIP hidden states of `feature_layer` (-2: penultimate) for normalized pixels [B, 3, S, S]."""
        encoder = encoder or self.image_encoder
        out = encoder(pixel_values=pixels, output_hidden_states=True)
        return out.hidden_states[feature_layer]

    def time_ids(self, batch, resolution):
        """SDXL's added condition: original size, crop (0, 0), target size, all the training resolution."""
        r = float(resolution)
        return torch.tensor([[r, r, 0.0, 0.0, r, r]] * batch, device=self.device)

    def alphas_cumprod(self, timesteps):
        return self.noise.alphas_cumprod.to(timesteps.device)[timesteps]


def add_placeholder(tokenizers, encoders, token, class_word):
    """Adds `token` to every tokenizer with the embedding of `class_word`'s first token
    (PromptEncoder.addPlaceholder in Swift)."""
    for tokenizer, encoder in zip(tokenizers, encoders):
        source = tokenizer(class_word, add_special_tokens=False).input_ids
        if not source:
            raise ValueError(f"class word '{class_word}' has no tokens")
        tokenizer.add_tokens([token])
        new = tokenizer.convert_tokens_to_ids(token)
        embeddings = encoder.get_input_embeddings()
        if new >= embeddings.weight.shape[0]:
            encoder.resize_token_embeddings(len(tokenizer))
            embeddings = encoder.get_input_embeddings()
        with torch.no_grad():
            embeddings.weight[new] = embeddings.weight[source[0]]
