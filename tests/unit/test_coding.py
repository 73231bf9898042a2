"""Tigase's XML <-> data rules, JSON decoding, safe XML parsing and content negotiation."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tigase_rest import coding
from tigase_rest.coding import (
    JSON, XML, body_format, data_to_json, data_to_xml, decode_body, parse_json, parse_xml, xml_to_data,
)
from tigase_rest.errors import HttpError


def xml_data(text: str):
    return xml_to_data(parse_xml(text.encode()))


def round_trip(data):
    return xml_data(data_to_xml(data))


# --- XML -> data (Tigase's XmlCoder rules) ------------------------------------------------------


def test_root_is_wrapped_in_its_name():
    assert xml_data("<command><node>n1</node></command>") == {"command": {"node": "n1"}}


def test_children_all_named_item_are_a_list():
    assert xml_data("<r><fields><item>a</item><item>b</item></fields></r>") == {"r": {"fields": ["a", "b"]}}


def test_a_single_item_child_is_still_a_list():
    assert xml_data("<r><fields><item><var>x</var></item></fields></r>") == {"r": {"fields": [{"var": "x"}]}}


def test_root_whose_children_are_all_items_is_a_bare_list():
    assert xml_data("<result><item>a</item><item><k>v</k></item></result>") == ["a", {"k": "v"}]


def test_empty_leaf_is_empty_string_never_none():
    assert xml_data("<r><a/><b></b></r>") == {"r": {"a": "", "b": ""}}
    assert xml_data("<r/>") == {"r": ""}


def test_repeated_names_are_kept_as_a_list_not_last_wins():
    # Deviation from Tigase (which keeps only "b"): nothing the client sent is lost.
    assert xml_data("<r><value>a</value><value>b</value><value>c</value></r>") == {"r": {"value": ["a", "b", "c"]}}


def test_repeated_names_whose_values_are_lists_stay_separate_lists():
    doc = "<r><v><item>1</item><item>2</item></v><v><item>3</item></v></r>"
    assert xml_data(doc) == {"r": {"v": [["1", "2"], ["3"]]}}


def test_namespaces_and_attributes_of_elements_with_text_are_ignored():
    doc = "<command xmlns='http://jabber.org/protocol/commands'><node x='y'>n</node></command>"
    assert xml_data(doc) == {"command": {"node": "n"}}


def test_attributes_of_elements_without_text_count_as_children():
    # Deviation (Tigase drops attributes): the attribute form of a command works too.
    assert xml_data('<command node="uptime"/>') == {"command": {"node": "uptime"}}
    assert xml_data("<command node='a' xml:lang='en'><node>b</node><fields/></command>") == {
        "command": {"node": "b", "fields": ""}}  # a child of the same name wins; xml:lang is not data
    assert xml_data("<x><r><item jid='a@b'/><item jid='c@d'/></r></x>") == {"x": {"r": [{"jid": "a@b"}, {"jid": "c@d"}]}}


def test_cdata_and_character_references_are_unescaped():
    assert xml_data("<r><a><![CDATA[<b>&x]]></a><c>&lt;&#233;&amp;</c></r>") == {"r": {"a": "<b>&x", "c": "<é&"}}


def test_mixed_item_and_other_children_are_a_map():
    assert xml_data("<r><item>a</item><other>b</other></r>") == {"r": {"item": "a", "other": "b"}}


# --- data -> XML ------------------------------------------------------------------------------


def test_single_key_map_gives_the_root():
    assert data_to_xml({"command": {"node": "n", "jid": "a@b"}}) == "<command><node>n</node><jid>a@b</jid></command>"


def test_none_and_empty_values_are_empty_elements():
    assert data_to_xml({"r": {"a": None, "b": "", "c": [], "d": {}}}) == "<r><a/><b/><c/><d/></r>"


def test_booleans_are_lowercase_and_numbers_are_text():
    assert data_to_xml({"r": {"t": True, "f": False, "n": 25, "x": 1.5}}) == \
        "<r><t>true</t><f>false</f><n>25</n><x>1.5</x></r>"


def test_lists_are_item_elements():
    assert data_to_xml({"r": {"fields": [{"var": "a"}, "b", ["c"]]}}) == \
        "<r><fields><item><var>a</var></item><item>b</item><item><item>c</item></item></fields></r>"


def test_text_is_escaped():
    doc = data_to_xml({"r": "<b>Tom & Jerry</b> ]]>"})
    assert "<b>" not in doc
    assert xml_data(doc) == {"r": "<b>Tom & Jerry</b> ]]>"}


def test_anything_but_a_single_key_map_goes_in_result():
    assert data_to_xml({"a": "1", "b": "2"}) == "<result><a>1</a><b>2</b></result>"
    assert data_to_xml(["x", "y"]) == "<result><item>x</item><item>y</item></result>"
    assert data_to_xml("text") == "<result>text</result>"
    assert data_to_xml({}) == "<result/>"


@pytest.mark.parametrize("key", [
    "1abc", "a b", "x:y", "", "a/><evil", "é a='1'", "a\u00b2", "\u00b7", "-dash", "{ns}tag", "a\x00b",
])
def test_invalid_key_names_still_give_a_well_formed_document(key):
    doc = data_to_xml({"r": {key: "v", "ok": "w"}})
    root = ET.fromstring(doc)  # raises when not well-formed
    # exactly the two elements, no smuggled element or attribute
    assert [child.text for child in root] == ["v", "w"]
    assert [child.attrib for child in root] == [{}, {}]
    assert root[1].tag == "ok"


@pytest.mark.parametrize("key", ["café", "中文", "a-b.c_d", "_x"])
def test_valid_key_names_are_kept(key):
    assert xml_data(data_to_xml({"r": {key: "v"}})) == {"r": {key: "v"}}


def test_characters_xml_cannot_carry_are_replaced_and_cr_survives():
    doc = data_to_xml({"r": "a\x01b\x1fc\rd\ne"})
    assert xml_data(doc) == {"r": "a\ufffdb\ufffdc\rd\ne"}


# --- the payloads of the reference documentation (tigase-rest-api.rst 2.2.3-2.2.5) -----------


def test_command_form_request_xml_equals_json():
    xml_body = """<command>
    <node>comp-repo-item-add</node>
