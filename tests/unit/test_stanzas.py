"""Stanza serialisation and helpers (tigase_rest.xmpp.stanzas)."""

from xml.etree import ElementTree

from hypothesis import given
from hypothesis import strategies as st

from tigase_rest.xmpp.stanzas import COMPONENT_NS, error_of, renamespace, serialize


def test_default_namespace_is_written_only_where_it_changes():
    iq = ElementTree.fromstring(
        '<iq xmlns="jabber:client" type="get" to="a@b"><ping xmlns="urn:xmpp:ping"/></iq>')
    assert serialize(iq) == '<iq xmlns="jabber:client" type="get" to="a@b"><ping xmlns="urn:xmpp:ping"/></iq>'
    assert serialize(iq, "jabber:client") == '<iq type="get" to="a@b"><ping xmlns="urn:xmpp:ping"/></iq>'


def test_on_the_component_stream_the_stanza_inherits_the_stream_namespace():
    message = ElementTree.fromstring('<message xmlns="jabber:client" to="a@b"><body>hi</body></message>')
    renamespace(message, COMPONENT_NS)
    assert serialize(message, COMPONENT_NS) == '<message to="a@b"><body>hi</body></message>'


def test_escaping_and_namespaced_attributes_survive():
    element = ElementTree.fromstring(
        '<message xmlns="jabber:client" xml:lang="en" xmlns:x="urn:x" x:flag="a&amp;&quot;b">'
        '<body>1 &lt; 2 &amp; 3 &gt; 2</body>tail<html xmlns="http://jabber.org/protocol/xhtml-im">'
        '<p>a<b>b</b>c</p></html></message>')
    text = serialize(element)
    again = ElementTree.fromstring(text)
    assert ElementTree.tostring(again) == ElementTree.tostring(element)
    assert 'xml:lang="en"' in text


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"
                                      + "".join(map(chr, range(1, 32))) + "\ufffe\uffff"), max_size=40),
       st.text(alphabet=st.characters(blacklist_categories=("Cs",), min_codepoint=32,
                                      blacklist_characters="\ufffe\uffff"), max_size=40))
def test_any_text_and_attribute_round_trip(text, attribute):
    element = ElementTree.Element("{jabber:client}message", {"to": attribute})
    ElementTree.SubElement(element, "{jabber:client}body").text = text
    parsed = ElementTree.fromstring(serialize(element))
    assert parsed.get("to") == attribute
    assert (parsed.find("{jabber:client}body").text or "") == text


def test_error_condition_and_text_whatever_the_namespace():
    reply = ElementTree.fromstring(
        '<iq type="error" xmlns="jabber:component:accept"><error type="cancel">'
        '<forbidden xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>'
        '<text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">No</text></error></iq>')
    assert error_of(reply) == ("forbidden", "No")
