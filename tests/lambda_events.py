"""Lambda event shapes as AWS documents them: function URL / HTTP API (2.0 and 1.0), REST API, ALB, Lambda@Edge."""

from __future__ import annotations

import base64
import json
from typing import Any, Optional
from urllib.parse import parse_qsl

SOURCE_IP = "203.0.113.9"


def _body(body: Any, b64: bool) -> tuple[Optional[str], bool]:
    if body is None:
        return None, False
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    raw = raw.encode() if isinstance(raw, str) else raw
    if b64:
        return base64.b64encode(raw).decode(), True
    return raw.decode(), False


def function_url(method: str, raw_path: str, body: Any = None, query: str = "", b64: bool = False, headers: Optional[dict] = None, cookies: Optional[list] = None) -> dict:
    """A function URL event (payload format 2.0); ``raw_path`` as the client sent it, percent-encoded."""
    text, encoded = _body(body, b64)
    event = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": {"content-type": "application/json", "host": "abcdefg.lambda-url.us-east-1.on.aws", "x-forwarded-proto": "https", **(headers or {})},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdefg",
            "domainName": "abcdefg.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abcdefg",
            "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": SOURCE_IP, "userAgent": "test"},
            "requestId": "e1506fd5-9e7b-434f-bd42-4f8fa224b599",
            "routeKey": "$default",
            "stage": "$default",
            "time": "12/Mar/2020:19:03:58 +0000",
            "timeEpoch": 1583348638390,
        },
        "isBase64Encoded": encoded,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = {k: v for k, v in parse_qsl(query)}
    if text is not None:
        event["body"] = text
    return event


def http_api_v2(method: str, raw_path: str, body: Any = None, query: str = "") -> dict:
    event = function_url(method, raw_path, body, query)
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {raw_path}"
    event["requestContext"]["domainName"] = event["headers"]["host"] = "r3pmxmplak.execute-api.us-east-2.amazonaws.com"
    return event


def _v1(method: str, path: str, body: Any, query: dict[str, str]) -> dict:
    text, encoded = _body(body, False)
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json", "Host": "r3pmxmplak.execute-api.us-east-2.amazonaws.com"},
        "multiValueHeaders": {"Content-Type": ["application/json"], "Host": ["r3pmxmplak.execute-api.us-east-2.amazonaws.com"]},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} or None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "identity": {"sourceIp": SOURCE_IP, "userAgent": "test"},
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def rest_api(method: str, path: str, body: Any = None, query: Optional[dict[str, str]] = None) -> dict:
    """An API Gateway REST API proxy event (payload 1.0, no ``version`` key)."""
    return _v1(method, path, body, query or {})


def http_api_v1(method: str, path: str, body: Any = None, query: Optional[dict[str, str]] = None) -> dict:
    """An API Gateway HTTP API event with payload format 1.0."""
    event = _v1(method, path, body, query or {})
    event["version"] = "1.0"
    return event


def alb(method: str, path: str, query: Optional[dict[str, str]] = None, body: Any = None) -> dict:
    text, encoded = _body(body, False)
    return {
        "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/lambda/abc"}},
        "httpMethod": method,
        "path": path,
        "queryStringParameters": query or {},
        "headers": {"host": "lambda-alb-123578498.us-east-2.elb.amazonaws.com", "x-forwarded-for": SOURCE_IP, "x-forwarded-proto": "https", "content-type": "application/json"},
        "body": text or "",
        "isBase64Encoded": encoded,
    }


def lambda_at_edge(method: str, uri: str, querystring: str = "") -> dict:
    return {
        "Records": [
            {
                "cf": {
                    "config": {"distributionId": "EDFDVBD6EXAMPLE", "eventType": "origin-request", "requestId": "4TyzHTaYWb1GX1qTfsHhEqV6HUDd_BzoBZnwfnvQc_1oF26ClkoUSEQ=="},
                    "request": {
                        "clientIp": SOURCE_IP,
                        "headers": {"host": [{"key": "Host", "value": "d111111abcdef8.cloudfront.net"}]},
                        "method": method,
                        "querystring": querystring,
                        "uri": uri,
                    },
                }
            }
        ]
    }


def body_of(answer: dict) -> bytes:
    """The response body of a handler's answer, decoded from base64 when marked so."""
    body = answer.get("body") or ""
    return base64.b64decode(body) if answer.get("isBase64Encoded") else body.encode()
