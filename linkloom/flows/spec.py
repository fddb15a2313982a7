"""The canonical flow spec: the one pydantic model every accepted spec shape loads into.

A spec is data. Values that contain ``{{ … }}`` are Jinja2 templates rendered at run time in a
sandbox (see ``linkloom.flows.templates``); nothing in a spec can run Python. The step types of
installed plugins (``linkloom.flows.plugins``) join the step union when this module is first
imported.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from linkloom.flows import plugins
from linkloom.flows.durations import format_duration, parse_duration

SLUG = r"^[a-z0-9][a-z0-9_-]{0,63}$"
STEP_ID = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "number", "minimum": 0},
                {
                    "type": "string",
                    "description": "30s, 5m, 1h30m, PT30S, or a number of seconds",
                },
            ]
        }
    ),
]
Template = str
JsonValue = Any
# A query parameter or header: a template, or a literal number, boolean or null that is sent as
# text (``limit: 50``, ``debug: true``) as a template rendering to one would be.
TextValue = Template | int | float | bool | None
MAX_COUNT = 100_000  # upper bound of counts and limits, so they fit every database integer
HttpStatus = Annotated[int, Field(ge=100, le=599)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class InputSpec(_Model):
    """One typed input of a flow."""

    type: Literal["string", "integer", "number", "boolean", "object", "array"] = "string"
    required: bool = False
    default: JsonValue = None
    enum: list[JsonValue] | None = None
    description: str | None = None


class RetryPolicy(_Model):
    """How often and how patiently a failed step is tried again."""

    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff: Literal["exponential", "fixed"] = "exponential"
    initial_delay: Duration = 1.0
    max_delay: Duration = 300.0
    jitter: bool = True
    retry_on_status: list[HttpStatus] = Field(
        default_factory=list,
        description="Extra HTTP statuses to retry besides 5xx and 429 (for example [409]).",
    )


class Defaults(_Model):
    """Settings every step inherits unless it sets its own."""

    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout: Duration = 300.0


class Schedule(_Model):
    """A cron expression in a time zone, or a fixed interval."""

    id: str | None = Field(default=None, pattern=SLUG)
    cron: str | None = None
    interval: Duration | None = None
    timezone: str = "UTC"
    inputs: dict[str, JsonValue] = Field(default_factory=dict)
    enabled: bool = True

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        if (self.cron is None) == (self.interval is None):
            raise ValueError("a schedule needs exactly one of 'cron' or 'interval'")
        if self.interval is not None and self.interval < 1:
            raise ValueError("a schedule interval must be at least 1s")
        return self


class WebhookTrigger(_Model):
    """Start a run when a signed HTTP request arrives at /api/v1/webhooks/{flow}/{id}."""

    type: Literal["webhook"]
    id: str = Field(pattern=SLUG)
    secret: str | None = Field(
        default=None, description="Name of the server secret used to verify the HMAC signature."
    )
    inputs: dict[str, Template] = Field(
        default_factory=dict, description="Inputs rendered from the request: {{ payload.x }}."
    )


def _succeeded() -> list[Literal["SUCCEEDED", "FAILED", "CANCELLED"]]:
    return ["SUCCEEDED"]


class EventTrigger(_Model):
    """Start a run when another flow's run ends with one of the given statuses."""

    type: Literal["event"]
    id: str = Field(pattern=SLUG)
    flow: str = Field(pattern=SLUG)
    statuses: list[Literal["SUCCEEDED", "FAILED", "CANCELLED"]] = Field(default_factory=_succeeded)
    inputs: dict[str, Template] = Field(
        default_factory=dict, description="Inputs rendered from {{ event.outputs.x }}."
    )


Trigger = Annotated[WebhookTrigger | EventTrigger, Field(discriminator="type")]


class Concurrency(_Model):
    """How runs of one flow share time with each other."""

    max_active_runs: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    overlap: Literal["allow", "skip", "queue", "cancel_previous"] = "allow"
    catchup: Literal["skip", "once", "all"] = "skip"
    catchup_limit: int = Field(default=100, ge=1, le=10_000)
    max_parallel_steps: int | None = Field(default=None, ge=1, le=MAX_COUNT)


JoinRule = Literal["all_success", "all_done", "one_success", "none_failed"]


class StepBase(_Model):
    """Fields every step has, whatever its type."""

    id: str = Field(pattern=STEP_ID)
    name: str | None = None
    description: str | None = None
    depends_on: list[str] = Field(default_factory=list)
    when: Template | None = Field(default=None, description="Skip the step unless this is true.")
    join: JoinRule = "all_success"
    retry: RetryPolicy | None = None
    timeout: Duration | None = None
    outputs: dict[str, Template] = Field(default_factory=dict)
    for_each: Template | list[JsonValue] | None = Field(
        default=None, description="Run the step once per item; results are collected in order."
    )
    max_parallel: int | None = Field(default=None, ge=1, le=MAX_COUNT)


