"""Drop-in fidelity: the same application code observes the same under webshocket 0.5.2 and ours.

``interop/fidelity.py`` is run with 0.5.2's own virtualenv and with this package (in the
mode of this test run: compiled or pure), and what each printed is compared.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trustme
from interop import venvs

INTEROP = Path(__file__).resolve().parent / "interop"


def observed(python: str, case: str, env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [python, str(INTEROP / "fidelity.py"), case, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=str(INTEROP),
        check=False,
    )
    assert done.returncode == 0, f"fidelity.py {case} with {python} exited {done.returncode}:\n{done.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def theirs_and_ours(case: str, *args: str, env: dict[str, str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """What ``case`` observes under 0.5.2 and under ours (with ``env`` added to our environment)."""
    theirs = observed(str(venvs.venv_python("0.5.2")), case, venvs.clean_env(), *args)
    ours = observed(sys.executable, case, {**os.environ, **(env or {})}, *args)
    assert theirs.pop("version") == "0.5.2"
    assert ours.pop("version") != "0.5.2"
    return theirs, ours


def test_rate_limit_edge_values_behave_as_in_0_5_2() -> None:
    theirs, ours = theirs_and_ours("rate_limit_edges")
    for case in ("limit '5'", "limit None"):  # not a number: 0.5.2 failed every call, ours fails at definition
        assert theirs.pop(case) == {"calls": [-32602] * 4}  # INVALID_PARAMS
        assert ours.pop(case) == {"error": "TypeError"}
    assert ours == theirs
    # and what that is, so that a change on both sides would still be seen
    assert ours["limit 0"] == {"calls": [-32000] * 4}  # every call refused, RATE_LIMIT_EXCEEDED
    assert ours["limit 2"] == {"calls": ["ok", "ok", -32000, -32000]}
    assert ours["period 0s"] == {"calls": ["ok"] * 4}  # a window of no time never fills
    assert ours["period 5/1m"] == {"error": "ValueError"}  # not a spelling either release reads
    assert ours["period without unit"] == {"error": "ValueError"}
    assert ours["limit 2.5"] == {"calls": ["ok", "ok", "ok", -32000]}  # a fraction counts as the next whole call
    assert ours["limit True"] == ours["limit 0.5"] == {"calls": ["ok", -32000, -32000, -32000]}
    assert ours["limit inf"] == ours["limit nan"] == {"calls": ["ok"] * 4}


def test_connect_errors_are_caught_by_what_caught_them_in_0_5_2(tmp_path: Path) -> None:
    pem = tmp_path / "server.pem"
    trustme.CA().issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    theirs, ours = theirs_and_ours("connect_errors", str(pem))
    assert theirs == {
        "server full": ["WSError"],
        "untrusted certificate": ["SSLCertVerificationError", "SSLError"],
        "retries exhausted": ["ConnectionFailedError"],
        "retries exhausted message": True,
    }
    for case, caught in theirs.items():
        if isinstance(caught, list):  # an except clause of 0.5.x code catches ours too; ours adds ConnectionFailedError
            assert set(caught) | {"ConnectionFailedError"} == set(ours[case]), case
        else:
            assert ours[case] == caught, case


def test_recv_in_on_connect_gets_the_first_message_and_on_receive_the_rest_in_order() -> None:
    theirs, ours = theirs_and_ours("recv_in_on_connect")
    assert theirs == ours == {"received": [{"first": "hello"}, {"then": "a"}, {"then": "b"}, {"then": "c"}]}


def test_a_timeout_keyword_of_send_rpc_goes_to_the_server_method_as_in_0_5_2() -> None:
    theirs, ours = theirs_and_ours("timeout_keyword")
    assert theirs == ours == {"wait": [5, 1], "plain error": -32602}  # INVALID_PARAMS: plain() takes no timeout


def test_serialize_writes_what_0_5_2_writes_even_off_the_wire_format() -> None:
    """A packet whose ``rpc`` is a plain value used to crash the compiled codec (SIGSEGV)."""
    theirs, ours = theirs_and_ours("serialize_edges")
    assert ours == theirs


def test_api_edges_behave_as_in_0_5_2() -> None:
    """RPCs wait for the on_receive before them; the server's own subscribe ignores the client
    limit; options can be assigned; registering the same function twice is harmless."""
    theirs, ours = theirs_and_ours("api_edges")
    assert (
        ours
        == theirs
        == {
            "rpc after on_receive": "alice",
            "channels of nobody": 0,
            "handler.subscribe past the limit": 8,
            "max_connection assigned": 7,
            "registered twice": True,
        }
    )


def test_module_level_names_of_0_5_2_resolve() -> None:
    theirs, ours = theirs_and_ours("names")
    assert all(value is True for key, value in theirs.items() if key.startswith("webshocket."))
    assert ours == theirs


def test_msgspec_reads_and_writes_our_packet_classes_as_0_5_2_structs() -> None:
    """With msgspec installed our packet classes are Structs: every msgspec call gives 0.5.2's result."""
    pytest.importorskip("msgspec")
    theirs, ours = theirs_and_ours("msgspec_packets", env={"WEBSHOCKET_NO_MSGSPEC": "0"})
    # The msgspec.structs helpers: the same, plus our two optional fields (docs/migration.md 3.17).
    found = {key: ast.literal_eval(ours.pop(key)) for key in ("structs.asdict", "structs.astuple", "structs.fields")}
    assert found["structs.asdict"] == {
        **ast.literal_eval(theirs.pop("structs.asdict")),
        "offset": "None",
        "epoch": "None",
    }
    assert found["structs.astuple"] == [*ast.literal_eval(theirs.pop("structs.astuple")), "None", "None"]
    assert found["structs.fields"] == [*ast.literal_eval(theirs.pop("structs.fields")), "offset", "epoch"]
    assert ours["is a Struct"] == [True, True, True]
    assert ours["structs.replace"].startswith("Packet(source=<PacketSource.RPC: 5>, data=1, rpc=RPCResponse(")
    assert ours == theirs
    assert_packet_samples(ours)


