"""The settings models of ``[targets.<name>]`` tables in agentpack.toml, one per target.

Each row of ``agentpack.targets.TARGETS`` names its model here; ``load_config`` validates the
tables with them and hands the validated object to the builder, emulators and deployers
(``load_config(project)[0].targets["fc"]`` is an ``FCSettings``).  Every limit says whose it is,
so a bad value fails with one line naming the key, the allowed range and the fix.

Dependencies run one way: this module imports the table (a model checks ``python`` and ``arch``
against its row); the row names its model as ``"agentpack.target_settings:<Model>"`` and imports
it only when asked (``row.settings``), so reading the table never loads pydantic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from agentpack.targets import FC_RUNTIMES, TARGETS, Target


def _limit(
    low: float, high: float, unit: str, who: str, step: float | None = None, why: str | None = None
) -> AfterValidator:
    """A bound whose error says the allowed range and whose rule it is (so the fix is obvious)."""

    def check(value: float | None) -> float | None:
        if value is None:
            return value
        off_step = step is not None and not math.isclose(value / step, round(value / step), abs_tol=1e-9)
        if not low <= value <= high or off_step:
            what = f"a multiple of {step:g} {unit} " if step is not None else ""
            reason = why or f"{who}'s limit"
            raise ValueError(f"must be {what}between {low:g} and {high:g} {unit} ({reason})".replace("  ", " "))
        return value

    return AfterValidator(check)


def _pattern(regex: str, rule: str) -> AfterValidator:
    compiled = re.compile(regex)

    def check(value: str | None) -> str | None:
        if value is not None and not compiled.fullmatch(value):
            raise ValueError(f"must be {rule}")
        return value

    return AfterValidator(check)


_PORT = Annotated[int, _limit(1, 65535, "", "TCP", why="a TCP port")]
#: A control-plane endpoint override: ``host[:port]`` or ``http(s)://host[:port]`` (no path).
_ENDPOINT = Annotated[
    str | None,
    _pattern(
        r"(https?://)?[A-Za-z0-9.-]+(:\d{1,5})?/?",
        "host[:port] or https://host[:port] (no path), e.g. fcv3.cn-hangzhou.aliyuncs.com",
    ),
]
_AWS_ENDPOINT = Annotated[
    str | None,
    _pattern(
        r"https?://[A-Za-z0-9.-]+(:\d{1,5})?/?", "an http(s):// URL such as https://lambda.us-east-1.amazonaws.com"
    ),
]
_ALIYUN_REGION = Annotated[
    str | None, _pattern(r"[a-z]{2,}(-[a-z0-9]+)+", 'an Alibaba Cloud region id such as "cn-hangzhou"')
]
_RAM_ROLE = Annotated[
    str | None,
    _pattern(r"acs:ram::\d+:role/[A-Za-z0-9._@/-]+", "a RAM role ARN such as acs:ram::<account id>:role/<name>"),
]
#: ``api_key`` of the targets with ``allow_anonymous`` (FC, AgentRun, Lambda): whether the deploy
#: generates a key (``agentpack/deployers/api_key.py``).
_API_KEY = Annotated[
    bool | None,
    Field(
        description="an API key agentpack generates into AGENTPACK_API_KEYS (docs/deploy.md#api-keys): unset, for a "
        "public URL only; false, never; true, also behind signed requests",
        examples=[False],
    ),
]
#: OSS bucket names: 3-63 lowercase letters, digits and '-', starting and ending with a letter or digit.
_OSS_BUCKET = Annotated[
    str | None,
    _pattern(
        r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]",
        "an OSS bucket name: 3-63 lowercase letters, digits and '-', starting and ending with a letter or digit",
    ),
]
#: The folder agentpack's objects go under in the bucket (object names may not start with '/' or '\').
_OSS_PREFIX = Annotated[
    str | None,
    _pattern(
        r"([A-Za-z0-9._=+@~-]+/)*[A-Za-z0-9._=+@~-]*",
        "a folder such as \"agentpack\" or \"builds/agents\": letters, digits and ._=+@~- separated by '/', no leading '/'",
    ),
]
#: The variable the app reads its interrupt backend's Redis URL from, set from ``redis_url``.
REDIS_URL_VARIABLE = "AGENTPACK_REDIS_URL"
_SECRET_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TargetSettings(BaseModel):
    """Keys every ``[targets.<name>]`` table takes; each target's model adds its own.

    Settings left unset (``None``) mean "the platform's default": the deployer does not
    send them.  ``env`` is written in agentpack.toml and so is committed with the project;
    values that must stay out of it are listed by name in ``secrets`` and read from the
    shell or ``.env`` at deploy time, straight into the platform's environment settings —
    never into the artifact, the deployment state or a log.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the row of ``TARGETS`` this model belongs to (python and arch are checked against it)
    target: ClassVar[str] = ""
    #: the platform's rules for environment variables
    env_key_pattern: ClassVar[str] = r"[A-Za-z_][A-Za-z0-9_]*"
    env_key_rule: ClassVar[str] = "letters, digits and '_', not starting with a digit"
    reserved_env_prefixes: ClassVar[tuple[str, ...]] = ()
    reserved_env_names: ClassVar[frozenset[str]] = frozenset()
    env_limit_bytes: ClassVar[int | None] = None
    #: what the deployer sends (and the emulator assumes) for a sizing setting left unset, where
    #: the platform's own default would break an agent or the API requires a value (see ``effective``)
    sizing_defaults: ClassVar[Mapping[str, float]] = {}

    python: str | None = Field(
        None, description="Python version for this target (overrides the top-level python)", examples=["3.12"]
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="environment variables set on the platform (committed: no secrets here)",
        examples=[{"LOG_LEVEL": "info"}],
    )
    secrets: list[str] = Field(
        default_factory=list,
        description="names of variables whose values come from the shell or .env at deploy time",
        examples=[["OPENAI_API_KEY"]],
    )
    redis_url: str | None = Field(
        None,
        description='Redis for stops across instances: "${NAME}" takes it from NAME in the shell or .env at deploy time',
        examples=["${REDIS_URL}"],
    )

    @classmethod
    def _row(cls) -> Target:
        return TARGETS[cls.target]

    @field_validator("python")
    @classmethod
    def _python_offered(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not re.fullmatch(r"\d+\.\d+", value):
            raise ValueError('must look like "3.12"')
        offered = cls._row().pythons
        if value not in offered:
            raise ValueError(f"{cls.target} offers Python {', '.join(offered)}; choose one of those")
        return value

    @field_validator("env")
    @classmethod
    def _env_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            cls._check_variable_name(key, "key")
        size = cls.env_size_over_limit(value)
        if size is not None:
            raise ValueError(
                f"holds {size} bytes, over the platform's {cls.env_limit_kb()} KB for all variables; move large values into files or fewer variables"
            )
        return value

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, value: list[str]) -> list[str]:
        for name in value:
            cls._check_variable_name(name, "secret")
        repeated = sorted({n for n in value if value.count(n) > 1})
        if repeated:
            raise ValueError(f"lists {', '.join(repeated)} more than once; list each name once")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        reference = _SECRET_REF.fullmatch(value)
        if reference:
            cls._check_variable_name(reference.group(1), "redis_url variable")
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                'must be a redis://, rediss:// or unix:// URL, or "${NAME}" to read it from NAME in the shell or .env at deploy time'
            )
        if parts.password:
            raise ValueError(
                "holds a password, which would be committed with agentpack.toml; "
                'put the URL in .env as REDIS_URL and write redis_url = "${REDIS_URL}"'
            )
        return value

    @model_validator(mode="after")
    def _no_overlap(self) -> TargetSettings:
        both = sorted(set(self.env) & set(self.secret_names()))
        if both:
            raise ValueError(
                f"{', '.join(both)} is in both env and secrets; keep it in secrets only (its value comes from the shell or .env)"
            )
        if self.redis_url is not None and REDIS_URL_VARIABLE in self.env:
            raise ValueError("env sets AGENTPACK_REDIS_URL and redis_url is set too; keep redis_url only")
        return self

    @classmethod
    def _check_variable_name(cls, name: str, what: str) -> None:
        if not re.fullmatch(cls.env_key_pattern, name):
            raise ValueError(f"{what} {name!r} is not a valid variable name on {cls.target}: use {cls.env_key_rule}")
        prefix = next((p for p in cls.reserved_env_prefixes if name.upper().startswith(p)), None)
        if prefix is not None:
            raise ValueError(f"{what} {name!r}: names starting with {prefix} are reserved by the platform; rename it")
        if name in cls.reserved_env_names:
            raise ValueError(f"{what} {name!r} is reserved by the platform, which sets it itself; rename it")

    @classmethod
    def env_size_over_limit(cls, variables: Mapping[str, str]) -> int | None:
        """The bytes ``variables`` hold (names and values, as the platforms count them) when that is
        over the platform's limit for all variables; None when within it or the platform has none."""
        size = sum(len(k.encode()) + len(v.encode()) for k, v in variables.items())
        return size if cls.env_limit_bytes is not None and size > cls.env_limit_bytes else None

    @classmethod
    def env_limit_kb(cls) -> int:
        """The limit in KB, for messages."""
        return (cls.env_limit_bytes or 0) // 1024

    def effective(self, key: str) -> Any:
        """The value of the sizing setting ``key`` the platform gets: the setting, else ``sizing_defaults``."""
        value = getattr(self, key)
        return self.sizing_defaults[key] if value is None else value

    @property
    def redis_url_secret(self) -> str | None:
        """The variable ``redis_url`` names (``"${NAME}"``), or None when it is a literal URL or unset."""
        match = _SECRET_REF.fullmatch(self.redis_url or "")
        return match.group(1) if match else None

    def secret_names(self) -> list[str]:
        """Every variable whose value the deployer reads from the shell or ``.env``."""
        extra = [self.redis_url_secret] if self.redis_url_secret and self.redis_url_secret not in self.secrets else []
        return [*self.secrets, *extra]

    def platform_environment(self, secret_values: Mapping[str, str]) -> dict[str, str]:
        """The variables a deployer sets on the platform: ``env``, the value of each secret (from
        ``secret_values``: the shell and ``.env``), and ``AGENTPACK_REDIS_URL`` from ``redis_url``.

        Raises ValueError naming a secret without a value, or when the whole set is over the
        platform's limit (known only now: secrets' values are not in the config).
        """
        missing = [name for name in self.secret_names() if name not in secret_values]
        if missing:
            raise ValueError(
                f"[targets.{self.target}] secrets: {', '.join(missing)} has no value; set it in the shell or in .env"
            )
        values = {**self.env, **{name: secret_values[name] for name in self.secrets}}
        if self.redis_url is not None:
            secret = self.redis_url_secret
            values[REDIS_URL_VARIABLE] = secret_values[secret] if secret else self.redis_url
        size = self.env_size_over_limit(values)
        if size is not None:
            raise ValueError(
                f"[targets.{self.target}]: env and secrets hold {size} bytes, over the platform's {self.env_limit_kb()} KB; "
                "shorten the values or move large ones into files"
            )
        return values