class HttpStep(StepBase):
    """Call a user backend or any HTTP API."""

    type: Literal["http"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "POST"
    url: Template
    headers: dict[str, TextValue] = Field(default_factory=dict)
    query: dict[str, TextValue] = Field(default_factory=dict)
    body: JsonValue = None
    mode: Literal["sync", "async"] = "sync"
    expected_status: list[HttpStatus] | None = None
    heartbeat_timeout: Duration | None = None


class ShellStep(StepBase):
    """Run a command on the worker (only where the operator enables shell steps)."""

    type: Literal["shell"]
    command: Template | list[Template]
    args: list[Template] = Field(default_factory=list)
    env: dict[str, Template] = Field(default_factory=dict)
    cwd: str | None = None
    max_output_bytes: int = Field(default=1_000_000, ge=1, le=100_000_000)


class DelayStep(StepBase):
    """Wait durably: the timer holds no worker and survives restarts."""

    type: Literal["delay"]
    duration: Duration | None = None
    until: Template | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> DelayStep:
        if (self.duration is None) == (self.until is None):
            raise ValueError("a delay step needs exactly one of 'duration' or 'until'")
        return self


class TransformStep(StepBase):
    """Build an output from templates, a JMESPath expression or a data-adapter operation."""

    type: Literal["transform"]
    input: JsonValue = None
    template: JsonValue = None
    jmespath: str | None = None
    operation: Literal["map", "rename", "filter", "pick"] | None = None
    mapping: dict[str, str] | None = None
    fields: list[str] | None = None
    where: Template | None = None


class ConditionStep(StepBase):
    """Evaluate a condition and choose a branch; steps on the other branch are skipped."""

    type: Literal["condition"]
    condition: Template
    then: list[str] = Field(default_factory=list)
    else_: list[str] = Field(default_factory=list, alias="else")


class MergeStep(StepBase):
    """Combine upstream outputs: merge objects or concatenate lists."""

    type: Literal["merge"]
    mode: Literal["object", "concat"] = "object"
    sources: list[str] | None = None


class LlmMessage(_Model):
    role: Literal["system", "user", "assistant"]
    content: Template


class LlmStep(StepBase):
    """Call an OpenAI- or Anthropic-compatible chat model."""

    type: Literal["llm"]
    provider: Literal["openai", "anthropic"] = "openai"
    model: str
    system: Template | None = None
    prompt: Template | None = None
    messages: list[LlmMessage] = Field(default_factory=list)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=10_000_000)
    base_url: str | None = None
    api_key: Template | None = None
    response_format: Literal["text", "json"] = "text"

    @model_validator(mode="after")
    def _has_prompt(self) -> LlmStep:
        if not self.prompt and not self.messages:
            raise ValueError("an llm step needs 'prompt' or 'messages'")
        return self


class FlowCallStep(StepBase):
    """Start another flow with mapped inputs and wait for its outputs."""

    type: Literal["flow"]
    flow: str = Field(pattern=SLUG)
    inputs: dict[str, JsonValue] = Field(default_factory=dict)


class TaskStep(StepBase):
    """A step executed by a pull-mode worker polling the named queue."""

    type: Literal["task"]
    queue: str = Field(pattern=SLUG)
    task: str
    payload: JsonValue = None


BUILTIN_STEP_TYPES: dict[str, type[StepBase]] = {
    "http": HttpStep,
    "shell": ShellStep,
    "delay": DelayStep,
    "transform": TransformStep,
    "condition": ConditionStep,
    "merge": MergeStep,
    "llm": LlmStep,
    "flow": FlowCallStep,
    "task": TaskStep,
}

Step = Annotated[
    HttpStep
    | ShellStep
    | DelayStep
    | TransformStep
    | ConditionStep
    | MergeStep
    | LlmStep
    | FlowCallStep
    | TaskStep,
    Field(discriminator="type"),
]


class FlowSpec(_Model):
    """A flow: a DAG of steps, its inputs, schedules, triggers and policies."""

    id: str = Field(pattern=SLUG, description="A slug: lowercase letters, digits, '-' and '_'.")
    name: str | None = None
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    defaults: Defaults = Field(default_factory=Defaults)
    schedules: list[Schedule] = Field(default_factory=list)
    triggers: list[Trigger] = Field(default_factory=list)
    concurrency: Concurrency = Field(default_factory=Concurrency)
    outputs: dict[str, JsonValue] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)

    def step(self, step_id: str) -> StepBase:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def schedule_ids(self) -> list[str]:
        """Stable ids for the schedules: their own id, else ``schedule-<n>``."""
        return [s.id or f"schedule-{n}" for n, s in enumerate(self.schedules)]


STEP_TYPES: dict[str, type[StepBase]] = dict(BUILTIN_STEP_TYPES)  # builtins and plugins


def install_step_types(models: dict[str, type[StepBase]]) -> None:
    """Add step types (plugins, ``flows.plugins``) to ``FlowSpec``'s step union, in place."""
    if not models:
        return
    STEP_TYPES.update(models)
    union: Any = Union[tuple(STEP_TYPES.values())]  # noqa: UP007 (built from a runtime tuple)
    field = FlowSpec.model_fields["steps"]
    field.annotation = list[Annotated[union, Field(discriminator="type")]]
    FlowSpec.model_rebuild(force=True)


# The step types of installed plugins join the union now, before any model embeds FlowSpec.
plugins.attach(
    plugins.StepModel(base=StepBase, builtin=BUILTIN_STEP_TYPES, install=install_step_types)
)
