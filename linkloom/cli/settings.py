"""``loom config``: the server's effective settings, and the CLI's own local configuration.

Two different things share the group:

* ``loom config show`` prints the *server* settings this machine would run with (environment,
  ``LOOM_CONFIG_FILE``, defaults), secrets masked, as YAML or JSON; ``loom config reference``
  prints every setting as Markdown (``scripts/gen-config-docs`` writes it to
  ``docs/configuration.md``).
* ``loom config set|get|unset|path`` manage the *CLI client* configuration: which server to talk
  to and with which token. It lives in ``$XDG_CONFIG_HOME/linkloom/cli.json`` (default
  ``~/.config/linkloom/cli.json``, mode 0600). ``LOOM_SERVER_URL`` and ``LOOM_TOKEN`` override it.
  Other CLI modules call ``cli_config()``; ``loom server`` stores its first admin token with
  ``save_cli_config(token=…)``.
"""

from __future__ import annotations

import json
import os
import types
import typing
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from linkloom.cli.apps import config_app
from linkloom.errors import InvalidInput

if TYPE_CHECKING:
    from pydantic import BaseModel
    from pydantic.fields import FieldInfo

    from linkloom import config

# ``cli_config`` and ``loom config set|get`` run on a client-only install (no server extra), so
# the server settings (pydantic-settings) and logs (structlog) are imported where needed.
MASK = "***"

DEFAULT_SERVER_URL = "http://127.0.0.1:8080"
SERVER_URL_ENV = "LOOM_SERVER_URL"
TOKEN_ENV = "LOOM_TOKEN"
# CLI key → field in the file; both spellings accepted on the command line.
KEYS = {"server-url": "server_url", "server_url": "server_url", "token": "token"}


class UnknownCliKey(InvalidInput):
    """Unknown key {key!r}; use 'server-url' or 'token'."""

    code = "unknown_cli_key"


class BadServerUrl(InvalidInput):
    """Server URL {url!r} must start with http:// or https://."""

    code = "bad_server_url"


class CliConfigUnreadable(InvalidInput):
    """Cannot read {path}: {reason}. Fix or delete the file."""

    code = "cli_config_unreadable"


@dataclass(frozen=True, slots=True, kw_only=True)
class CliConfig:
    """Where the CLI sends requests and the token it sends."""

    server_url: str
    token: str | None


def cli_config_path() -> Path:
    """``$XDG_CONFIG_HOME/linkloom/cli.json``, or ``~/.config/linkloom/cli.json``."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "linkloom" / "cli.json"


def _read() -> dict[str, str]:
    path = cli_config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CliConfigUnreadable(path=str(path), reason=str(exc)) from exc
    if not isinstance(data, dict):
        raise CliConfigUnreadable(path=str(path), reason="not a JSON object")
    return {k: v for k, v in data.items() if isinstance(v, str)}


def _write(data: dict[str, str]) -> Path:
    path = cli_config_path()
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole and renamed into place, readable by the owner only: it holds a token.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".cli-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def cli_config() -> CliConfig:
    """The CLI's effective server URL and token: environment first, then the config file."""
    stored = _read()
    server_url = (
        os.environ.get(SERVER_URL_ENV) or stored.get("server_url") or DEFAULT_SERVER_URL
    ).rstrip("/")
    token = os.environ.get(TOKEN_ENV) or stored.get("token") or None
    return CliConfig(server_url=server_url, token=token)


def save_cli_config(*, server_url: str | None = None, token: str | None = None) -> Path:
    """Store the given values in the CLI config file (others are kept); returns its path."""
    data = _read()
    if server_url is not None:
        data["server_url"] = _checked_url(server_url)
    if token is not None:
        data["token"] = token
    return _write(data)


def _checked_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise BadServerUrl(url=url)
    return url.rstrip("/")


def _field(key: str) -> str:
    try:
        return KEYS[key.lower()]
    except KeyError:
        raise UnknownCliKey(key=key) from None


def _masked_token(token: str) -> str:
    return f"{token[:4]}…{MASK}" if len(token) > 12 else MASK


class OutputFormat(StrEnum):
    yaml = "yaml"
    json = "json"


@config_app.command("set")
def set_value(
    key: Annotated[str, typer.Argument(help="server-url or token")],
    value: Annotated[str, typer.Argument(help="The value to store.")],
) -> None:
    """Store a CLI setting (server URL or token) in the local config file."""
    field = _field(key)
    path = save_cli_config(**{field: value})
    typer.echo(f"{key} saved in {path}")


@config_app.command("get")
def get_value(
    key: Annotated[
        str | None, typer.Argument(help="server-url or token; without it, every setting.")
    ] = None,
    reveal: Annotated[bool, typer.Option(help="Print the token in full.")] = False,
) -> None:
    """Print the effective value of a CLI setting (environment overrides the file); without a
    key, every setting and where it comes from, the token masked unless --reveal."""
    effective = cli_config()
    if key is None:
        _show_all(effective, reveal=reveal)
        return
    if _field(key) == "server_url":
        typer.echo(effective.server_url)
        return
    if effective.token is None:
        typer.echo("(no token set: loom config set token <TOKEN>)", err=True)
        raise typer.Exit(1)
    typer.echo(effective.token if reveal else _masked_token(effective.token))
    if not reveal:
        typer.echo("(masked: 'loom config get token --reveal' prints it in full)", err=True)