class LocalSettings(TargetSettings):
    """``[targets.local]``: this machine, uvicorn serving the unpacked artifact."""

    target: ClassVar[str] = "local"

    port: _PORT = Field(8090, description="port the bootstrap serves on when $PORT is not set", examples=[8090])


class _AlibabaSettings(TargetSettings):
    """What Function Compute and AgentRun share (both run on Function Compute's infrastructure)."""

    env_key_pattern: ClassVar[str] = r"[A-Za-z][A-Za-z0-9_]*"
    env_key_rule: ClassVar[str] = "letters, digits and '_', starting with a letter"
    reserved_env_prefixes: ClassVar[tuple[str, ...]] = ("FC_",)
    env_limit_bytes: ClassVar[int | None] = 4096
    #: the product and what it calls a deployment, in messages
    product: ClassVar[str]
    resource: ClassVar[str]

    region: _ALIYUN_REGION = Field(None, description="Alibaba Cloud region", examples=["cn-hangzhou"])
    role: _RAM_ROLE = Field(
        None,
        description="RAM role ARN the code runs as (its temporary credentials reach the handler)",
        examples=["acs:ram::1234567890:role/agent"],
    )
    port: _PORT = Field(
        9000, description="port the platform sends requests to (the bootstrap listens on it)", examples=[9000]
    )
    endpoint: _ENDPOINT = Field(
        None,
        description="control-plane endpoint (default: the region's; env AGENTPACK_FC_ENDPOINT / AGENTPACK_AGENTRUN_ENDPOINT)",
        examples=["fcv3.cn-hangzhou.aliyuncs.com"],
    )

    # -- a VPC, SLS logs and code through OSS, which both products take in the same shape --------
    vpc_id: Annotated[str | None, _pattern(r"vpc-[a-z0-9]+", 'a VPC id such as "vpc-bp1..."')] = Field(
        None, description="VPC the instances join (to reach Redis and other private services)", examples=["vpc-bp1abc"]
    )
    vswitch_ids: list[Annotated[str, _pattern(r"vsw-[a-z0-9]+", 'a vSwitch id such as "vsw-bp1..."')]] | None = Field(
        None, description="vSwitches of vpc_id the instances use", examples=[["vsw-bp1abc"]]
    )
    security_group_id: Annotated[str | None, _pattern(r"sg-[a-z0-9]+", 'a security group id such as "sg-bp1..."')] = (
        Field(None, description="security group of vpc_id the instances are in", examples=["sg-bp1abc"])
    )
    log_project: Annotated[str | None, _pattern(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", "an SLS project name")] = Field(
        None, description="Simple Log Service project the instances write their logs to", examples=["my-agent-logs"]
    )
    log_store: Annotated[str | None, _pattern(r"[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]", "an SLS logstore name")] = Field(
        None, description="logstore in log_project", examples=["agent-logs"]
    )
    code_upload: Literal["auto", "inline", "oss"] = Field(
        "auto",
        description='how the code reaches the platform: "auto" (inline up to its limit -- Function Compute 100 MB, '
        'AgentRun 10 MB zipped -- and through OSS above), "inline" or "oss"',
        examples=["oss"],
    )
    oss_bucket: _OSS_BUCKET = Field(
        None,
        description='existing OSS bucket the code goes through above the inline limit (or with code_upload = "oss"); '
        "never created by agentpack",
        examples=["my-agent-artifacts"],
    )
    oss_prefix: _OSS_PREFIX = Field(
        None,
        description='folder in the bucket; objects are <oss_prefix>/<name>/<sha256>.zip (default "agentpack")',
        examples=["agentpack"],
    )
    oss_region: _ALIYUN_REGION = Field(
        None, description="the bucket's region (default: the deployment's region)", examples=["cn-hangzhou"]
    )
    oss_endpoint: _ENDPOINT = Field(
        None,
        description="OSS endpoint (default: the region's; env AGENTPACK_OSS_ENDPOINT)",
        examples=["oss-cn-hangzhou.aliyuncs.com"],
    )

    @field_validator("oss_prefix")
    @classmethod
    def _no_dot_folders(cls, value: str | None) -> str | None:
        if value is not None and any(part in (".", "..") for part in value.split("/")):
            raise ValueError("must not have '.' or '..' folders; name the folder plainly, e.g. \"agentpack\"")
        return value

    @property
    def oss_folder(self) -> str:
        """``oss_prefix`` without a trailing '/' ("agentpack" when unset; "" puts objects at the bucket's root)."""
        return (self.oss_prefix if self.oss_prefix is not None else "agentpack").strip("/")

    @model_validator(mode="after")
    def _groups_go_together(self) -> _AlibabaSettings:
        """Settings that only mean something together: OSS with its bucket, the VPC's three, SLS's two."""
        if self.code_upload == "oss" and not self.oss_bucket:
            raise ValueError(
                f'code_upload = "oss" needs oss_bucket = "<an existing bucket in the {self.resource}\'s region>"'
            )
        if self.code_upload == "inline":
            named = [
                key
                for key in ("oss_bucket", "oss_prefix", "oss_region", "oss_endpoint")
                if getattr(self, key) is not None
            ]
            if named:
                raise ValueError(
                    f'code_upload = "inline" never uses OSS, but {", ".join(named)} is set; remove it or use code_upload = "auto"'
                )
        elif not self.oss_bucket:
            named = [key for key in ("oss_prefix", "oss_region", "oss_endpoint") if getattr(self, key) is not None]
            if named:
                raise ValueError(
                    f'{", ".join(named)} is set but oss_bucket is not; add oss_bucket = "<bucket>" or remove {", ".join(named)}'
                )
        network = [key for key in ("vpc_id", "vswitch_ids", "security_group_id") if getattr(self, key)]
        if network and len(network) != 3:
            raise ValueError(
                f"vpc_id, vswitch_ids and security_group_id go together ({self.product} needs all three to join a VPC); "
                f"only {', '.join(network)} is set"
            )
        if (self.log_project is None) != (self.log_store is None):
            raise ValueError(
                f"log_project and log_store go together: set both to send the {self.resource}'s logs to SLS, or neither"
            )
        return self


class FCSettings(_AlibabaSettings):
    """``[targets.fc]``: Function Compute 3.0, custom runtime."""

    target: ClassVar[str] = "fc"
    product: ClassVar[str] = "Function Compute"
    resource: ClassVar[str] = "function"
    #: FC's own 3 s timeout would cut every stream
    sizing_defaults: ClassVar[Mapping[str, float]] = {"timeout": 300, "instance_concurrency": 20}
    #: FC requires a handler even for a custom runtime, where nothing reads it
    handler: ClassVar[str] = "index.handler"

    function_name: Annotated[
        str | None,
        _pattern(r"[A-Za-z_][A-Za-z0-9_-]{0,63}", "1-64 letters, digits, '_' or '-', not starting with a digit or '-'"),
    ] = Field(None, description="function name (default: the project name)", examples=["my-agent"])
    memory: Annotated[int | None, _limit(128, 32768, "MB", "Function Compute", step=64)] = Field(
        None, description="memory in MB", examples=[1024]
    )
    cpu: Annotated[float | None, _limit(0.05, 16, "vCPU", "Function Compute", step=0.05)] = Field(
        None, description="vCPUs", examples=[1.0]
    )
    timeout: Annotated[int | None, _limit(1, 86400, "seconds", "Function Compute")] = Field(
        None, description="seconds a request may run before the platform ends it", examples=[300]
    )
    instance_concurrency: Annotated[int | None, _limit(1, 200, "sessions", "Function Compute")] = Field(
        None,
        description="sessions one instance serves at once (FC's sessionConcurrencyPerInstance; "
        "with session affinity FC fixes request concurrency at 200)",
        examples=[20],
    )
    runtime: Literal["custom.debian10", "custom.debian11", "custom.debian12"] | None = Field(
        None,
        description="custom runtime (default: the one with the artifact's Python: 3.10 debian10, "
        "3.11 debian12, 3.12 debian11; 3.12 also runs on debian12)",
        examples=["custom.debian12"],
    )
    allow_anonymous: bool = Field(
        False, description="HTTP trigger without authentication (default: signed requests only)", examples=[False]
    )
    api_key: _API_KEY = None

    def sizing(self) -> tuple[float | None, int | None]:
        """The cpu and memory the deployer sends.  Both unset leave FC's defaults; one set brings
        the other at 2 GB per vCPU (on FC's 0.05 vCPU and 64 MB steps), so FC never pairs a value
        with its default or the function's current one outside 1-4 GB per vCPU."""
        cpu, memory = self.cpu, self.memory
        if cpu is None and memory is not None:
            cpu = round(min(16.0, max(0.05, round(memory / 2048 / 0.05) * 0.05)), 2)
        elif memory is None and cpu is not None:
            memory = int(min(32768, max(128, round(cpu * 2048 / 64) * 64)))
        return cpu, memory

    @model_validator(mode="after")
    def _cpu_memory_ratio(self) -> FCSettings:
        """FC's rules that tie settings together, on the values that will be sent (derived ones included)."""
        cpu, memory = self.sizing()
        if cpu is not None and memory is not None and not 1 - 1e-9 <= (memory / 1024) / cpu <= 4 + 1e-9:
            said = " with ".join(
                f"{key} = {value:g}" if getattr(self, key) is not None else f"{key} {value:g} (sent with it)"
                for key, value in (("cpu", cpu), ("memory", memory))
            )
            raise ValueError(
                f"{said}: Function Compute needs 1 to 4 GB of memory per vCPU; "
                f"use memory between {math.ceil(cpu * 1024 / 64) * 64} and {math.floor(cpu * 4096 / 64) * 64}"
            )
        if self.runtime is not None and self.python is not None and self.python not in FC_RUNTIMES[self.runtime]:
            offered = ", ".join(f"{runtime} ({', '.join(pythons)})" for runtime, pythons in FC_RUNTIMES.items())
            raise ValueError(
                f"runtime = {self.runtime!r} has no Python {self.python}; Function Compute's custom runtimes offer {offered}"
            )
        return self


class AgentRunSettings(_AlibabaSettings):
    """``[targets.agentrun]``: an AgentRun agent runtime with a code artifact."""

    target: ClassVar[str] = "agentrun"
    product: ClassVar[str] = "AgentRun"
    resource: ClassVar[str] = "runtime"
    #: the API requires cpu and memory
    sizing_defaults: ClassVar[Mapping[str, float]] = {"cpu": 2.0, "memory": 4096}

    runtime_name: Annotated[
        str | None,
        _pattern(r"[A-Za-z][A-Za-z0-9_-]{0,127}", "1-128 letters, digits, '_' or '-', starting with a letter"),
    ] = Field(None, description="agent runtime name (default: the project name)", examples=["my-agent"])
    memory: Annotated[int | None, _limit(128, 32768, "MB", "AgentRun")] = Field(
        None, description="memory in MB", examples=[2048]
    )
    cpu: Annotated[float | None, _limit(0.05, 16, "vCPU", "AgentRun")] = Field(
        None, description="vCPUs", examples=[2.0]
    )
    session_concurrency: Annotated[int | None, _limit(1, 200, "sessions", "AgentRun")] = Field(
        None, description="sessions one instance serves at once", examples=[20]
    )
    idle_timeout: Annotated[int | None, _limit(1, 86400, "seconds", "AgentRun")] = Field(
        None, description="seconds an idle session lives", examples=[600]
    )
    allow_anonymous: bool = Field(
        False,
        description="public endpoint anyone may call (default: callers must sign with the account's keys)",
        examples=[False],
    )
    api_key: _API_KEY = None

    @model_validator(mode="after")
    def _agentrun_rules(self) -> AgentRunSettings:
        """The rules that tie settings together, checked on the values that will be sent (defaults included)."""
        cpu, memory = float(self.effective("cpu")), int(self.effective("memory"))
        if not 1 - 1e-9 <= (memory / 1024) / cpu <= 4 + 1e-9:
            said = " and ".join(
                f"{key} = {getattr(self, key):g}"
                if getattr(self, key) is not None
                else f"{key} {self.effective(key):g} (the default)"
                for key in ("cpu", "memory")
            )
            raise ValueError(
                f"{said}: AgentRun needs 1 to 4 GB of memory per vCPU; use memory between "
                f"{math.ceil(cpu * 1024)} and {math.floor(cpu * 4096)}, or set cpu to match"
            )
        return self


_LAMBDA_RESERVED = frozenset(
    {
        "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
    }
)  # fmt: skip


class LambdaSettings(TargetSettings):
    """``[targets.lambda]``: AWS Lambda's managed Python runtime."""

    target: ClassVar[str] = "lambda"
    env_key_pattern: ClassVar[str] = r"[A-Za-z][A-Za-z0-9_]+"
    env_key_rule: ClassVar[str] = "two or more letters, digits and '_', starting with a letter"
    reserved_env_names: ClassVar[frozenset[str]] = _LAMBDA_RESERVED
    env_limit_bytes: ClassVar[int | None] = 4096
    #: Lambda's own 3 s and 128 MB are too small for an agent
    sizing_defaults: ClassVar[Mapping[str, float]] = {"timeout": 30, "memory": 1024}

    region: Annotated[str | None, _pattern(r"[a-z]{2}(-[a-z]+)+-\d+", 'an AWS region such as "us-east-1"')] = Field(
        None, description="AWS region", examples=["us-east-1"]
    )
    function_name: Annotated[str | None, _pattern(r"[A-Za-z0-9_-]{1,64}", "1-64 letters, digits, '_' or '-'")] = Field(
        None, description="function name (default: the project name)", examples=["my-agent"]
    )
    memory: Annotated[int | None, _limit(128, 10240, "MB", "Lambda")] = Field(
        None, description="memory in MB", examples=[1024]
    )
    timeout: Annotated[int | None, _limit(1, 900, "seconds", "Lambda")] = Field(
        None, description="seconds an invocation may run before Lambda ends it", examples=[300]
    )
    arch: str | None = Field(None, description="x86_64 or arm64", examples=["arm64"])
    streaming: bool = Field(
        True,
        description="stream responses as the agent makes them (function URL in RESPONSE_STREAM mode); "
        "false: whole answers, for API Gateway",
        examples=[False],
    )
    role: Annotated[
        str | None,
        _pattern(
            r"arn:aws[a-zA-Z-]*:iam::\d{12}:role/[\w+=,.@/-]+",
            "an IAM role ARN such as arn:aws:iam::123456789012:role/agent",
        ),
    ] = Field(None, description="execution role ARN", examples=["arn:aws:iam::123456789012:role/agent"])
    allow_anonymous: bool = Field(
        False, description="function URL without IAM auth (default: AWS_IAM)", examples=[False]
    )
    api_key: _API_KEY = None
    endpoint: _AWS_ENDPOINT = Field(
        None,
        description="Lambda API endpoint (default: the region's; env AGENTPACK_LAMBDA_ENDPOINT or AWS_ENDPOINT_URL_LAMBDA)",
        examples=["https://lambda.us-east-1.amazonaws.com"],
    )

    @field_validator("arch")
    @classmethod
    def _arch_offered(cls, value: str | None) -> str | None:
        if value is not None and value not in cls._row().archs:
            raise ValueError(f"Lambda runs on {' or '.join(cls._row().archs)}; choose one of those")
        return value

    @model_validator(mode="after")
    def _wrapper_is_ours(self) -> LambdaSettings:
        if self.streaming and "AWS_LAMBDA_EXEC_WRAPPER" in self.env:
            raise ValueError(
                "env sets AWS_LAMBDA_EXEC_WRAPPER, which agentpack sets itself when streaming = true (the default); "
                "remove it from env, or set streaming = false"
            )
        return self


class ModelStudioSettings(TargetSettings):
    """``[targets.modelstudio]``: a Model Studio (Bailian) high-code agent in a workspace.

    The deploy API (HighCodeDeploy) takes no environment variables, and agentpack never writes
    them into the artifact, so ``env``, ``secrets`` and ``redis_url`` are refused at deploy time
    with the fix: set them on the agent in the Model Studio console.
    """

    target: ClassVar[str] = "modelstudio"

    workspace: Annotated[
        str | None,
        _pattern(r"[A-Za-z0-9_-]{1,64}", "a workspace id such as \"llm-abc123\" (letters, digits, '_', '-')"),
    ] = Field(
        None, description="Model Studio workspace id (default: env MODELSTUDIO_WORKSPACE_ID)", examples=["llm-xxxx"]
    )
    region: _ALIYUN_REGION = Field(
        None, description="region of the Model Studio API (default cn-beijing)", examples=["cn-beijing"]
    )
    endpoint: _ENDPOINT = Field(
        None,
        description="Model Studio API endpoint (default bailian.<region>.aliyuncs.com; env AGENTPACK_MODELSTUDIO_ENDPOINT or MODELSTUDIO_ENDPOINT)",
        examples=["bailian.cn-beijing.aliyuncs.com"],
    )
    agent_name: Annotated[str | None, _pattern(r"[^\x00-\x1f]{1,64}", "1-64 characters without control characters")] = (
        Field(
            None,
            description="agent name, the key deploys create or update by (default: the project name)",
            examples=["my-agent"],
        )
    )
    description: Annotated[str | None, _pattern(r"[^\x00-\x08]{0,1000}", "at most 1000 characters")] = Field(
        None, description="agent description shown in the console", examples=["Answers questions about orders"]
    )
    telemetry: bool = Field(
        False, description="let the platform trace the agent (HighCodeDeploy telemetryEnabled)", examples=[False]
    )
    port: Literal[8080] = Field(
        8080, description="the port the high-code runtime sends requests to (fixed: 8080)", examples=[8080]
    )
    invoke_url: Annotated[
        str | None, _pattern(r"https?://[^\s]+", "an http(s):// URL template with {agent_id}, {workspace} or both")
    ] = Field(
        None,
        description="where callers reach a deployed agent (env AGENTPACK_MODELSTUDIO_INVOKE_URL; "
        "default https://dashscope.aliyuncs.com/api/v1/apps/{agent_id})",
        examples=["https://dashscope.aliyuncs.com/api/v1/apps/{agent_id}"],
    )
