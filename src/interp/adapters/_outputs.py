"""What every adapter shares: the result's outputs reduced to what OpenAI can carry."""

from __future__ import annotations

from .._collector import merge_logs
from .._models import ExecutionResult, ImageOutput, LogsOutput

OpenAIOutput = LogsOutput | ImageOutput


def openai_outputs(result: ExecutionResult) -> list[OpenAIOutput]:
    """Logs and images in order, displays left out and the logs around them joined.

    Joining keeps the indices of a streamed run step (which skips displays) equal to
    these.
    """
    return merge_logs(o for o in result.outputs if isinstance(o, LogsOutput | ImageOutput))
