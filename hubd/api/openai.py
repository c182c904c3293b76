"""OpenAI-compatible routes (chat, completions, embeddings, the Responses API, audio transcriptions):
relayed to the nodes' own Ollama /v1 endpoints, which do the translating."""

from __future__ import annotations

from aiohttp import web

from ollama_connector.hubd.api.forms import read_form
from ollama_connector.hubd.api.ollama import merged_tags, name_of, sort_time
from ollama_connector.hubd.errors import HubError
from ollama_connector.hubd.guard.auth import who
from ollama_connector.hubd.guard.limits import required_model
from ollama_connector.hubd.jobs.dispatch import dispatch
from ollama_connector.hubd.jobs.job import new_job
from ollama_connector.shared.bodies import BadRequest, read_json_object
from ollama_connector.shared.modelnames import canonical

routes = web.RouteTableDef()


async def relay_openai(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    model = required_model(body.get("model"))
    stream = body.get("stream") is True  # OpenAI's default is not to stream
    return await dispatch(request, await new_job(request, body, model, stream, options=False))


for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"):
    routes.post(path)(relay_openai)


@routes.post("/v1/audio/transcriptions")
async def transcription(request: web.Request) -> web.StreamResponse:
    """A form with the audio file: read for its model, relayed as it came. Ollama answers it whole."""
    raw, content_type = await request.read(), request.headers.get("Content-Type", "")
    form = await read_form(raw, content_type)
    model = required_model(form.fields.get("model"))
    if "file" not in form.files:
        raise BadRequest("file is required: the form has no file part named 'file'")
    job = await new_job(request, {}, model, False, options=False, payload=raw, content_type=content_type)
    return await dispatch(request, job)


def model_object(entry: dict) -> dict:
    name = name_of(entry) or ""
    namespace = name.split("/")[-2] if name.count("/") >= 1 else "library"
    return {
        "id": name,
        "object": "model",
        "created": int(sort_time(entry.get("modified_at"))),
        "owned_by": namespace,
    }


@routes.get("/v1/models")
async def models(request: web.Request) -> web.Response:
    return web.json_response(
        {"object": "list", "data": [model_object(e) for e in await merged_tags(request.app, who(request))]}
    )


@routes.get("/v1/models/{model:.+}")
async def one_model(request: web.Request) -> web.Response:
    wanted = canonical(request.match_info["model"])
    for entry in await merged_tags(request.app, who(request)):
        if canonical(name_of(entry) or "") == wanted:
            return web.json_response(model_object(entry))
    raise HubError(f'model "{request.match_info["model"]}" not found', status=404)
