"""POST /jobs: the seed's job API, a generate request run on the best node."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from ollama_connector.hubd.dispatch import dispatch, new_job
from ollama_connector.shared.bodies import parse_body_as, read_json_object
from ollama_connector.shared.wire import MAX_MODEL_NAME

routes = web.RouteTableDef()


class JobRequest(BaseModel):
    """The fields the hub reads; every other field of Ollama's /api/generate passes through untouched."""

    model_config = ConfigDict(extra="allow")

    model: StrictStr = Field(min_length=1, max_length=MAX_MODEL_NAME)
    prompt: StrictStr
    options: dict[str, Any] | None = None
    stream: StrictBool = True


@routes.post("/jobs")
async def submit_job(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    asked = parse_body_as(JobRequest, body)
    # The body goes on as the caller wrote it: an absent "stream" means true for Ollama too.
    job = await new_job(request, body, asked.model, asked.stream, node_path="/execute", context_settable=True)
    return await dispatch(request, job)