def test_msgspec_reads_and_writes_our_own_packet_classes_as_0_5_2_structs() -> None:
    """With WEBSHOCKET_NO_MSGSPEC=1 our own classes are used: all but the msgspec.structs helpers as 0.5.2."""
    pytest.importorskip("msgspec")
    theirs, ours = theirs_and_ours("msgspec_packets", env={"WEBSHOCKET_NO_MSGSPEC": "1"})
    for helper in ("structs.asdict", "structs.astuple", "structs.replace", "structs.fields"):
        assert isinstance(theirs.pop(helper), str)  # they need a real msgspec.Struct: docs/migration.md 3.17
        assert ours.pop(helper) == {"error": "TypeError"}
    helpers = ("structs.fields of a request", "structs.asdict of a response", "config")
    assert all(ours.pop(helper) == {"error": "TypeError"} for helper in helpers[:2])
    assert ours.pop("config") == {"error": "AttributeError"}
    assert ours.pop("is a Struct") == [False] * 3 and theirs.pop("is a Struct") == [True] * 3
    for helper in helpers:
        theirs.pop(helper)
    assert ours == theirs
    assert_packet_samples(ours)


def assert_packet_samples(ours: dict[str, Any]) -> None:
    assert bytes.fromhex(ours["json.encode reply"]) == (
        b'{"source":5,"rpc":{"type":"response","call_id":"c1","response":[1,2],"error":-32001,'
        b'"is_stream":false,"is_end":true}}'
    )
    assert ours["module"] == ["webshocket.packets"] * 3 and ours["match"] == [1, 2]
    assert ours["in a Struct, decoded"] == "True"


def test_msgspec_struct_payloads_are_the_bytes_0_5_2_sent() -> None:
    """A Struct as RPC result, sent, published and broadcast: msgpack and JSON frames as 0.5.2's."""
    pytest.importorskip("msgspec")
    theirs, ours = theirs_and_ours("struct_payloads")
    assert ours == theirs
    assert len(ours["msgpack"]) == len(ours["json"]) == 5


def test_send_to_a_connection_the_server_closed_drops_the_data_as_in_0_5_2() -> None:
    theirs, ours = theirs_and_ours("send_after_close")
    # once the client has gone on its own, ours raises (docs/migration.md 3.12); 0.5.2 dropped that too
    assert theirs.pop("in on_disconnect, closed by the client") == ["ok"]
    assert ours.pop("in on_disconnect, closed by the client") == ["ConnectionClosedError"]
    assert ours == theirs == {"kick then send": ["ok", "ok", "ok", 1], "in on_disconnect, closed by the server": ["ok"]}


def test_server_options_0_5_2_accepted_still_work() -> None:
    """packet_qsize 0 or less (0.5.2: an unbounded queue) and rpc_task_limit 0 (never used)."""
    theirs, ours = theirs_and_ours("server_options")
    assert ours == theirs
    assert ours["rpc_task_limit -1"] == {"error": "ValueError"}
    assert all(ours[name] == {"echoed": True} for name in ("packet_qsize 0", "packet_qsize -1", "rpc_task_limit 0"))
    assert ours["repr"].startswith("'('127.0.0.1', PORT)'") and ours["rate limit message"] is True
