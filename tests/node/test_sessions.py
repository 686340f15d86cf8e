"""Danger in names, not flags: no public session method takes a boolean that weakens a check."""

import inspect

from misuan.node.sessions import SessionManager


def test_no_public_session_method_takes_a_boolean_flag():
    for name, fn in inspect.getmembers(SessionManager, inspect.isfunction):
        if name.startswith("_"):
            continue
        for param in inspect.signature(fn).parameters.values():
            assert param.annotation not in (bool, "bool"), f"SessionManager.{name}({param.name}: bool)"


def test_check_skipping_methods_say_so_in_their_name():
    public = {n for n, _ in inspect.getmembers(SessionManager, inspect.isfunction) if not n.startswith("_")}
    assert {"unsafe_call", "unsafe_read_share", "create_internal", "close_internal"} <= public
    assert "call" not in public
