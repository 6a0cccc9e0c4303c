"""Cut one converted trace until its encoding fits a Log Traces request (``batch_max_bytes``).

A trace bigger than a request would be refused by the API (413) and dead-lettered whole. So the
largest texts are cut first, each with a visible marker, media too big to keep is replaced by a
text saying what it was, and only when every text is already cut are the latest steps left out.
What was cut is counted (:class:`~galileo_otel.export.convert.ConvertStats`) and written into the
trace's ``user_metadata``. The common case (the trace fits) costs one length comparison.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the pipeline imports this module early; conversion is imported lazily
    from galileo_otel.export.convert import ConvertStats

__all__ = ["MIN_CUT_CHARS", "cut_marker", "encode_within"]

MIN_CUT_CHARS = 64
"""Strings shorter than this are never cut (ids, roles, names, short metadata)."""

# Keys whose string values are structure, not content: never cut.
_STRUCTURAL = frozenset(
    {
        "type",
        "id",
        "trace_id",
        "parent_id",
        "session_id",
        "external_id",
        "created_at",
        "role",
        "modality",
        "mime_type",
        "tool_call_id",
        "agent_type",
        "finish_reason",
        "model",
    }
)
# Room kept for the counters this module adds to the trace's user_metadata.
_RESERVE_BYTES = 160
# Rounds of cutting texts (each re-encodes once); escapes and multibyte characters only make a
# round save more than planned, so one round almost always suffices.
_ROUNDS = 4


def cut_marker(chars: int) -> str:
    """The visible end of a cut text: how many characters were removed."""
    return f" …[{chars} characters cut to fit the request size]"


# The longest marker in bytes (a cut of up to 12 digits), so a cut is only made when it saves.
_MARKER_BYTES = len(cut_marker(10**12).encode())


def _media_text(block: dict[str, Any], chars: int) -> str:
    kind = block.get("mime_type") or block.get("modality") or "media"
    source = "base64" if "base64" in block else "URL"
    return f"[{kind}: {chars} characters of {source} cut to fit the request size]"


def _slots(
    root: dict[str, Any],
) -> tuple[list[tuple[Any, Any, int]], list[tuple[list[Any], int, int]]]:
    """Cuttable texts ``(container, key, length)`` and media ``(list, index, length)``.

    Iterative: a trace can nest deeper than the recursion limit.
    """
    texts: list[tuple[Any, Any, int]] = []
    media: list[tuple[list[Any], int, int]] = []
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str):
                    if len(value) >= MIN_CUT_CHARS and key not in _STRUCTURAL:
                        texts.append((node, key, len(value)))
                elif isinstance(value, (dict, list)):
                    stack.append(value)
        else:
            for i, value in enumerate(node):
                if isinstance(value, str):
                    if len(value) >= MIN_CUT_CHARS:
                        texts.append((node, i, len(value)))
                elif isinstance(value, dict):
                    if value.get("type") == "data":
                        payload = value.get("base64") or value.get("url") or ""
                        media.append((node, i, len(payload)))
                    else:
                        stack.append(value)
                elif isinstance(value, list):
                    stack.append(value)
    return texts, media


def _savings(cap: int, texts: list[int], media: list[int]) -> int:
    saved = 0
    for length in texts:
        if length > cap + _MARKER_BYTES:
            saved += length - cap - _MARKER_BYTES
    for length in media:
        if length > cap + _MARKER_BYTES:
            saved += length - _MARKER_BYTES
    return saved


def _cap(texts: list[int], media: list[int], excess: int) -> int:
    """The largest length every text may keep so that cutting the rest saves ``excess``."""
    high = max([*texts, *media], default=0)
    if _savings(0, texts, media) < excess:
        return 0  # even cutting everything is not enough; steps go next
    low = 0  # savings(low) >= excess holds; find the largest such cap
    while low < high:
        mid = (low + high + 1) // 2
        if _savings(mid, texts, media) >= excess:
            low = mid
        else:
            high = mid - 1
    return low


def _cut_texts(data: dict[str, Any], excess: int, stats: ConvertStats) -> tuple[int, int]:
    """One round of cuts; returns ``(values cut, characters cut)``."""
    texts, media = _slots(data)
    cap = _cap([t[2] for t in texts], [m[2] for m in media], excess)
    count = chars = 0
    for container, key, length in texts:
        if length > cap + _MARKER_BYTES:
            removed = length - cap
            container[key] = container[key][:cap] + cut_marker(removed)
            count += 1
            chars += removed
    for blocks, index, length in media:
        if length > cap + _MARKER_BYTES:
            blocks[index] = {"type": "text", "text": _media_text(blocks[index], length)}
            count += 1
            chars += length
    stats.texts_cut += count
    stats.chars_cut += chars
    return count, chars


def _drop_steps(data: dict[str, Any], excess: int, encode: Callable[[Any], bytes]) -> int:
    """Remove the latest steps (children before their parents) until ``excess`` bytes are gone."""
    order: list[tuple[list[Any], dict[str, Any]]] = []  # (the list holding it, step), preorder
    stack: list[dict[str, Any]] = [data]
    while stack:
        node = stack.pop()
        children = node.get("spans") or []
        for child in children:
            order.append((children, child))
        stack.extend(reversed(children))
    dropped = saved = 0
    for holder, step in reversed(order):
        if saved >= excess:
            break
        # Reverse preorder: a step's children are gone already and it is the last in its list.
        saved += len(encode(step)) + (len(holder) > 1)  # and its comma, if it had siblings
        holder.pop()
        dropped += 1
    return dropped


def encode_within(
    data: dict[str, Any],
    max_bytes: int,
    encode: Callable[[Any], bytes],
    stats: ConvertStats | None = None,
) -> bytes:
    """Encode a converted trace so that it fits in ``max_bytes``, cutting it when it does not.

    Args:
        data: A converted trace (``convert_trace``'s result); cut in place when too big.
        max_bytes: The most one trace may take: ``batch_max_bytes`` less the request envelope.
        encode: The pipeline's encoder (the size that counts is the encoded one).
        stats: Where cuts are counted (``traces_cut``, ``texts_cut``, ``chars_cut``,
            ``spans_cut``).

    Returns:
        The encoded trace. It fits unless ``max_bytes`` is below the size of a trace with no
        steps, no metadata and every text cut (a few hundred bytes).
    """
    encoded = encode(data)
    if len(encoded) <= max_bytes:
        return encoded
    if stats is None:
        from galileo_otel.export.convert import ConvertStats

        stats = ConvertStats()
    stats.traces_cut += 1
    texts = chars = 0
    for _ in range(_ROUNDS):
        excess = len(encoded) - max_bytes + _RESERVE_BYTES
        count, removed = _cut_texts(data, excess, stats)
        texts += count
        chars += removed
        meta = data.setdefault("user_metadata", {})
        meta["otel.cut_texts"] = str(texts)
        meta["otel.cut_characters"] = str(chars)
        encoded = encode(data)
        if len(encoded) <= max_bytes or count == 0:
            break
    if len(encoded) > max_bytes:
        dropped = _drop_steps(data, len(encoded) - max_bytes + _RESERVE_BYTES, encode)
        stats.spans_cut += dropped
        data["user_metadata"]["otel.cut_steps"] = str(dropped)
        encoded = encode(data)
    if len(encoded) > max_bytes:
        # Only the trace itself is left: its metadata and tags go, the counters stay.
        meta = data["user_metadata"]
        data["user_metadata"] = {k: v for k, v in meta.items() if k.startswith("otel.cut_")}
        data["tags"] = []
        data.pop("dataset_metadata", None)
        encoded = encode(data)
    return encoded
