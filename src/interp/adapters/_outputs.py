"""What every adapter shares: the result's outputs reduced to what OpenAI can carry."""

from __future__ import annotations

from .._models import ExecutionResult, ImageOutput, LogsOutput

OpenAIOutput = LogsOutput | ImageOutput


def openai_outputs(result: ExecutionResult) -> list[OpenAIOutput]:
    """Logs and images in order, displays left out and the logs around them joined.

    Joining keeps the indices of a streamed run step (which skips displays) equal to
    these.
    """
    kept: list[OpenAIOutput] = []
    for output in result.outputs:
        if isinstance(output, ImageOutput):
            kept.append(output)
        elif isinstance(output, LogsOutput):
            last = kept[-1] if kept else None
            if isinstance(last, LogsOutput):
                kept[-1] = LogsOutput(logs=last.logs + output.logs)
            else:
                kept.append(output)
    return kept
