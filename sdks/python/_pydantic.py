"""Pydantic (v2) models as job arguments and results, when pydantic is installed (optional).

Nothing here imports pydantic: a model class or instance can only exist once the application has
imported it, so ``sys.modules`` tells whether one may be at hand, and ``import spitfire`` stays as
fast as before, with or without pydantic installed (``pip install 'spitfire[pydantic]'``).

Both directions go through msgspec's hooks, so a model may sit anywhere a hint allows a custom type
(``user: User``, ``users: list[User]``, ``user: User | None``, a dataclass field):

- `encode`, for the encoders' ``enc_hook``: a model instance becomes
  ``model_dump(mode="json", by_alias=True)``, plain JSON data (by alias, so that validating it
  again accepts it whatever the model's alias settings).
- `dec_hook` (``msgspec.convert`` at enqueue) and `worker_dec_hook` (the worker's decoder): a value
  hinted as a model is validated into it. At enqueue the arguments are Python objects and are
  validated as such (``model_validate``: an instance is kept as it is, a dict is validated); in the
  worker the payload is JSON data and is validated as JSON (``model_validate_json``), the inverse of
  the dump, so strict models and types such as ``datetime`` round-trip too.
"""

from __future__ import annotations

import sys
from typing import Any

import msgspec

__all__ = ["NOT_A_MODEL", "ModelInvalid", "dec_hook", "encode", "is_model", "worker_dec_hook"]

#: What `encode` returns for an object that is not a pydantic model.
NOT_A_MODEL: Any = object()

_json_encode = msgspec.json.Encoder().encode


class ModelInvalid(ValueError):
    """A value that does not validate as the pydantic model its hint names.

    A ``ValueError``, so msgspec turns it into a ``msgspec.ValidationError`` that carries the path
    to the value (``$.user``); ``loc`` is the path inside the model (``.address.zip``) and
    ``message`` pydantic's first error.
    """

    def __init__(self, model: type, loc: str, message: str, more: int) -> None:
        self.model = model
        self.loc = loc
        self.message = message + (f" (and {more} more error{'s' if more > 1 else ''})" if more else "")
        where = f"{model.__name__}{loc}" if loc else model.__name__
        super().__init__(f"{self.message} ({where})")


def _base() -> type | None:
    """pydantic's BaseModel if the application imported pydantic 2, else None."""
    module = sys.modules.get("pydantic")
    base = getattr(module, "BaseModel", None)
    # pydantic 1 has no model_validate: its models are left to msgspec (which refuses them).
    return base if isinstance(base, type) and hasattr(base, "model_validate") else None


def _validation_error() -> type[Exception]:
    """pydantic's ValidationError (pydantic is imported: a model was found)."""
    error: type[Exception] = sys.modules["pydantic"].ValidationError
    return error


def is_model(tp: Any) -> bool:
    """True when ``tp`` is a pydantic (v2) model class."""
    base = _base()
    return base is not None and isinstance(tp, type) and issubclass(tp, base)


def encode(obj: Any) -> Any:
    """A pydantic model instance as JSON data (``model_dump(mode="json", by_alias=True)``), or
    `NOT_A_MODEL`.

    :raises TypeError: the model cannot be dumped as JSON (e.g. bytes that are not UTF-8).
    """
    base = _base()
    if base is None or not isinstance(obj, base):
        return NOT_A_MODEL
    model: Any = obj  # a BaseModel (not typed here: pydantic is optional)
    try:
        return model.model_dump(mode="json", by_alias=True)
    except Exception as exc:  # pydantic's PydanticSerializationError, or an error of a serializer
        raise TypeError(f"the {type(obj).__name__} model cannot be dumped as JSON: {exc}") from None


def _invalid(tp: type, exc: Any) -> ModelInvalid:
    errors = exc.errors(include_url=False)
    first = errors[0] if errors else {"loc": (), "msg": str(exc)}
    loc = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first.get("loc", ()))
    return ModelInvalid(tp, loc, str(first.get("msg", "invalid")), max(0, len(errors) - 1))


def _unsupported(tp: Any, obj: Any) -> TypeError:
    # What msgspec says itself for a custom type without a hook.
    return TypeError(f"Expected `{getattr(tp, '__name__', tp)}`, got `{type(obj).__name__}`")


def dec_hook(tp: Any, obj: Any) -> Any:
    """msgspec's ``dec_hook`` at enqueue: validate Python objects hinted as a model (``model_validate``).

    :raises ModelInvalid: ``obj`` does not validate (msgspec adds where it is).
    :raises TypeError: ``tp`` is not a model (a custom type nothing can convert to).
    """
    if not is_model(tp):
        raise _unsupported(tp, obj)
    try:
        return tp.model_validate(obj)
    except _validation_error() as exc:
        raise _invalid(tp, exc) from None


def worker_dec_hook(tp: Any, obj: Any) -> Any:
    """msgspec's ``dec_hook`` in the worker: validate a payload's JSON data hinted as a model as
    JSON (``model_validate_json``), the inverse of `encode`. Data with msgpack binary values in it
    (from a producer in another language: JSON has no bytes) is validated as Python objects instead
    (``model_validate``), so that bytes are never read as their base64 text.

    :raises ModelInvalid: the data does not validate. :raises TypeError: ``tp`` is not a model.
    """
    if not is_model(tp):
        raise _unsupported(tp, obj)
    try:
        if _has_bytes(obj):
            return tp.model_validate(obj)
        return tp.model_validate_json(_json_encode(obj))
    except _validation_error() as exc:
        raise _invalid(tp, exc) from None


def _has_bytes(obj: Any) -> bool:
    """True when ``obj`` (msgpack data) holds bytes anywhere. Iterative: payloads may nest deeply."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
            stack.extend(item.keys())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, bytes | bytearray | memoryview):
            return True
    return False
