"""Rendering config templates: variables, strict undefined, the sandbox, errors, the cache."""

from __future__ import annotations

import pytest

from netfleet.domain.errors import RenderError
from netfleet.rendering import Renderer, config_lines, default_renderer, render

VLAN_TEMPLATE = """\
vlan {{ vlan_id }}
 name {{ name | upper }}
{% for port in ports %}
interface {{ port }}
 switchport access vlan {{ vlan_id }}
{% endfor %}
"""


def test_variables_loops_and_filters_render_as_config() -> None:
    text = Renderer().render(VLAN_TEMPLATE, {"vlan_id": 10, "name": "users",
                                              "ports": ["Gi1/0/1", "Gi1/0/2"]})
    # trim_blocks: the {% for %} lines leave no blank lines behind.
    assert text == ("vlan 10\n name USERS\ninterface Gi1/0/1\n switchport access vlan 10\n"
                    "interface Gi1/0/2\n switchport access vlan 10\n")


def test_a_missing_variable_is_named_with_its_line() -> None:
    with pytest.raises(RenderError) as caught:
        Renderer().render(VLAN_TEMPLATE, {"name": "users", "ports": []})
    assert str(caught.value) == ("template variable 'vlan_id' is undefined (line 1); "
                                 "pass it in vars")
    assert caught.value.category == "render"


def test_a_missing_variable_inside_a_block_is_an_error_not_an_empty_string() -> None:
    template = "interface Gi1\n{% if shut %}\n shutdown\n{% endif %}\n"
    with pytest.raises(RenderError, match="'shut' is undefined \\(line 2\\)"):
        Renderer().render(template, {})


def test_a_missing_attribute_says_which() -> None:
    with pytest.raises(RenderError) as caught:
        Renderer().render("interface {{ port.name }}\n mtu {{ port.mtu }}", {"port": {"name": "x"}})
    assert "has no attribute 'mtu'" in str(caught.value)
    assert "(line 2)" in str(caught.value)


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ vars.__class__ }}",
    "{{ hook.__globals__ }}",
])
def test_the_sandbox_refuses_escapes(template: str) -> None:
    with pytest.raises(RenderError, match="refused by the sandbox"):
        Renderer().render(template, {"vars": {}, "hook": lambda: None})


def test_a_sandbox_refusal_names_what_was_refused() -> None:
    with pytest.raises(RenderError) as caught:
        Renderer().render("{{ ''.__class__.__mro__ }}", {})
    assert str(caught.value) == ("template refused by the sandbox (line 1): access to attribute "
                                 "'__class__' of 'str' object is unsafe.")


def test_a_syntax_error_gives_its_line() -> None:
    with pytest.raises(RenderError) as caught:
        Renderer().render("hostname {{ h }}\n!\n{% for x in %}\n{% endfor %}\n", {"h": "r1"})
    assert str(caught.value).startswith("template syntax error at line 3:")


def test_an_unknown_filter_is_a_render_error() -> None:
    with pytest.raises(RenderError, match="No filter named 'nosuch'"):
        Renderer().render("{{ x | nosuch }}", {"x": 1})


def test_a_failing_expression_is_a_render_error_with_its_line() -> None:
    with pytest.raises(RenderError, match=r"\(line 2\): ZeroDivisionError"):
        Renderer().render("a\n{{ 1 / n }}", {"n": 0})


def test_a_template_is_compiled_once_for_many_renders() -> None:
    renderer = Renderer()
    for vlan in range(100):
        # The same text in a fresh str each time: cached by content, not identity.
        text = "".join(list(VLAN_TEMPLATE))
        assert renderer.render(text, {"vlan_id": vlan, "name": "n", "ports": []}).startswith(
            f"vlan {vlan}\n")
    assert renderer.compiles == 1


def test_the_template_cache_is_bounded() -> None:
    renderer = Renderer(cache_size=2)
    for _ in range(2):
        for name in ("a", "b", "c"):
            renderer.render(f"{{{{ {name} }}}}", {"a": 1, "b": 2, "c": 3})
    assert renderer.compiles == 6  # three templates cycling through two slots


def test_a_broken_template_does_not_poison_the_cache() -> None:
    renderer = Renderer()
    for _ in range(2):
        with pytest.raises(RenderError):
            renderer.render("{% if %}", {})
    assert renderer.render("ok", {}) == "ok"


def test_the_module_level_render_shares_one_renderer() -> None:
    before = default_renderer().compiles
    assert render("hostname {{ h }}", {"h": "r1"}) == "hostname r1"
    assert render("hostname {{ h }}", {"h": "r2"}) == "hostname r2"
    assert default_renderer().compiles <= before + 1


def test_config_lines_keep_sub_mode_indentation_and_drop_comments() -> None:
    text = ("!\nhostname r1\n\n! a comment\ninterface Gi1/0/1\n description x   \n"
            "   ! indented comment\n shutdown\r\n!\nend\n")
    assert config_lines(text) == ["hostname r1", "interface Gi1/0/1", " description x",
                                  " shutdown", "end"]
