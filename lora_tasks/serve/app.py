"""The HTTP API: ``POST /v1/generate`` (a PNG), ``GET /v1/adapters``, ``GET /metrics``, ``GET /healthz``.

The tenant comes from the caller's API key (``Authorization: Bearer <key>`` or ``X-API-Key``), never from
the body. Errors are JSON ``{"detail": ...}``: 401 without a valid key, 404 for an adapter the tenant may not
use (the same whether absent or another tenant's private one), 422 for a request over a limit (the message
names it) or an adapter whose files fail their checks.

No ``from __future__ import annotations`` here: FastAPI reads the request model, built from the settings'
limits inside ``create_app``, from the endpoint's annotations at runtime.
"""

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, create_model

from lora_tasks.ledger.adapters import AdapterNotFound
from lora_tasks.ledger.key_header import tenant_dependency
from lora_tasks.serve.engine import GenerationParams
from lora_tasks.serve.loader import AdapterIntegrityError
from lora_tasks.serve.service import AdapterService
from lora_tasks.serve.settings import ServeSettings
from lora_tasks.settings import PlatformSettings

MAX_GUIDANCE = 30.0
MAX_SEED = 2**63 - 1


def request_model(settings: ServeSettings) -> type[BaseModel]:
    """The body of ``POST /v1/generate``, bounded by this installation's limits."""
    size = {"ge": 8, "multiple_of": 8}
    text = {"max_length": settings.max_prompt_chars}
    return create_model(
        "GenerateRequest",
        __config__=ConfigDict(extra="forbid"),
        adapter=(str, Field(min_length=1, max_length=200, description="name, name@3, name@latest or owner/name@3")),
        prompt=(str, Field(min_length=1, **text)),
        negative_prompt=(str, Field("", **text)),
        seed=(int, Field(0, ge=0, le=MAX_SEED)),
        steps=(int, Field(min(25, settings.max_steps), ge=1, le=settings.max_steps)),
        guidance=(float, Field(7.5, ge=0.0, le=MAX_GUIDANCE)),
        width=(int, Field(min(512, settings.max_width), le=settings.max_width, **size)),
        height=(int, Field(min(512, settings.max_height), le=settings.max_height, **size)),
    )


def describe(error: Any) -> str:
    """One validation error as a sentence naming the field and its limit ("width must be <= 1024")."""
    field = ".".join(str(part) for part in error["loc"] if part != "body") or "body"
    ctx = error.get("ctx", {})
    phrases = {"less_than_equal": "must be <= {le}", "greater_than_equal": "must be >= {ge}",
               "string_too_long": "must be at most {max_length} characters",
               "string_too_short": "must be at least {min_length} characters",
               "multiple_of": "must be a multiple of {multiple_of}",
               "extra_forbidden": "is not a field of this request"}
    phrase = phrases.get(error["type"])
    return f"{field} {phrase.format(**ctx)}" if phrase else f"{field}: {error['msg']}"


def create_app(settings: ServeSettings, platform: PlatformSettings | None = None,
               service: AdapterService | None = None) -> FastAPI:
    """The app around one ``AdapterService`` (built here unless given: it loads the base pipeline)."""
    service = service or AdapterService(settings, platform or PlatformSettings())
    app = FastAPI(title="LoRA serving", version="1")
    app.state.service = service
    GenerateRequest = request_model(settings)

    Tenant = Annotated[str, Depends(tenant_dependency(service.tenant_for_api_key))]

    @app.exception_handler(RequestValidationError)
    def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": "; ".join(describe(e) for e in exc.errors())}, status_code=422)

    @app.exception_handler(AdapterNotFound)
    def not_found(_: Request, exc: AdapterNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(AdapterIntegrityError)
    def unusable(_: Request, exc: AdapterIntegrityError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.post("/v1/generate", response_class=Response, responses={200: {"content": {"image/png": {}}}})
    def generate(body: GenerateRequest, caller: Tenant) -> Response:  # type: ignore[valid-type]
        fields = body.model_dump()  # type: ignore[attr-defined]
        png = service.generate(caller, fields.pop("adapter"), GenerationParams(**fields))
        return Response(png, media_type="image/png")

    @app.get("/v1/adapters")
    def adapters(caller: Tenant) -> dict[str, Any]:
        return service.adapters(caller)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "base_model": str(settings.base_model),
                "adapters_loaded": len(service.pipeline.keys())}

    return app
