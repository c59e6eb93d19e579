"""JSON responses whose non-finite numbers are the strings "nan", "inf", "-inf" (bare NaN is not JSON)."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse

from xorjobs.store.floats import json_safe


class SafeJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(
            json_safe(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()
