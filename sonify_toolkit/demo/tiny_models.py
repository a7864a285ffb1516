"""Tiny random models built on the spot, in the real transformers classes, saved like real checkpoints.

The demo falls back to them when the Hub cannot be reached (the run is then labelled a smoke run:
the pipeline's plumbing is real, its pairings mean nothing), and the tests load them by path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import (
    ClapAudioConfig,
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    ClapProcessor,
    ClapTextConfig,
    RobertaTokenizerFast,
)

CORPUS = [
    "a dog barking in the distance",
    "rain falling on a tin roof",
    "a piano playing a slow melody",
    "birds singing in the morning",
    "a car engine starting",
    "people talking in a crowded room",
    "sound of a siren",
    "footsteps on gravel",
    "a sine tone",
    "waves crashing on the beach",
] * 20


def build_roberta_tokenizer(out_dir: Path, vocab_size: int = 300) -> RobertaTokenizerFast:
    out_dir.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        CORPUS, vocab_size=vocab_size, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    )
    bpe.save_model(str(out_dir))
    # transformers 5: vocab=/merges= (the old vocab_file=/merges_file= are ignored)
    tok = RobertaTokenizerFast(
        vocab=str(out_dir / "vocab.json"), merges=str(out_dir / "merges.txt"), model_max_length=77
    )
    tok.save_pretrained(str(out_dir))
    return tok


def build_tiny_clap(out_dir: Path, seed: int = 0, fused: bool = False) -> Path:
    """A tiny random CLAP; `fused` gives the `laion/clap-htsat-fused` kind (feature fusion for long clips)."""
    torch.manual_seed(seed)
    tok = build_roberta_tokenizer(out_dir / "_tok")
    text_cfg = ClapTextConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=80,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        projection_dim=32,
    )
    # HTSAT keeps spec_size 256 and 64 mel bins; hidden_size = patch_embeds_hidden_size * 2**(len(depths)-1)
    audio_cfg = ClapAudioConfig(
        patch_embeds_hidden_size=16,
        depths=[1, 1],
        num_attention_heads=[2, 2],
        hidden_size=32,
        projection_dim=32,
        window_size=8,
        spec_size=256,
        num_mel_bins=64,
        enable_fusion=fused,
    )
    cfg = ClapConfig(text_config=text_cfg.to_dict(), audio_config=audio_cfg.to_dict(), projection_dim=16)
    model = ClapModel(cfg).eval()
    extractor = ClapFeatureExtractor(truncation="fusion" if fused else "rand_trunc")
    proc = ClapProcessor(feature_extractor=extractor, tokenizer=tok)
    path = out_dir / "clap"
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return path


# A plain chat template in the format every image-text-to-text processor understands.
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% elif c['type'] == 'text' %}"
    "{{ c['text'] }}{% endif %}{% endfor %}{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
VLM_CORPUS = [
    "user: list the sound sources visible in the image",
    'assistant: {"caption": "a cat on a chair", "sounds": [{"name": "cat", "description": "a cat meowing"}]}',
    "a dog barking in the park, a clock ticking on the wall, coins clinking on a table",
] * 30


def build_tiny_llava(out_dir: Path, seed: int = 0, corpus: Sequence[str] = ()) -> Path:
    """A tiny random LLaVA (CLIP vision tower + Llama LM) with its own BPE tokenizer and chat template.

    `corpus` adds texts the tokenizer should encode compactly (e.g. the extraction prompt).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )
    from transformers.models.clip import CLIPImageProcessorPil  # PIL backend: no torchvision needed

    torch.manual_seed(seed)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>", "<image>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator([*VLM_CORPUS, *corpus], trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )
    tok.chat_template = CHAT_TEMPLATE
    image_token = tok.convert_tokens_to_ids("<image>")
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    text = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    cfg = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token,
        image_seq_length=16,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    model = LlavaForConditionalGeneration(cfg).eval()
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tok,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token
        chat_template=CHAT_TEMPLATE,
    )
    path = Path(out_dir) / "llava"
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def teach_fixed_answer(model_dir: Path, prompt: str, answer: str, steps: int = 200, seed: int = 0) -> int:
    """Teach a tiny VLM to give `answer` to `prompt` whatever the image (teacher forcing, a few seconds on CPU).

    A random model's output is noise, so the stages after extraction would get nothing to work on.
    The smoke run needs concepts to flow through retrieval, mixing and publishing; what it does with
    them is meaningless by construction, and every output says so.
    """
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    torch.manual_seed(seed)
    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    context = processor.apply_chat_template(messages, add_generation_prompt=True)
    eos = processor.tokenizer.eos_token
    colours = [(200, 30, 30), (40, 40, 200), (240, 240, 240)]
    images = [Image.new("RGB", (48 + 8 * i, 40), c) for i, c in enumerate(colours)]
    batch = processor(images=images, text=[context + answer + eos] * len(images), return_tensors="pt", padding=True)
    prefix = processor(images=images[:1], text=[context], return_tensors="pt")["input_ids"].shape[1]
    labels = batch["input_ids"].clone()
    labels[:, :prefix] = -100
    labels[batch["attention_mask"] == 0] = -100
    optimiser = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.0)
    model.train()
    step = 0
    while step < steps:
        step += 1
        loss = model(**batch, labels=labels).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if loss.item() < 0.01:  # greedy decoding now reproduces the answer token for token
            break
    model.eval()
    model.save_pretrained(model_dir)
    return step