def _show_all(effective: CliConfig, *, reveal: bool) -> None:
    stored = _read()
    path = cli_config_path()

    def source(env: str, field: str) -> str:
        if os.environ.get(env):
            return f"from {env}"
        return f"from {path}" if stored.get(field) else "default"

    token = effective.token
    shown = "(none: loom config set token <TOKEN>)"
    if token is not None:
        shown = token if reveal else _masked_token(token)
    typer.echo(f"server-url  {effective.server_url}  ({source(SERVER_URL_ENV, 'server_url')})")
    typer.echo(f"token       {shown}  ({source(TOKEN_ENV, 'token') if token else 'not set'})")
    if token is not None and not reveal:
        typer.echo("(the token is masked: 'loom config get token --reveal' prints it)", err=True)


@config_app.command("unset")
def unset_value(key: Annotated[str, typer.Argument(help="server-url or token")]) -> None:
    """Remove a CLI setting from the local config file."""
    data = _read()
    data.pop(_field(key), None)
    _write(data)
    typer.echo(f"{key} removed")


@config_app.command("path")
def show_path() -> None:
    """Print where the CLI config file lives."""
    typer.echo(str(cli_config_path()))


@config_app.command("show")
def show(
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="yaml or json.")
    ] = OutputFormat.yaml,
) -> None:
    """Print the server's effective settings (env, config file, defaults), secrets masked."""
    from linkloom import config

    settings = config.load_settings()
    data = masked_settings(settings)
    if output is OutputFormat.json:
        typer.echo(json.dumps(data, indent=2))
    else:
        import yaml

        typer.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)


@config_app.command("reference")
def reference() -> None:
    """Print every server setting as Markdown: variable, default, meaning."""
    typer.echo(render_reference(), nl=False)


def masked_settings(settings: config.Settings) -> dict[str, Any]:
    """The settings as plain data with every secret replaced by ``***``."""
    from linkloom import logs

    data = settings.model_dump(mode="json")
    masked: dict[str, Any] = logs.SecretMasker().mask(_mask_secret_fields(data, type(settings)))
    return masked


def _mask_secret_fields(data: Any, model: type[BaseModel]) -> Any:
    out = dict(data)
    for name, info in model.model_fields.items():
        if name not in out:
            continue
        nested = _model_of(info)
        if nested is not None:
            out[name] = _mask_secret_fields(out[name], nested)
        elif "SecretStr" in _type_name(info.annotation):
            value = out[name]
            if isinstance(value, dict):
                out[name] = {k: MASK for k in value}
            elif isinstance(value, list):
                out[name] = [MASK for _ in value]
            else:
                out[name] = MASK
    return out


# ----------------------------------------------------------------- reference documentation


@dataclass(frozen=True, slots=True, kw_only=True)
class SettingDoc:
    env: str
    type: str
    default: str
    description: str


def setting_docs() -> list[tuple[str, list[SettingDoc]]]:
    """Every setting, grouped: (group title, rows); ``ValueError`` for an undocumented one."""
    from linkloom import config

    top: list[SettingDoc] = []
    groups: list[tuple[str, list[SettingDoc]]] = [("General", top)]
    for name, info in config.Settings.model_fields.items():
        nested = _model_of(info)
        if nested is None:
            is_map = typing.get_origin(info.annotation) is dict
            top.append(_doc(f"LOOM_{name.upper()}" + ("__<NAME>" if is_map else ""), info))
            continue
        rows = [
            _doc(f"LOOM_{name.upper()}__{sub.upper()}", sub_info)
            for sub, sub_info in nested.model_fields.items()
        ]
        groups.append((f"`{name}`", rows))
    return groups


def _doc(env: str, info: FieldInfo) -> SettingDoc:
    if not info.description:
        raise ValueError(f"{env} has no description: add Field(description=…) in config.py")
    return SettingDoc(
        env=env,
        type=_type_name(info.annotation),
        default=_default_text(info),
        description=info.description,
    )


def _model_of(info: FieldInfo) -> type[BaseModel] | None:
    from pydantic import BaseModel

    annotation = info.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (types.UnionType, typing.Union):
        return " \\| ".join(_type_name(a) for a in args)
    if origin is not None:
        inner = ", ".join(_type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    if annotation is type(None):
        return "none"
    return getattr(annotation, "__name__", str(annotation))


def _default_text(info: FieldInfo) -> str:
    from pydantic_core import PydanticUndefined

    if info.default_factory is not None:
        value: Any = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "(required)"
    else:
        value = info.default
    if hasattr(value, "get_secret_value"):
        from linkloom import config

        secret = value.get_secret_value()
        return "(development key)" if secret == config.DEFAULT_SIGNING_KEY else "(set)"
    if isinstance(value, Path):
        home = Path.home()
        value = f"~/{value.relative_to(home)}" if value.is_relative_to(home) else str(value)
    if value is None:
        return "none"
    if value == "":
        return '""'
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def render_reference() -> str:
    """``docs/configuration.md``: generated from the Settings model, do not edit by hand."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by scripts/gen-config-docs from linkloom/config.py; do not edit. -->",
        "",
        "Every setting is an environment variable with the `LOOM_` prefix; groups nest with",
        "`__` (`LOOM_DATABASE__URL`). The same settings can live in a TOML, YAML or JSON file",
        "named by `LOOM_CONFIG_FILE`, nested the same way (`[database]` then `url = …`);",
        "environment variables win over the file. Lists and maps take JSON",
        "(`LOOM_SECURITY__ALLOWED_HOSTS='[\"api.internal\"]'`); a map's entries can also be set",
        "one by one (`LOOM_SECRETS__CRM_TOKEN=…`). `loom config show` prints the effective",
        "values with secrets masked.",
        "",
    ]
    for title, rows in setting_docs():
        lines += [f"## {title}", "", "| Variable | Type | Default | Meaning |", "|---|---|---|---|"]
        for row in rows:
            meaning = row.description.replace("|", "\\|").replace("\n", " ")
            cells = [f"`{row.env}`", row.type, f"`{row.default}`", meaning]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
