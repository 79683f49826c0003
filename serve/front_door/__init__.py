"""The lorastack front door: the OpenAI API in front of vLLM, shaped like vLLM's own entrypoints.

- ``protocol``: request bodies parsed strictly (no NaN, no lone surrogates, bounded depth and size) and the
  pydantic models of what the front door interprets;
- ``api_router``: thin routes; only they exist (vLLM's raw LoRA routes are not forwarded);
- ``routing``: aliases resolved per request (``support`` -> ``support@v3``) and requests in flight per version;
- ``relay``: inference forwarded and streamed back; a client that leaves stops its generation;
- ``auth``: API keys (inference and admin roles, ``lorastack.access``);
- ``metrics``: Prometheus, per alias and version, and every response;
- ``service``: :class:`FrontDoor`, its state and admin work (restore, load/unload, promotion from load to unload).
"""

from lorastack.serve.front_door.routing import Routes, Target, versioned
from lorastack.serve.front_door.service import FrontDoor, Promotion

__all__ = ["FrontDoor", "Promotion", "Routes", "Target", "versioned"]
