"""An OpenAI-compatible chat-completions client: the LLM port of the answer pipeline and
of the LLM keyword. Standard library HTTP with timeouts; every failure is a PlatformError,
which a dialog turns into a runtime error and the answer pipeline into its fallback reply.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from domain.basic import PlatformError


class ChatCompletions:
    def __init__(self, url: str, model: str, key: str = "", timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.key = key
        self.timeout = timeout

    def _request(self, path: str, body: dict[str, Any] | None, timeout: float) -> Any:
        headers = {"Accept": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            raise PlatformError(f"the LLM answered HTTP {e.code}") from e
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            raise PlatformError(f"the LLM is unreachable: {e}") from e
        except ValueError as e:
            raise PlatformError("the LLM answered something that is not JSON") from e

    def complete(self, system: str, prompt: str, timeout: float | None = None) -> str:
        answer = self._request(
            "/chat/completions",
            {
                "model": self.model,
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": prompt},
                ],
            },
            self.timeout if timeout is None else max(0.001, min(self.timeout, timeout)),
        )
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise PlatformError("the LLM's answer has no choices[0].message.content") from None
        if not isinstance(content, str):
            raise PlatformError("the LLM's answer content is not text")
        return content

    def check(self) -> bool:
        """Health: the server lists its models (cheap; no tokens spent)."""
        self._request("/models", None, min(self.timeout, 3.0))
        return True