</command>"""
    json_body = '{"command": {"node" : "comp-repo-item-add"}}'
    assert decode_body(xml_body.encode(), XML) == decode_body(json_body.encode(), JSON) == \
        {"command": {"node": "comp-repo-item-add"}}


def test_get_active_users_request_xml_equals_json():
    xml_body = """<command>
  <node>http://jabber.org/protocol/admin#get-active-users</node>
  <fields>
    <item>
      <var>domainjid</var>
      <value>domain.com</value>
    </item>
    <item>
      <var>max_items</var>
      <value>25</value>
    </item>
  </fields>
</command>"""
    json_body = """{
     "command" : {
       "node" : "http://jabber.org/protocol/admin#get-active-users",
       "fields" : [
         {
           "var" : "domainjid",
           "value" : "domain.com"
         },
         {
           "var" : "max_items",
           "value" : "25"
         }
       ]
     }
   }"""
    assert decode_body(xml_body.encode(), XML) == decode_body(json_body.encode(), JSON)


def test_end_user_session_request_with_item_list_value_xml_equals_json():
    xml_body = """<command>
  <node>http://jabber.org/protocol/admin#end-user-session</node>
  <fields>
    <item>
      <var>accountjids</var>
      <value>
        <item>test@domain.com</item>
      </value>
    </item>
  </fields>
</command>"""
    json_body = """{
     "command" : {
       "node": "http://jabber.org/protocol/admin#end-user-session",
       "fields": [
           {
               "var" : "accountjids",
               "value" : [
                   "test@domain.com"
               ]
           }
       ]
     }
   }"""
    decoded = decode_body(xml_body.encode(), XML)
    assert decoded == decode_body(json_body.encode(), JSON)
    assert decoded["command"]["fields"][0]["value"] == ["test@domain.com"]


def test_active_users_result_with_repeated_values_matches_the_json_version():
    # The doc's XML result repeats <value>; its JSON version shows them as one list.
    xml_body = """<command>
  <jid>sess-man@domain.com</jid>
  <node>http://jabber.org/protocol/admin#get-active-users</node>
  <fields>
    <item>
      <var>Users: 2</var>
      <label>text-multi</label>
      <value>admin@domain.com</value>
      <value>user1@domain.com</value>
    </item>
  </fields>
