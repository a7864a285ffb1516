"""A tiny remote-code VLM that builds its own inputs the way CogVLM/CogVLM2 do (no chat template).

The folder holds a configuration and a modeling file registered in config.json's `auto_map`, as the
THUDM checkpoints do, so it loads only with `trust_remote_code`. The model is a tiny real Llama LM
with a linear "vision expert" over 4x4 patches; `build_conversation_input_ids(tokenizer, query=,
history=[], images=[image])` returns `input_ids`, `token_type_ids` (1 = vision), `attention_mask`
and `images` like the real one, and `forward`/`generate` take `images` as one list per row
(`[[image], [image]]`) and check it, so an engine that batches otherwise fails loudly.
Its answers are noise, as the tiny LLaVA's.
"""

from __future__ import annotations

import json
from pathlib import Path

CONFIG_CODE = """
from transformers import LlamaConfig


class TinyCogVLMConfig(LlamaConfig):
    model_type = "tiny_cogvlm"

    def __init__(self, template_version="chat", image_size=8, patch_size=4, **kwargs):
        self.template_version = template_version
        self.image_size = image_size
        self.patch_size = patch_size
        super().__init__(**kwargs)
"""

MODELING_CODE = """
import numpy as np
import torch
from torch import nn
from transformers import LlamaForCausalLM

from .configuration_tiny_cogvlm import TinyCogVLMConfig

LANGUAGE_TOKEN_TYPE = 0
VISION_TOKEN_TYPE = 1


class TinyCogVLMForCausalLM(LlamaForCausalLM):
    config_class = TinyCogVLMConfig

    def __init__(self, config):
        super().__init__(config)
        p = config.patch_size
        self.vision = nn.Linear(3 * p * p, config.hidden_size)
        self.post_init()

    @property
    def num_vision_tokens(self):
        return (self.config.image_size // self.config.patch_size) ** 2

    def build_conversation_input_ids(self, tokenizer, *, query, history=None, images=None, template_version=None):
        template_version = template_version or self.config.template_version
        assert template_version == "chat" and not history, "one turn of the chat template only"
        assert images is not None and len(images) == 1, "CogVLM takes exactly one image"
        size = self.config.image_size
        pixels = np.asarray(images[0].convert("RGB").resize((size, size)), dtype=np.float32) / 127.5 - 1.0
        image = torch.from_numpy(pixels).permute(2, 0, 1).contiguous()  # float32, as the real transforms give
        text = tokenizer.encode(f"Question: {query} Answer:", add_special_tokens=False)
        n = self.num_vision_tokens
        ids = [tokenizer.bos_token_id] + [tokenizer.pad_token_id] * n + text
        types = [LANGUAGE_TOKEN_TYPE] + [VISION_TOKEN_TYPE] * n + [LANGUAGE_TOKEN_TYPE] * len(text)
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "token_type_ids": torch.tensor(types, dtype=torch.long),
            "attention_mask": torch.ones(len(ids), dtype=torch.long),
            "images": [image],
        }

    def _patches(self, image):
        p = self.config.patch_size
        c, h, w = image.shape
        x = image.reshape(c, h // p, p, w // p, p).permute(1, 3, 0, 2, 4)
        return x.reshape(-1, c * p * p)

    def forward(
        self, input_ids=None, images=None, token_type_ids=None, attention_mask=None, inputs_embeds=None, **kwargs
    ):
        kwargs["attention_mask"] = attention_mask
        if images is not None and input_ids is not None:
            assert isinstance(images, list) and len(images) == input_ids.shape[0], "one list of images per row"
            assert token_type_ids is not None and token_type_ids.shape == input_ids.shape
            embeds = self.get_input_embeddings()(input_ids)
            for row, row_images in enumerate(images):
                assert isinstance(row_images, list) and len(row_images) == 1
                assert row_images[0].dtype == self.dtype, "pixels in the model's dtype"
                vision = self.vision(self._patches(row_images[0]))
                mask = token_type_ids[row] == VISION_TOKEN_TYPE
                embeds[row, mask] = vision.to(embeds.dtype)
            return super().forward(inputs_embeds=embeds, **kwargs)
        return super().forward(input_ids=input_ids, inputs_embeds=inputs_embeds, **kwargs)

    def prepare_inputs_for_generation(self, input_ids, images=None, token_type_ids=None, **kwargs):
        inputs = super().prepare_inputs_for_generation(input_ids, **kwargs)
        step_ids = inputs.get("input_ids")
        if step_ids is not None and step_ids.shape[1] == input_ids.shape[1]:  # the first step: the whole prompt
            inputs["images"] = images
            inputs["token_type_ids"] = token_type_ids
        else:  # later steps read the image from the cache
            inputs.pop("images", None)
            inputs.pop("token_type_ids", None)
        return inputs
"""


def build_tiny_cogvlm(out_dir: Path, corpus: list[str], seed: int = 0) -> Path:
    """Write the remote-code folder (code, config, random weights, a BPE tokenizer without a chat template)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    path = Path(out_dir) / "tiny-cogvlm"
    path.mkdir(parents=True, exist_ok=True)
    (path / "configuration_tiny_cogvlm.py").write_text(CONFIG_CODE)
    (path / "modeling_tiny_cogvlm.py").write_text(MODELING_CODE)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator([*corpus, "Question: Answer:"] * 20, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    tok.save_pretrained(path)
    config = {
        "model_type": "tiny_cogvlm",
        "architectures": ["TinyCogVLMForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_tiny_cogvlm.TinyCogVLMConfig",
            "AutoModelForCausalLM": "modeling_tiny_cogvlm.TinyCogVLMForCausalLM",
        },
        "template_version": "chat",
        "vocab_size": len(tok),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    (path / "config.json").write_text(json.dumps(config, indent=2))
    cfg = AutoConfig.from_pretrained(path, trust_remote_code=True)
    model = AutoModelForCausalLM.from_config(cfg, trust_remote_code=True)
    model.save_pretrained(path)
    return path
