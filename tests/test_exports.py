"""The store exports what we mean it to (sync's, runtime's and host's exports are
tested beside their own tests), and every error class edgestate defines lives in
the one tree of ``edgestate.errors``."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import edgestate.errors
import edgestate.store

PACKAGE = Path(edgestate.errors.__file__).resolve().parent.parent
# The tree is a package: one submodule per section, every class exported by its __init__.
ERRORS = PACKAGE / "errors"


def _exports_resolve(module: object) -> None:
    for name in module.__all__:  # type: ignore[attr-defined]
        assert getattr(module, name) is not None, name


def test_store_exports() -> None:
    assert sorted(edgestate.store.__all__) == sorted(
        [
            "ChangeEvent",
            "ChangeStream",
            "DOC_NAME_PATTERN",
            "DOC_NAME_RULE",
            "MAX_DOC_NAME_CHARS",
            "Delete",
            "DocumentInfo",
            "Durability",
            "GcMode",
            "GcRecord",
            "GcState",
            "GcStatus",
            "Incr",
            "Ranges",
            "ScanPage",
            "Set",
            "Store",
            "StoreConfig",
            "WriteOp",
            "backup_store",
            "check_data_file",
            "check_doc_name",
            "check_user_writable",
            "decode_state_vector",
            "is_doc_name",
            "is_system_document",
            "verify_in_child",
            "describe_value",
            "op_from_json",
            "op_to_json",
        ]
    )
    _exports_resolve(edgestate.store)


def _error_classes() -> dict[str, type[BaseException]]:
    return {
        name: cls
        for name, cls in vars(edgestate.errors).items()
        if inspect.isclass(cls)
        and issubclass(cls, BaseException)
        and cls.__module__ == "edgestate.errors"
    }


# Codes two classes share on purpose: a stale replica is the same fault whether
# the store finds it in an update or sync in a peer's frame.
SHARED_CODES = {"stale_replica": {"StaleReplicaError", "StalePeerError"}}


def test_errors_form_one_tree_with_stable_codes() -> None:
    by_code: dict[str, set[str]] = {}
    for name, cls in _error_classes().items():
        assert issubclass(cls, edgestate.errors.EdgestateError), name
        assert cls.__doc__, f"{name} has no docstring"
        code = cls.__dict__.get("code")
        if code is not None:
            by_code.setdefault(code, set()).add(name)
    shared = {code: names for code, names in by_code.items() if len(names) > 1}
    assert shared == SHARED_CODES


def test_the_docstring_tree_names_every_class() -> None:
    doc = edgestate.errors.__doc__ or ""
    missing = [name for name in _error_classes() if name not in doc]
    assert not missing, f"classes missing from the tree in edgestate.errors' docstring: {missing}"


def test_no_exception_class_is_defined_outside_the_tree() -> None:
    outside = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent == ERRORS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases}
                if any(b.endswith(("Error", "Exception", "Fault")) for b in bases):
                    outside.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}")
    assert not outside, f"error classes outside edgestate.errors: {outside}"


def test_every_class_of_the_tree_is_exported_from_the_package() -> None:
    defined = {}
    for path in sorted(ERRORS.glob("*.py")):
        if path.name == "__init__.py":
            continue
        module = importlib.import_module(f"edgestate.errors.{path.stem}")
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef):
                defined[node.name] = getattr(module, node.name)
    assert defined, "no error classes found in the submodules of edgestate.errors"
    assert sorted(defined) == sorted(edgestate.errors.__all__)
    for name, cls in defined.items():
        assert getattr(edgestate.errors, name) is cls, name
        # Reprs, tracebacks and pickles name the public path, not the submodule.
        assert cls.__module__ == "edgestate.errors", name


def test_every_error_survives_a_pickle_round_trip() -> None:
    import pickle

    import edgestate.errors as E

    made: list[E.EdgestateError] = [
        E.NodeAPIError(409, "module_downgrade", "version 1.0 is older"),
        E.ListenError("api", "127.0.0.1", 8080, "address in use"),
        E.CommandError("bad_args", "no such doc"),
        E.InvocationError("trapped", guest_status=3),
        E.BusyError("full", retry_after_s=4),
        E.HostCallRefused(7),
        E.GuestFault(E.InvocationError("inner")),
        E.ConnectionDeclinedError("duplicate", permanent=True),
    ]
    for name in E.__all__:
        cls = getattr(E, name)
        if isinstance(cls, type) and issubclass(cls, E.EdgestateError):
            if not any(type(m) is cls for m in made):
                try:
                    made.append(cls(f"a {name}"))
                except TypeError:  # a constructor of its own: listed above, or missed
                    raise AssertionError(f"{name}: add it to the list above") from None
    for error in made:
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error)
        assert str(back) == str(error) and back.code == error.code
        assert vars(back).keys() == vars(error).keys(), type(error).__name__