</command>"""
    field = decode_body(xml_body.encode(), XML)["command"]["fields"][0]
    assert field == {"var": "Users: 2", "label": "text-multi", "value": ["admin@domain.com", "user1@domain.com"]}


def test_vhost_add_request_with_command_marker_xml_equals_json():
    xml_body = """<command>
    <jid>vhost-man@domain.com</jid>
    <node>comp-repo-item-add</node>
    <fields>
        <item>
            <var>Domain name</var>
            <value>my-new-awesome-domain.com</value>
        </item>
        <item>
            <var>Enabled</var>
            <value>true</value>
        </item>
        <item>
            <var>command-marker</var>
            <value>command-marker</value>
        </item>
    </fields>
</command>"""
    json_body = """{
     "command": {
       "jid": "vhost-man@domain.com",
       "node": "comp-repo-item-add",
       "fields": [
         {"var": "Domain name", "value": "my-new-awesome-domain.com"},
         {"var": "Enabled", "value": "true"},
         {"var": "command-marker", "value": "command-marker"}
       ]
     }
   }"""
    assert decode_body(xml_body.encode(), XML) == decode_body(json_body.encode(), JSON)


def test_empty_fields_result_encodes_like_the_reference():
    # "If the user was not connected": <fields /> in XML, "fields": [] in JSON.
    data = {"command": {"jid": "sess-man@domain.com",
                        "node": "http://jabber.org/protocol/admin#end-user-session", "fields": []}}
    assert data_to_xml(data) == ("<command><jid>sess-man@domain.com</jid>"
                                 "<node>http://jabber.org/protocol/admin#end-user-session</node><fields/></command>")
    assert json.loads(coding.encode(data, JSON)) == data


def test_vhost_result_note_encodes_like_the_reference():
    data = {"command": {"jid": "vhost-man@domain.com", "node": "comp-repo-item-add",
                        "fields": [{"var": "Note", "type": "fixed", "value": "Operation successful."}]}}
    assert data_to_xml(data) == (
        "<command><jid>vhost-man@domain.com</jid><node>comp-repo-item-add</node><fields><item>"
        "<var>Note</var><type>fixed</type><value>Operation successful.</value></item></fields></command>")


# --- JSON -------------------------------------------------------------------------------------


def test_json_keeps_native_types():
    assert parse_json(b'{"a": 1, "b": true, "c": null, "d": [1.5]}') == {"a": 1, "b": True, "c": None, "d": [1.5]}


@pytest.mark.parametrize("body", [b"{", b'{"a": }', b"nope", b"", b"\xef\xbb\xbf{}", b'{"a": NaN}',
                                  b"[Infinity]", b'{"a": -Infinity}', b'{"a": ' + b"9" * 5000 + b"}",
                                  b"[-" + b"1" * 4301 + b"]", b"[1e999]", b"[-1e400]"])
def test_malformed_json_is_400(body):
    with pytest.raises(HttpError) as e:
        parse_json(body)
    assert e.value.status == 400
    assert "JSON" in e.value.reason


def test_invalid_utf8_json_is_400():
    with pytest.raises(HttpError) as e:
        parse_json(b'{"a": "\xff\xfe"}')
    assert e.value.status == 400
    assert "UTF-8" in e.value.reason


def test_deeply_nested_json_is_400_not_recursion_error():
    with pytest.raises(HttpError) as e:
        parse_json(b"[" * 10_000 + b"]" * 10_000)
    assert e.value.status == 400


def test_deeply_nested_xml_is_400_not_recursion_error():
    with pytest.raises(HttpError) as e:
        decode_body(b"<a>" * 10_000 + b"</a>" * 10_000, XML)
    assert e.value.status == 400


def test_json_output_is_pretty_and_utf8():
    text = coding.encode({"a": ["é"]}, JSON)
    assert text == '{\n    "a": [\n        "é"\n    ]\n}'


# --- defused XML --------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<lolz>&lol4;</lolz>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<r>&xxe;</r>"""

PLAIN_DTD = b"""<!DOCTYPE r [<!ELEMENT r (#PCDATA)>]><r>x</r>"""


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY, PLAIN_DTD])
def test_dtds_and_entities_are_refused(body):
    with pytest.raises(HttpError) as e:
        parse_xml(body)
    assert e.value.status == 400
    assert "root:" not in e.value.reason and "lol" not in e.value.reason


@pytest.mark.parametrize("body", [
    BILLION_LAUGHS.decode().encode("utf-16"),  # with a BOM: "<!DOCTYPE" is not visible as ASCII bytes
    BILLION_LAUGHS.decode().encode("utf-16-le"),
    b'<?xml version="1.0" encoding="cp500"?>' + PLAIN_DTD.decode().encode("cp500"),
    b"\xef\xbb\xbf" + PLAIN_DTD,
])
def test_dtds_in_other_encodings_are_refused(body):
    with pytest.raises(HttpError) as e:
        parse_xml(body)
    assert e.value.status == 400


