"""A real MCP server for the end-to-end tests, written with the official Python `mcp` package
and served over streamable HTTP on loopback. Run as a process:

    python mcp_server.py --token SECRET --record calls.jsonl

prints `listening on http://127.0.0.1:PORT` once it accepts connections. Every request must
carry `Authorization: Bearer SECRET` (401 otherwise). Each tool call, and each HTTP request
with its Authorization header and JSON-RPC method, is appended to the record file as one JSON
line, so a test can tell what the server saw (and how many times).

Routes:
  /mcp            the MCP server: echo, slow, huge, fail
  /legacy/sse     the same server over the older HTTP+SSE transport (its POST endpoint is under
                  /legacy/messages/); POSTs to /legacy/sse itself are refused, as such servers do
  /malformed/mcp  answers every POST with a body that is not JSON-RPC at all
  /broken/mcp     a hand-written server that lists one tool, `broken`, and answers its call
                  with a body that is not JSON-RPC
  /many/mcp       a hand-written server whose tool list pages on forever, 100 tools a page
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--token", required=True)
    ap.add_argument("--record", required=True)
    a = ap.parse_args()

    def record(obj: dict) -> None:
        with open(a.record, "a") as f:
            f.write(json.dumps(obj) + "\n")
            f.flush()

    server = MCPServer("e2e-tools")

    @server.tool(description="Echo the text back.")
    def echo(text: str) -> str:
        record({"call": "echo", "text": text})
        return f"echo: {text}"

    @server.tool(description="Sleep for the given seconds, then answer.")
    async def slow(seconds: float, tag: str = "") -> str:
        record({"call": "slow", "tag": tag, "seconds": seconds})
        await asyncio.sleep(seconds)
        record({"call": "slow_done", "tag": tag})
        return f"slept {seconds}"

    @server.tool(description="Return a text of the given size.")
    def huge(size: int) -> str:
        record({"call": "huge", "size": size})
        return "x" * size

    @server.tool(description="Always fails.")
    def fail(message: str) -> str:
        record({"call": "fail"})
        raise ToolError(message)

    mcp_app = server.streamable_http_app(streamable_http_path="/")
    sse_app = server.sse_app()

    class BearerOnly:
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            headers = dict(scope["headers"])
            got = headers.get(b"authorization", b"").decode()
            # Read the body to record the JSON-RPC method, then hand it on unchanged.
            body, more = b"", True
            while more:
                msg = await receive()
                body += msg.get("body", b"")
                more = msg.get("more_body", False)
            try:
                method = json.loads(body).get("method") if body else None
            except ValueError:
                method = None
            record({"authorization": got, "path": scope["path"], "http": scope["method"], "method": method})
            if got != f"Bearer {a.token}":
                await JSONResponse({"error": "unauthorized"}, status_code=401)(scope, receive, send)
                return
            replayed = False

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)

    async def malformed(request: Request) -> Response:
        await request.body()
        record({"call": "malformed"})
        return Response("<html>this is not JSON-RPC", media_type="application/json")

    async def broken(request: Request) -> Response:
        if request.method != "POST":
            return Response(status_code=405)
        msg = json.loads(await request.body())
        method = msg.get("method", "")
        if "id" not in msg:
            return Response(status_code=202)
        if method == "initialize":
            result = {"protocolVersion": msg["params"]["protocolVersion"], "capabilities": {"tools": {}},
                      "serverInfo": {"name": "broken", "version": "1"}}
        elif method == "tools/list" and request.url.path.startswith("/many"):
            page = int((msg.get("params") or {}).get("cursor") or 0)
            record({"call": "many", "page": page})
            result = {"tools": [{"name": f"t{page}_{i}", "description": "One of many.",
                                 "inputSchema": {"type": "object", "properties": {}}} for i in range(100)],
                      "nextCursor": str(page + 1)}
        elif method == "tools/list":
            result = {"tools": [{"name": "broken", "description": "Answers garbage.",
                                 "inputSchema": {"type": "object", "properties": {}}}]}
        elif method == "tools/call":
            record({"call": "broken"})
            return Response('{"jsonrpc": "2.0", "id": ' + json.dumps(msg["id"]) + ', "result": {"content": 7',
                            media_type="application/json")
        else:
            return JSONResponse({"jsonrpc": "2.0", "id": msg["id"],
                                 "error": {"code": -32601, "message": "no such method"}})
        return JSONResponse({"jsonrpc": "2.0", "id": msg["id"], "result": result})

    app = Starlette(
        routes=[Route("/malformed/mcp", malformed, methods=["POST", "GET", "DELETE"]),
                Route("/broken/mcp", broken, methods=["POST", "GET", "DELETE"]),
                Route("/many/mcp", broken, methods=["POST", "GET", "DELETE"]),
                Mount("/mcp", app=mcp_app),
                Mount("/legacy", app=sse_app)],
        middleware=[Middleware(BearerOnly)],
        lifespan=lambda app: mcp_app.router.lifespan_context(app),
    )

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(srv.serve(sockets=[sock]))
        while not srv.started:
            await asyncio.sleep(0.01)
        print(f"listening on http://127.0.0.1:{port}", flush=True)
        await task

    asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
