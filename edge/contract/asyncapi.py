"""Generate the AsyncAPI 3.0 document of the MQTT contract from the payload models.

    python -m portlane.edge.contract.asyncapi > docs/asyncapi.yaml

``tests/contract/test_contract.py`` fails when the checked-in document is stale.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml
from portlane.edge import __version__
from pydantic import BaseModel

from .commands import ARGS
from .envelope import Envelope
from .events import EVENTS, CommandResponse, UnitStatus
from .topics import LANE_SCOPED_EVENTS, PREFIX, Topics

#: A topic with the site and the unit left as the AsyncAPI parameters ``{site}`` and ``{unit}``.
_ANY_UNIT = Topics("{site}", "{unit}")

__all__ = ["build", "render"]

PARAMS = {
    "site": {"description": "site id, e.g. zhuhai-hzmb-cargo"},
    "unit": {"description": "lane id (e.g. c1) or scanner id (e.g. xray-1)"},
}
#: A scanner's scan.* events go on per-lane topics (contract.topics): the lane whose passage it is.
LANE_PARAMS = {
    "site": PARAMS["site"],
    "unit": {"description": "scanner id (e.g. xray-1)"},
    "lane": {"description": "the lane whose passage the event is about (data.lane); only that lane may read it"},
}


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    s = model.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = s.pop("$defs", {})
    return {"schema": s, "defs": defs}


def build() -> dict[str, Any]:
    from portlane.edge.contract.commands import COMMAND_NAMES, SignedCommand

    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    def add_schema(name: str, model: type[BaseModel]) -> str:
        s = _schema(model)
        schemas.update(s["defs"])
        schemas[name] = s["schema"]
        return f"#/components/schemas/{name}"

    env = _schema(Envelope)
    env_schema = env["schema"]
    schemas["Envelope"] = env_schema
    for type_, model in EVENTS.items():
        cname = "".join(part.capitalize() for part in type_.replace(".", "_").split("_"))
        ref = add_schema(model.__name__, model)
        msg_name = f"{cname}Event"
        messages[msg_name] = {
            "name": type_,
            "title": f"event {type_}",
            "summary": (model.__doc__ or "").strip().split("\n")[0] or type_,
            "contentType": "application/json",
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/Envelope"},
                    {"type": "object", "properties": {"type": {"const": f"portlane.{type_}"}, "data": {"$ref": ref}}},
                ]
            },
        }
        ch = f"event.{type_}"
        scoped = type_ in LANE_SCOPED_EVENTS
        channels[ch] = {
            "address": _ANY_UNIT.lane_event(type_, "{lane}") if scoped else _ANY_UNIT.event(type_),
            "parameters": LANE_PARAMS if scoped else PARAMS,
            "messages": {msg_name: {"$ref": f"#/components/messages/{msg_name}"}},
            "bindings": {"mqtt": {"qos": 1, "retain": False}},
        }
        operations[f"publish.{type_}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{ch}"},
            "summary": (
                f"the scanner publishes {type_} on the topic of the lane whose passage it is (QoS 1, via the "
                "durable outbox); a lane reads only its own (…/event/+/{lane})"
                if scoped
                else f"a lane or scanner publishes {type_} (QoS 1, via the durable outbox)"
            ),
        }
    status_ref = add_schema("UnitStatus", UnitStatus)
    messages["Status"] = {
        "name": "status",
        "contentType": "application/json",
        "payload": {
            "oneOf": [
                {
                    "allOf": [
                        {"$ref": "#/components/schemas/Envelope"},
                        {
                            "type": "object",
                            "properties": {"type": {"const": "portlane.unit.status"}, "data": {"$ref": status_ref}},
                        },
                    ]
                },
                {
                    "type": "object",
                    "description": "the last will: unsigned, so only 'unconfirmed offline'",
                    "properties": {
                        "state": {"const": "offline"},
                        "unit": {"type": "string"},
                        "kind": {"type": "string"},
                    },
                    "required": ["state", "unit", "kind"],
                    "additionalProperties": False,
                },
            ]
        },
        "summary": "retained: the signed envelope of the unit's newest unit.status event, or the broker's "
        "last will (unsigned) when the unit vanished",
    }
    channels["status"] = {
        "address": _ANY_UNIT.status,
        "parameters": PARAMS,
        "messages": {"Status": {"$ref": "#/components/messages/Status"}},
        "bindings": {"mqtt": {"qos": 1, "retain": True}},
    }
    operations["publish.status"] = {"action": "send", "channel": {"$ref": "#/channels/status"}}
    cmd_ref = add_schema("SignedCommand", SignedCommand)
    for name in COMMAND_NAMES:
        mname = "Command" + "".join(p.capitalize() for p in name.split("_"))
        args_model = ARGS[name]
        args_ref = add_schema(args_model.__name__, args_model)
        messages[mname] = {
            "name": name,
            "contentType": "application/json",
            "payload": {
                "allOf": [
                    {"$ref": cmd_ref},
                    {"type": "object", "properties": {"cmd": {"const": name}, "args": {"$ref": args_ref}}},
                ]
            },
            "summary": f"signed command '{name}' (Ed25519 over the canonical JSON, expires_at, nonce)",
        }
        channels[f"cmd.{name}"] = {
            "address": _ANY_UNIT.cmd(name),
            "parameters": PARAMS,
            "messages": {mname: {"$ref": f"#/components/messages/{mname}"}},
            "bindings": {"mqtt": {"qos": 1}},
        }
        operations[f"receive.cmd.{name}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/cmd.{name}"},
            "reply": {"channel": {"$ref": "#/channels/response"}},
        }
    resp_ref = add_schema("CommandResponse", CommandResponse)
    messages["Response"] = {
        "name": "response",
        "contentType": "application/json",
        "payload": {"$ref": resp_ref},
        "correlationId": {"location": "$message.payload#/correlation_id"},
    }
    channels["response"] = {
        "address": _ANY_UNIT.response,
        "parameters": PARAMS,
        "messages": {"Response": {"$ref": "#/components/messages/Response"}},
    }
    operations["publish.response"] = {"action": "send", "channel": {"$ref": "#/channels/response"}}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "portlane lane contract",
            "version": f"1 (portlane {__version__})",
            "description": (
                "MQTT contract between portlane lane/scanner daemons and the central platform. "
                "Events are CloudEvents 1.0 structured JSON with a per-unit monotonic seq and a stable id "
                "('{site}/{unit}/{epoch}/{seq}') for de-duplication; QoS 1. MQTT 3.1.1 works; MQTT 5 is used when "
                "the broker offers it. The platform may scale out with shared subscriptions "
                f"($share/platform/{PREFIX}/+/+/event/#). Generated by portlane.edge.contract.asyncapi."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render() -> str:
    return yaml.safe_dump(build(), sort_keys=False, allow_unicode=True, width=110)


if __name__ == "__main__":
    sys.stdout.write(render())
