"""The serving process's settings (``LORA_SERVE_*``): what the operator sizes, not the caller.

The limits bound what one request may cost (pixels, steps, prompt length), so a caller cannot hold the
one pipeline for minutes; the cache bounds say how many adapters stay loaded, like vLLM's
``max_loras`` (the pipeline tier) and ``max_cpu_loras`` (host RAM).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LORA_SERVE_", extra="ignore", frozen=True)

    base_model: Path = Field(Path("build/demo/models/tiny-sd"), description="the diffusers pipeline folder served")
    host: str = Field("127.0.0.1", description="address uvicorn binds")
    port: int = Field(8000, ge=0, le=65535, description="port uvicorn binds (0: a free one)")
    device: str = Field("cpu", description="torch device of the pipeline (cpu, cuda, cuda:1)")
    pipeline_slots: int = Field(8, ge=1, description="adapters loaded into the model at once (vLLM's max_loras)")
    pipeline_bytes: int = Field(2 << 30, ge=1, description="bytes of adapter weights loaded into the model at once")
    ram_bytes: int = Field(4 << 30, ge=0, description="bytes of adapter state dicts kept in host RAM "
                           "(vLLM's max_cpu_loras, by bytes)")
    hotswap: bool = Field(True, description="copy a missed adapter into an evicted one's layers when their "
                          "shapes match (diffusers' hotswap), instead of deleting them and injecting new ones")
    fuse: bool = Field(True, description="fold the active adapter into the base weights while it generates, so "
                       "its images cost what the base model's do (the base weights are kept and copied back)")
    policy: str = Field("lru", description="eviction policy of both tiers: lru, lfu, arc or tinylfu")
    max_width: int = Field(1024, ge=8, description="widest image a request may ask for, in pixels")
    max_height: int = Field(1024, ge=8, description="tallest image a request may ask for, in pixels")
    max_steps: int = Field(100, ge=1, description="most denoising steps a request may ask for")
    max_prompt_chars: int = Field(2000, ge=1, description="longest prompt (and negative prompt), in characters")
