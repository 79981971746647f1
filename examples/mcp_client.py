"""interp as an MCP server, driven by the official `mcp` SDK's client over stdio.

    .venv/bin/python examples/mcp_client.py

It starts `interp mcp` as an MCP client application would (Claude Desktop, Cursor, an
agent framework), runs code twice in the same kernel and prints what came back.
"""

import asyncio
import sys

from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp_types import ImageContent, TextContent

SERVER = StdioServerParameters(command=sys.executable, args=["-m", "interp", "mcp"])


async def main() -> None:
    async with Client(SERVER, read_timeout_seconds=120) as client:
        tools = await client.list_tools()
        print("tools:", ", ".join(tool.name for tool in tools.tools))
        await client.call_tool("run_python", {"code": "import numpy as np\nxs = np.arange(10)"})
        result = await client.call_tool(
            "run_python",
            {"code": "import matplotlib.pyplot as plt\nplt.plot(xs, xs**2)\nplt.show()\nxs.sum()"},
        )
        for part in result.content:
            if isinstance(part, TextContent):
                print(part.text)
            elif isinstance(part, ImageContent):
                print(f"[an image: {part.mime_type}, {len(part.data)} base64 characters]")


asyncio.run(main())
