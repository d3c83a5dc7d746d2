"""Protos as JSON the way TF Serving's REST API prints them (model status, metadata).

TF Serving prints these with protobuf's C++ MessageToJsonString (1-space indent, every
field, proto field names); json_format gives the same content with keys in another order,
which `proto_json` puts back.
"""

from __future__ import annotations

import json

from google.protobuf import json_format


def proto_json(message) -> str:
    """Return a proto as TF Serving's JSON printer writes it (1-space indent, all fields).

    protobuf's C++ MessageToJsonString ends the text with a newline when add_whitespace is
    set, so even the pieces of the metadata answer end with one.
    """
    as_dict = json_format.MessageToDict(message, always_print_fields_with_no_presence=True,
                                        preserving_proto_field_name=True)
    return json.dumps(_in_tf_order(message.DESCRIPTOR, as_dict), indent=1) + "\n"


def _in_tf_order(descriptor, value):
    """Return `value` (a message as a dict) with keys in the order TF Serving prints them.

    Its C++ printer writes plain fields in declaration order, then oneof members;
    json_format puts set fields first. Only the order changes, never the content.
    """
    if not isinstance(value, dict) or descriptor is None:
        return value
    if descriptor.GetOptions().map_entry:
        return value
    ordered = {}
    plain = [f for f in descriptor.fields if f.containing_oneof is None]
    oneofs = [f for f in descriptor.fields if f.containing_oneof is not None]
    for field in plain + oneofs:
        key = field.name
        if key not in value:
            continue
        ordered[key] = _field_in_tf_order(field, value[key])
    for key in value:  # Any-packed or unknown keys keep their place at the end
        ordered.setdefault(key, value[key])
    return ordered


def _field_in_tf_order(field, value):
    message = field.message_type
    if message is None:
        return value
    if message.GetOptions().map_entry:
        inner = message.fields_by_name["value"].message_type
        return {key: _in_tf_order(inner, item) for key, item in value.items()}
    if isinstance(value, list):
        return [_in_tf_order(message, item) for item in value]
    return _in_tf_order(message, value)