@pytest.mark.parametrize("body", [
    b'<?xml version="1.0" encoding="UTF-8"?><r><a>x</a></r>',
    b"<?xml version='1.0'?>\n<r><a>x</a></r>",
    b'<?xml version="1.0" encoding="utf-16"?>'.decode().encode("utf-16") + "<r><a>x</a></r>".encode("utf-16-le"),
    b"  <r><!-- c --><a><![CDATA[x]]></a></r>",
])
def test_documents_in_any_declared_form_parse(body):
    assert parse_xml(body).find("a").text == "x"


@pytest.mark.parametrize("depth, ok", [(100, True), (101, False), (5000, False)])
def test_depth_limit(depth, ok):
    body = ("<a>" * depth + "</a>" * depth).encode()
    if ok:
        assert parse_xml(body).tag == "a"
    else:
        with pytest.raises(HttpError, match="nested too deeply"):
            parse_xml(body)


def test_undefined_entity_is_400():
    with pytest.raises(HttpError) as e:
        parse_xml(b"<r>&nope;</r>")
    assert e.value.status == 400


@pytest.mark.parametrize("body", [b"<a>", b"<a></b>", b"<a/><b/>", b"not xml", b""])
def test_malformed_xml_is_400(body):
    with pytest.raises(HttpError) as e:
        parse_xml(body)
    assert e.value.status == 400
    assert e.value.reason.startswith("Malformed XML")


# --- negotiation --------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type, type_param, accept, expected", [
    (None, None, None, XML),
    ("application/json", None, None, JSON),
    ("application/json; charset=utf-8", None, None, JSON),
    ("application/xml", "application/json", "application/json", XML),  # Content-Type first
    ("text/xml", None, "application/json", XML),
    (None, "application/json", "application/xml", JSON),  # then the type parameter
    (None, "application/xml", "application/json", XML),
    (None, "json", None, JSON),
    ("text/plain", "application/json", None, JSON),  # a type naming neither JSON nor XML does not decide
    (None, None, "application/json", JSON),  # then Accept
    (None, None, "application/xml;q=0.5, application/json", JSON),
    (None, None, "application/json;q=0.4, application/xml;q=0.9", XML),
    (None, None, "application/json;q=0, application/xml;q=0.1", XML),
    (None, None, "application/json;q=0", XML),
    (None, None, "application/xml, application/json", XML),  # equal q: the first named
    (None, None, "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", XML),
    (None, None, "*/*", XML),
    (None, None, "text/html", XML),
    (None, None, "application/json;q=bogus", XML),
    (None, None, "application/json; Q=0, application/xml", XML),  # parameter names ignore case
    (None, None, "application/xml; Q=0.1, application/json", JSON),
])
def test_response_format(content_type, type_param, accept, expected):
    assert coding.response_format(content_type, type_param, accept) == expected


@pytest.mark.parametrize("content_type, body, expected", [
    ("application/json", b"<x/>", JSON),  # the declared type wins over the content
    ("text/xml", b'{"a": 1}', XML),
    ("application/x-www-form-urlencoded", b'{"a": 1}', JSON),  # curl -d
    ("application/x-www-form-urlencoded", b"  \n<a/>", XML),
    (None, b"[1]", JSON),
    (None, b"<a/>", XML),
    (None, b"a=1&b=2", None),
    ("text/plain", b"", None),
])
def test_body_format(content_type, body, expected):
    assert body_format(content_type, body) == expected


# --- property: what the XML format can represent round-trips exactly --------------------------

# Element names: a plain ASCII subset that _element_name keeps as is. "item" is left out: a map
# whose keys are all "item" is read back as a list (Tigase's rule), so it cannot round-trip.
names = st.builds(lambda head, tail: head + tail, st.sampled_from("abeimtx_"),
                  st.text("aeimt0_.-", max_size=6)).filter(lambda n: n != "item")
# Text: any characters XML 1.0 can carry (no C0 controls but tab/LF/CR, no surrogates, no U+FFFE/F).
# The empty string round-trips too (<k/> reads back as ""), but empty lists and maps do not: they
# are also written <k/>, so they are left out, and so is None (<k/> too).
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufffe\uffff")
               .filter(lambda c: c in "\t\n\r" or ord(c) >= 0x20), max_size=12)
