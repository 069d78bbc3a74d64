"""Where each protocol is served when the app does not configure it (AgentScope Runtime's
paths), apart from the protocols' code: an app routes a first request to these paths, and
makes the routes behind them then, without importing any protocol at start-up."""

#: A2A's agent card (A2A 1.0's well-known path)
A2A_CARD_PATH = "/.well-known/agent-card.json"
#: where a2a-sdk 0.3 servers also served the card (and some 0.3 clients still look)
A2A_PREVIOUS_CARD_PATH = "/.well-known/agent.json"
#: A2A's JSON-RPC endpoint
A2A_JSON_RPC_PATH = "/a2a"
#: the OpenAI Responses API
RESPONSES_PATH = "/compatible-mode/v1/responses"
#: AG-UI's run endpoint
AGUI_PATH = "/ag-ui"

#: every path above: where the default protocols answer
DEFAULT_PATHS = (A2A_CARD_PATH, A2A_PREVIOUS_CARD_PATH, A2A_JSON_RPC_PATH, RESPONSES_PATH, AGUI_PATH)

__all__ = [
    "A2A_CARD_PATH",
    "A2A_JSON_RPC_PATH",
    "A2A_PREVIOUS_CARD_PATH",
    "AGUI_PATH",
    "DEFAULT_PATHS",
    "RESPONSES_PATH",
]
