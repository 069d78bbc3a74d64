"""The emulator's Runtime API and function URL pieces, checked against the documented wire format."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest

from agentpack.adapters.lambda_stream import RuntimeAPIClient
from agentpack.emulators.aws_lambda.function_url import function_url_event, http_answer, prelude_head
from agentpack.emulators.aws_lambda.runtime_api import Buffered, Chunk, Dispatcher, Failed, Invocation, RuntimeAPI, StreamEnd, StreamStart

API = "/2018-06-01/runtime"


def test_function_url_event_follows_payload_format_2():
    event = function_url_event(
        "POST",
        "/files/a%20b?q=1&q=2&empty=",
        [("host", "127.0.0.1:9000"), ("cookie", "a=1; b=2"), ("x-multi", "one"), ("x-multi", "two"), ("content-type", "application/octet-stream")],
        b"\x00\xff",
        source_ip="127.0.0.1",
        request_id="req-1",
        url_id="abc",
        region="us-east-1",
        account_id="123456789012",
        trace="Root=1-a-b;Parent=c;Sampled=0",
    )
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/files/a%20b" and event["rawQueryString"] == "q=1&q=2&empty="
    assert event["queryStringParameters"] == {"q": "1,2", "empty": ""}
    assert event["cookies"] == ["a=1", "b=2"] and "cookie" not in event["headers"]
    assert event["headers"]["x-multi"] == "one,two"
    assert event["requestContext"]["http"] == {"method": "POST", "path": "/files/a%20b", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": ""}
    assert event["requestContext"]["requestId"] == "req-1"
    assert event["isBase64Encoded"] and base64.b64decode(event["body"]) == b"\x00\xff"
    text = function_url_event("POST", "/", [("content-type", "application/json")], "{\"名\": 1}".encode(), source_ip="", request_id="", url_id="", region="", account_id="", trace="x")
    assert text["body"] == '{"名": 1}' and not text["isBase64Encoded"]
    bare = function_url_event("GET", "/", [], b"", source_ip="", request_id="", url_id="", region="", account_id="", trace="x")
    assert "body" not in bare and "cookies" not in bare and "queryStringParameters" not in bare


def test_buffered_answers_are_read_the_documented_way():
    status, headers, body = http_answer(json.dumps({"statusCode": 201, "headers": {"X-A": "1"}, "cookies": ["c=1"], "body": "aGk=", "isBase64Encoded": True}).encode())
    assert status == 201 and ("x-a", "1") in headers and ("set-cookie", "c=1") in headers and body == b"hi"
    assert http_answer(b'"Hello, world!"') == (200, [("content-type", "application/json")], b'"Hello, world!"')
    assert http_answer(b'{"message": "no statusCode"}')[0] == 200
    assert prelude_head(b'{"statusCode": 404, "headers": {"content-type": "text/plain"}, "cookies": ["a=b"]}') == (
        404,
        [("content-type", "text/plain"), ("set-cookie", "a=b")],
    )


async def _with_api(timeout: float, work) -> None:
    dispatcher = Dispatcher()
    timeouts: list[bool] = []
    lines: list[str] = []
    api = RuntimeAPI(dispatcher, timeout=timeout, function_arn="arn:aws:lambda:us-east-1:123456789012:function:f", memory=128, log=lines.append, on_timeout=lambda: timeouts.append(True))
    await api.start()
    try:
        await work(api, dispatcher, timeouts, lines)
    finally:
        await api.close()


@pytest.mark.integration
def test_next_sends_the_documented_headers_and_optional_ones_only_when_set():
    async def work(api, dispatcher, timeouts, lines):
        async with httpx.AsyncClient(base_url=f"http://{api.address}", timeout=10) as client:
            plain = Invocation(b'{"n": 1}')
            await dispatcher.submit(plain)
            first = await client.get(f"{API}/invocation/next")
            assert first.status_code == 200 and first.json() == {"n": 1}
            assert first.headers["lambda-runtime-aws-request-id"] == plain.request_id
            assert int(first.headers["lambda-runtime-deadline-ms"]) == plain.deadline_ms
            assert first.headers["lambda-runtime-invoked-function-arn"].endswith(":function:f")
            assert first.headers["lambda-runtime-trace-id"].startswith("Root=1-")
            assert "lambda-runtime-client-context" not in first.headers and "lambda-runtime-cognito-identity" not in first.headers
            assert api.ready.is_set()
            answered = await client.post(f"{API}/invocation/{plain.request_id}/response", content=b'{"ok": true}')
            assert answered.status_code == 202
            assert await plain.messages.get() == Buffered(b'{"ok": true}', "application/json")
            again = await client.post(f"{API}/invocation/{plain.request_id}/response", content=b"{}")
            assert again.status_code == 400 and again.json()["errorType"] == "InvalidRequestID"

            mobile = Invocation(b"{}", client_context='{"client": {}}', cognito_identity='{"cognitoIdentityId": "x"}')
            await dispatcher.submit(mobile)
            second = await client.get(f"{API}/invocation/next")
            assert second.headers["lambda-runtime-client-context"] == '{"client": {}}'
            assert second.headers["lambda-runtime-cognito-identity"] == '{"cognitoIdentityId": "x"}'
            failed = await client.post(
                f"{API}/invocation/{mobile.request_id}/error",
                json={"errorMessage": "boom", "errorType": "ValueError"},
                headers={"Lambda-Runtime-Function-Error-Type": "ValueError"},
            )
            assert failed.status_code == 202 and await mobile.messages.get() == Failed("ValueError", "boom")

            init = await client.post(f"{API}/init/error", json={"errorMessage": "bad", "errorType": "Runtime.ImportModuleError"})
            assert init.status_code == 202 and api.init_error["errorType"] == "Runtime.ImportModuleError"

    asyncio.run(_with_api(30, work))


@pytest.mark.integration
def test_a_streamed_response_with_error_trailers_through_agentpacks_client():
    async def work(api, dispatcher, timeouts, lines):
        client = RuntimeAPIClient(api.address)
        invocation = Invocation(b"{}")
        await dispatcher.submit(invocation)
        got = await client.next_invocation()
        assert got.request_id == invocation.request_id and got.deadline == invocation.deadline_ms / 1000
        stream = await client.open_stream(got.request_id)
        await stream.write(b'{"statusCode": 200}' + b"\0" * 8)
        assert await invocation.messages.get() == StreamStart("application/vnd.awslambda.http-integration-response")
        assert await invocation.messages.get() == Chunk(b'{"statusCode": 200}' + b"\0" * 8), "each write arrives on its own"
        await stream.write(b"data: 1\n\n")
        assert await invocation.messages.get() == Chunk(b"data: 1\n\n")
        await stream.finish({"errorMessage": "failed halfway", "errorType": "RuntimeError"})
        end = await invocation.messages.get()
        assert end == StreamEnd({"errorType": "RuntimeError", "errorMessage": "failed halfway"})
        await client.close()

    asyncio.run(_with_api(30, work))


@pytest.mark.integration
def test_the_timeout_fails_the_invocation_and_asks_for_a_reset():
    async def work(api, dispatcher, timeouts, lines):
        client = RuntimeAPIClient(api.address)
        invocation = Invocation(b"{}")
        await dispatcher.submit(invocation)
        await client.next_invocation()
        failure = await asyncio.wait_for(invocation.messages.get(), 10)
        assert failure == Failed("Sandbox.Timedout", "Task timed out after 0.30 seconds")
        assert timeouts == [True] and any("Task timed out after 0.30 seconds" in line for line in lines)
        await client.close()
        async with httpx.AsyncClient(base_url=f"http://{api.address}") as http:
            late = await http.post(f"{API}/invocation/{invocation.request_id}/response", content=b"{}")
        assert late.status_code == 400, "a runtime answering after its timeout is refused"

    asyncio.run(_with_api(0.3, work))
