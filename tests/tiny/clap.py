"""A tiny random LAION-style CLAP (RoBERTa text tower + HTSAT audio tower) in transformers format."""

from __future__ import annotations

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


def build_tiny_clap(out_dir: Path, seed: int = 0) -> Path:
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
        enable_fusion=False,
    )
    cfg = ClapConfig(text_config=text_cfg.to_dict(), audio_config=audio_cfg.to_dict(), projection_dim=16)
    model = ClapModel(cfg).eval()
    proc = ClapProcessor(feature_extractor=ClapFeatureExtractor(truncation="rand_trunc"), tokenizer=tok)
    path = out_dir / "clap"
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return path