values = st.recursive(
    text,
    lambda children: st.lists(children, min_size=1, max_size=4)
    | st.dictionaries(names, children, min_size=1, max_size=4),
    max_leaves=12,
)
# The document root: a single-key map gives <key>; its value must not be a non-empty list, which
# Tigase reads back as a bare list (the root's children are all <item>). A non-empty list at the
# top is written as <result><item>... and reads back as that bare list.
documents = st.one_of(
    st.builds(lambda k, v: {k: v}, names, values.filter(lambda v: not isinstance(v, list))),
    st.lists(values, min_size=1, max_size=4),
)


@settings(max_examples=150, deadline=None)
@given(documents)
def test_representable_data_round_trips_through_xml(data):
    assert round_trip(data) == data


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=6), st.text(max_size=6), min_size=1, max_size=5))
def test_any_keys_and_text_give_a_well_formed_document(data):
    ET.fromstring(data_to_xml({"r": data}))


def test_round_trip_sample_with_every_shape():
    data = {"command": {"node": "n", "fields": [{"var": "a", "value": ["x", "y"]}, {"var": "b", "value": ""}],
                        "nested": [["1"], ["2", "3"]], "text": " spaced \t\r\n "}}
    assert round_trip(data) == data


@pytest.mark.parametrize("encoding", ["UTF-7", "Shift_JIS", "EUC-JP", "no-such-encoding"])
def test_xml_in_an_encoding_expat_cannot_read_is_400_with_the_reason(encoding):
    with pytest.raises(HttpError) as e:
        parse_xml(f"<?xml version='1.0' encoding='{encoding}'?><a>x</a>".encode("ascii"))
    assert e.value.status == 400
    assert "encoding" in e.value.reason and "send UTF-8" in e.value.reason


def test_xml_in_latin1_and_utf16_is_still_read():
    assert parse_xml("<?xml version='1.0' encoding='ISO-8859-1'?><a>\u00e9</a>".encode("latin-1")).text == "\u00e9"
    assert parse_xml("<?xml version='1.0' encoding='UTF-16'?><a>\u00e9</a>".encode("utf-16")).text == "\u00e9"


def test_a_json_integer_under_the_limit_is_kept():
    assert parse_json(b"[" + b"9" * 4000 + b"]") == [int("9" * 4000)]


class _Dict(dict):
    pass


class _List(list):
    pass


class _Str(str):
    pass


def _subclassed(value):
    """The same data in subclasses of dict, list and str: what data_to_xml writes by its generic path."""
    if isinstance(value, dict):
        return _Dict((k, _subclassed(v)) for k, v in value.items())
    if isinstance(value, list):
        return _List(_subclassed(v) for v in value)
    if isinstance(value, str):
        return _Str(value)
    return value


any_text = st.text(max_size=8)  # anything: controls, surrogates, markup, CR
any_values = st.recursive(
    st.one_of(any_text, st.none(), st.booleans(), st.integers()),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(any_values)
def test_the_fast_path_of_plain_types_writes_what_the_generic_path_writes(data):
    # dict, list and str are written by exact type first (issue 16); subclasses take the generic path.
    assert data_to_xml(data) == data_to_xml(_subclassed(data))
    assert data_to_xml({"r": data}) == data_to_xml(_Dict(r=_subclassed(data)))


json_values = st.recursive(
    st.one_of(any_text, st.none(), st.booleans(), st.integers(), st.floats()),
    lambda children: st.lists(children, max_size=4) | st.lists(children, max_size=3).map(tuple)
    | st.dictionaries(st.one_of(any_text, st.integers(), st.booleans(), st.none()), children, max_size=4),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_json_answers_are_exactly_what_json_dumps_writes(data):
    # data_to_json writes plain data itself (issue 16) and leaves the rest to json.dumps.
    assert data_to_json(data) == json.dumps(data, ensure_ascii=False, indent=4)
    assert data_to_json(_subclassed(data)) == json.dumps(data, ensure_ascii=False, indent=4)


def test_deep_and_circular_json_answers_go_to_json_dumps():
    deep: list = []
    inner = deep
    for _ in range(200):
        inner.append([])
        inner = inner[0]
    assert data_to_json(deep) == json.dumps(deep, ensure_ascii=False, indent=4)
    circular: dict = {}
    circular["self"] = circular
    with pytest.raises(ValueError, match="Circular"):
        data_to_json(circular)
