"""The catalogue of switchable variations of the fake provider.

A *deviation* is a behaviour in which the fake differs from what the contracts, PROVIDERS.md and the
README promise: a drift detector must report it. A *noise* variation changes only what those documents
say is not compared (identifiers, request ids, messages, timestamps within 5 s, key order, number
spelling, header name casing, rate-limit headers, ...): a drift detector must stay silent.

Expected findings name flow steps by label (see ``client_flow.STEPS``); ``selftest.py`` turns labels
into exchange indices when it writes ``manifest.json``.

Kinds follow the README's shadow-proxy vocabulary, which is written from the mock's side:
``missing`` = the provider sends a field the mock does not; ``extra`` = the mock sends a field the
provider does not; ``mock_refuses`` = the provider accepted what the mock refuses; ``mock_accepts`` =
the provider refused what the mock accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["status", "mock_refuses", "mock_accepts", "error_code", "missing", "extra", "type", "value", "header"]
Role = Literal["deviation", "noise"]
Match = Literal["exact", "prefix"]


@dataclass(frozen=True)
class Finding:
    """One root finding: the flow step, where in the answer (JSON pointer, "" = status, or a header name)."""

    step: str
    pointer: str
    kind: Kind
    match: Match = "exact"


@dataclass(frozen=True)
class Variation:
    name: str
    role: Role
    category: str
    description: str
    findings: tuple[Finding, ...] = ()
    consequence_steps: tuple[str, ...] = ()
    consequences: str = ""
    note: str = ""


def _f(step: str, pointer: str, kind: Kind, match: Match = "exact") -> Finding:
    return Finding(step, pointer, kind, match)


# Steps that show return B (ord_b2002) after its creation, and the 3plship error answers after step 11.
_B_LATER = (
    "t.list.all",
    "t.list.page2",
    "t.list.order_b",
    "t.B.received",
    "t.B.inspected",
    "t.B.refund_full",
    "t.list.inspected",
    "t.list.since_2020",
)
_3PL_ERRORS_AFTER_11 = (
    "t.B.skip_to_inspected",
    "t.A.backward_received",
    "t.A.refund_too_much",
    "t.A.refund_again",
    "t.create.missing_order_id",
    "t.create.bad_reason",
    "t.create.unknown_field",
    "t.list.bad_status",
    "t.create.bad_key",
    "t.live.A.status_other_account",
    "t.k3.A.refund_other_account",
    "t.unknown_path",
    "t.wrong_method",
    "t.webhook.bad_event",
)
_35UP_MAIN_LATER = (
    "u.main.awaiting_return",
    "u.main.customer_shipped",
    "u.main.vendor_received",
    "u.main.confirmed",
    "u.main.awaiting_refund",
    "u.main.refunded",
    "u.main.closed",
)

DEVIATIONS: tuple[Variation, ...] = (
    # --- status ---------------------------------------------------------------------------------------
    Variation(
        "status_3pl_create_200_live",
        "deviation",
        "status",
        "3plship POST /returns answers 200 instead of 201 for zl_live_ keys.",
        (_f("t.live.create.E", "", "status"),),
    ),
    Variation(
        "status_3pl_second_refund_422",
        "deviation",
        "status",
        "A second refund is refused with 422 (code still REFUND_ALREADY_PROCESSED) instead of 409.",
        (_f("t.A.refund_again", "", "status"),),
    ),
    Variation(
        "status_35up_duplicate_422",
        "deviation",
        "status",
        "35up answers a duplicate create (same order, same account) with 422 instead of 409; code unchanged.",
        (_f("u.create.duplicate", "", "status"),),
    ),
    Variation(
        "status_3pl_webhook_200",
        "deviation",
        "status",
        "POST /webhooks answers 200 instead of 201.",
        (_f("t.webhook.create", "", "status"),),
    ),
    # --- body -----------------------------------------------------------------------------------------
    Variation(
        "body_3pl_refund_7_business_days",
        "deviation",
        "body",
        "refund.expected_at is 7 business days after the request instead of 5.",
        (_f("t.A.refund_40", "/data/refund/expected_at", "value"),),
        ("t.B.refund_full", "t.list.inspected", "t.list.since_2020"),
        "Every later answer carrying a refund (B's refund, the lists after it) shows it again.",
    ),
    Variation(
        "body_3pl_shipping_status_not_delivered",
        "deviation",
        "body",
        "return_shipping.status stays in_transit when the return becomes received (documented: delivered).",
        (_f("t.A.received", "/data/return_shipping/status", "value"),),
        (
            "t.list.received",
            "t.A.inspected",
            "t.A.refund_40",
            "t.B.received",
            "t.B.inspected",
            "t.B.refund_full",
            "t.list.inspected",
            "t.list.since_2020",
        ),
        "Every later answer showing A or B after its receipt shows in_transit again.",
    ),
    Variation(
        "body_35up_history_skips_customer_shipped",
        "deviation",
        "body",
        "35up history gets no entry for customer_shipped (the move itself succeeds).",
        (_f("u.main.customer_shipped", "/history/2", "extra"),),
        ("u.main.vendor_received", "u.main.confirmed", "u.main.awaiting_refund", "u.main.refunded", "u.main.closed"),
        "Later updates of the same return have a history one entry shorter, shifted from index 2 on.",
    ),
    Variation(
        "body_3pl_webhook_extra_field",
        "deviation",
        "body",
        "The webhook subscription answer carries an undocumented data.signing_algorithm field.",
        (_f("t.webhook.create", "/data/signing_algorithm", "missing"),),
    ),
    Variation(
        "body_3pl_refund_shipping_omitted",
        "deviation",
        "body",
        "refund_shipping is left out of a return when the client did not send it (contract: required).",
        (_f("t.create.B", "/data/refund_shipping", "extra"),),
        _B_LATER,
        "Every later answer that shows return B lacks refund_shipping too.",
    ),
    Variation(
        "body_3pl_refund_ignores_restocking_fee",
        "deviation",
        "body",
        "A refund without amount refunds refund_amount instead of refund_amount - restocking_fee (20, not 17.5).",
        (_f("t.B.refund_full", "/data/refund/amount", "value"),),
        ("t.list.inspected", "t.list.since_2020"),
        "The lists of inspected returns and since 2020 show B's refund amount again.",
    ),
    Variation(
        "body_3pl_ups_tracking_url",
        "deviation",
        "body",
        "tracking_url for carrier UPS uses another URL than contracts/3plship/carriers.json.",
        (_f("t.create.B", "/data/return_shipping/tracking_url", "value"),),
        _B_LATER,
        "Every later answer that shows return B carries the other URL.",
    ),
    Variation(
        "body_3pl_refund_status_pending",
        "deviation",
        "body",
        "The refund answer says refund_status pending instead of processing.",
        (_f("t.A.refund_40", "/data/refund_status", "value"),),
        ("t.B.refund_full", "t.list.inspected", "t.list.since_2020"),
        "B's refund and the lists after it show pending again.",
    ),
    Variation(
        "body_3pl_email_lowercased",
        "deviation",
        "body",
        "customer_email is stored lower-cased (the client sent Dana.Buyer@Example.COM).",
        (_f("t.create.D", "/data/customer_email", "value"),),
        ("t.list.all", "t.list.page1", "t.list.since_2020"),
        "Lists that show return D show the lower-cased address again.",
    ),
    Variation(
        "body_35up_create_drops_second_item",
        "deviation",
        "body",
        "A 35up return keeps only the first item of its create request.",
        (_f("u.create.main", "/items/1", "extra"),),
        (*_35UP_MAIN_LATER, "u.b.create.same_order"),
        "Every later answer of that return, and shop-b's two-item create, lack the second item.",
    ),
    Variation(
        "body_3pl_webhook_meta_snake",
        "deviation",
        "body",
        "POST /webhooks answers the returns endpoints' meta {request_id, timestamp} instead of the documented "
        "{timestamp, requestId, version}.",
        (
            _f("t.webhook.create", "/meta/request_id", "missing"),
            _f("t.webhook.create", "/meta/requestId", "extra"),
            _f("t.webhook.create", "/meta/version", "extra"),
        ),
    ),
    Variation(
        "body_3pl_details_field_camel",
        "deviation",
        "body",
        'A 422 for a missing order_id names details.field "orderId" (details.problems unchanged).',
        (_f("t.create.missing_order_id", "/error/details/field", "value"),),
    ),
    # --- type -----------------------------------------------------------------------------------------
    Variation(
        "type_3pl_refund_amount_string",
        "deviation",
        "type",
        'refund.amount is a string ("40.00") instead of a number.',
        (_f("t.A.refund_40", "/data/refund/amount", "type"),),
        ("t.B.refund_full", "t.list.inspected", "t.list.since_2020"),
        "Every later answer carrying a refund shows a string amount again.",
    ),
    Variation(
        "type_3pl_page_float",
        "deviation",
        "type",
        "meta.pagination.page is written as a float (2.0) from page 2 on; the contract says integer.",
        (_f("t.list.page2", "/meta/pagination/page", "type"),),
        ("t.list.page3_empty",),
        "Page 3 shows 3.0 again.",
    ),
    Variation(
        "type_3pl_restocking_fee_null",
        "deviation",
        "type",
        "restocking_fee is null (contract: number) when the client did not send it.",
        (_f("t.live.create.E", "/data/restocking_fee", "type"),),
        ("t.live.list",),
        "The live key's list shows return E with null again.",
    ),
    Variation(
        "type_35up_history_at_epoch",
        "deviation",
        "type",
        "35up history[].at is epoch milliseconds (integer) instead of an ISO-8601 string.",
        (_f("u.create.main", "/history/0/at", "type"),),
        (*_35UP_MAIN_LATER, "u.b.create.same_order", "u.create.second", "u.second.rejected"),
        "Every later 35up answer with a history shows integers again.",
    ),
    # --- error code -----------------------------------------------------------------------------------
    Variation(
        "code_3pl_exceeds_as_not_allowed",
        "deviation",
        "error_code",
        "A refund over the refundable amount is 409 REFUND_NOT_ALLOWED instead of REFUND_EXCEEDS_REFUNDABLE.",
        (_f("t.A.refund_too_much", "/error/code", "error_code"),),
    ),
    Variation(
        "code_3pl_401_forbidden",
        "deviation",
        "error_code",
        "A malformed API key is 401 with code FORBIDDEN instead of UNAUTHORIZED.",
        (_f("t.create.bad_key", "/error/code", "error_code"),),
    ),
    Variation(
        "code_35up_approved_invalid_transition",
        "deviation",
        "error_code",
        '35up\'s own example status "approved" is 422 with code invalid_transition instead of validation_error.',
        (_f("u.main.approved", "/error/code", "error_code"),),
    ),
    # --- refusals both ways ---------------------------------------------------------------------------
    Variation(
        "refuse_3pl_restocking_fee",
        "deviation",
        "refusal",
        "3plship refuses a create with a non-zero restocking_fee (422 VALIDATION_ERROR, field restocking_fee); "
        "the contract allows it.",
        (_f("t.create.B", "", "mock_accepts"),),
        (
            "t.list.all",
            "t.list.page1",
            "t.list.page2",
            "t.list.page3_empty",
            "t.list.order_b",
            "t.B.refund_not_inspected",
            "t.B.skip_to_inspected",
            "t.B.received",
            "t.B.inspected",
            "t.B.refund_full",
            "t.list.inspected",
            "t.list.since_2020",
        ),
        "Return B does not exist at the provider: the flow addresses it by a placeholder id (404s where the mock "
        "may answer 200 or 409), and every list of the first key has one return fewer.",
    ),
    Variation(
        "accept_3pl_skipped_step",
        "deviation",
        "refusal",
        "3plship accepts a skipped status step (initiated -> inspected).",
        (_f("t.B.skip_to_inspected", "", "mock_refuses"),),
        ("t.B.received", "t.B.inspected", "t.B.refund_full", "t.list.inspected", "t.list.since_2020"),
        "B is inspected early at the provider: its later moves to received and inspected are refused there, "
        "and its later answers differ in status, updated_at and shipping status.",
    ),
    Variation(
        "accept_3pl_second_refund",
        "deviation",
        "refusal",
        "3plship accepts a second refund (adds it to the first).",
        (_f("t.A.refund_again", "", "mock_refuses"),),
        ("t.list.inspected",),
        "The list of inspected returns shows A's refund with the added amount.",
    ),
    Variation(
        "accept_35up_skip",
        "deviation",
        "refusal",
        "35up follows the permissive lifecycle: awaiting_return -> refunded is accepted.",
        (_f("u.main.refunded_too_early", "", "mock_refuses"),),
        (*_35UP_MAIN_LATER[1:], "u.main.after_closed"),
        "The return's status and history differ from there on (the permissive provider accepts each later move).",
    ),
    Variation(
        "refuse_35up_customer_shipped",
        "deviation",
        "refusal",
        "35up refuses awaiting_return -> customer_shipped (409 invalid_transition), which the lifecycle allows.",
        (_f("u.main.customer_shipped", "", "mock_accepts"),),
        (*_35UP_MAIN_LATER[2:], "u.main.after_closed"),
        "The return stays awaiting_return at the provider; later moves and histories differ.",
    ),
    Variation(
        "refuse_3pl_live_keys",
        "deviation",
        "refusal",
        "3plship refuses every zl_live_ key with 401 UNAUTHORIZED.",
        (_f("t.live.create.E", "", "mock_accepts"),),
        ("t.live.list", "t.live.A.status_other_account"),
        "Every later request with the live key is 401 at the provider (the mock answers 200 and 404).",
    ),
    # --- list order and counts ------------------------------------------------------------------------
    Variation(
        "list_3pl_oldest_first",
        "deviation",
        "list",
        "GET /returns lists oldest first instead of newest first.",
        (_f("t.list.all", "/data", "value", "prefix"),),
        ("t.list.page1", "t.list.page2", "t.list.inspected", "t.list.since_2020"),
        "Every later list with more than one return (and each page) is in the other order.",
    ),
    Variation(
        "list_3pl_skips_unshipped",
        "deviation",
        "list",
        "GET /returns leaves out returns without return_shipping (return C), and counts without it.",
        (_f("t.list.all", "/data", "extra", "prefix"), _f("t.list.all", "/meta/pagination/total", "value")),
        ("t.list.page1", "t.list.page2", "t.list.page3_empty", "t.list.since_2020"),
        "Later unfiltered lists and pages of the first key miss C as well.",
        "A detector aligning list items by position reports value differences under /data/1.. and an extra "
        "item at the end; one aligning by id reports C as extra: both point under /data.",
    ),
    Variation(
        "list_3pl_total_off_by_one",
        "deviation",
        "list",
        "meta.pagination.total is one more than the number of matching returns.",
        (_f("t.list.all", "/meta/pagination/total", "value"),),
        (
            "t.list.page1",
            "t.list.page2",
            "t.list.page3_empty",
            "t.list.order_b",
            "t.list.received",
            "t.list.inspected",
            "t.live.list",
            "t.k3.list_empty",
            "t.list.since_2020",
        ),
        "Every later list shows the wrong total again.",
    ),
    # --- timing ---------------------------------------------------------------------------------------
    Variation(
        "time_3pl_status_updated_at_2min",
        "deviation",
        "timing",
        "updated_at after a status move is 2 minutes behind the moment of the move.",
        (_f("t.A.received", "/data/updated_at", "value"),),
        ("t.list.received", "t.A.inspected", "t.B.received", "t.B.inspected"),
        "Every later status move and the list right after A's receipt show it again (refunds reset updated_at).",
    ),
    Variation(
        "time_35up_create_updated_at_skew",
        "deviation",
        "timing",
        "35up create answers updatedAt 30 s after createdAt (the mock: equal).",
        (_f("u.create.main", "/updatedAt", "value"),),
        ("u.b.create.same_order", "u.create.second"),
        "Every later 35up create shows it again.",
    ),
    # --- headers --------------------------------------------------------------------------------------
    Variation(
        "header_35up_errors_text_plain",
        "deviation",
        "header",
        "35up error answers carry Content-Type text/plain (the body is still JSON).",
        (_f("u.main.approved", "Content-Type", "header"),),
        (
            "u.main.refunded_too_early",
            "u.main.after_closed",
            "u.create.duplicate",
            "u.create.no_credentials",
            "u.b.second.other_account",
            "u.create.bad_quantity",
            "u.second.get_not_allowed",
        ),
        "Every later 35up error shows it again.",
    ),
    Variation(
        "header_3pl_ratelimit_missing_on_errors",
        "deviation",
        "header",
        "3plship error answers carry no X-RateLimit-* headers (documented: every response carries them).",
        (
            _f("t.B.refund_not_inspected", "X-RateLimit-Limit", "header"),
            _f("t.B.refund_not_inspected", "X-RateLimit-Remaining", "header"),
            _f("t.B.refund_not_inspected", "X-RateLimit-Reset", "header"),
        ),
        _3PL_ERRORS_AFTER_11,
        "Every later 3plship error lacks them too.",
        "Contested: the README's 'Not compared' list names rate-limit headers. Their presence is required by the "
        "contract on every 3plship answer, so a detector that compares presence (not values) should report it; one "
        "that leaves rate-limit headers out entirely will miss it by design.",
    ),
    Variation(
        "header_35up_401_no_www_authenticate",
        "deviation",
        "header",
        "35up's 401 for missing credentials has no WWW-Authenticate header.",
        (_f("u.create.no_credentials", "WWW-Authenticate", "header"),),
    ),
    Variation(
        "header_35up_401_bearer_challenge",
        "deviation",
        "header",
        "35up's 401 challenges with WWW-Authenticate: Bearer instead of Basic.",
        (_f("u.create.no_credentials", "WWW-Authenticate", "header"),),
    ),
    Variation(
        "header_3pl_405_no_allow",
        "deviation",
        "header",
        "3plship's 405 carries no Allow header.",
        (_f("t.wrong_method", "Allow", "header"),),
    ),
)

NOISES: tuple[Variation, ...] = (
    Variation(
        "noise_ids_alt",
        "noise",
        "identifiers",
        "Other identifier forms: ret_ + 26 mixed-case characters, wh_ + 24, whsec_ + 48 (all within the patterns).",
    ),
    Variation(
        "noise_request_ids_alt",
        "noise",
        "identifiers",
        "Request ids as req_ + 32 upper-case hex digits (x-compare: presence).",
    ),
    Variation(
        "noise_messages_german",
        "noise",
        "messages",
        "Every human-readable message in German: error.message, details.issue, details.problems[].issue, "
        "35up details[].message (x-compare: presence).",
    ),
    Variation(
        "noise_clock_4s",
        "noise",
        "timing",
        "The provider's clock runs 4 s ahead of real time (within the 5 s tolerance).",
    ),
    Variation(
        "noise_money_float",
        "noise",
        "numbers",
        "Integral money amounts written as 10.0 instead of 10 (refund_amount, restocking_fee, refund.amount); "
        "49.99 stays 49.99. The contract types them number.",
    ),
    Variation(
        "noise_key_order",
        "noise",
        "layout",
        "Keys of every JSON object in another (shuffled) order.",
    ),
    Variation(
        "noise_ratelimit_remaining",
        "noise",
        "headers",
        "X-RateLimit-Remaining counts from another starting point (the README lists rate-limit headers as not "
        "compared).",
    ),
    Variation(
        "noise_header_casing",
        "noise",
        "headers",
        "Every response header name in lower case (HTTP header names are case-insensitive).",
    ),
    Variation(
        "noise_json_layout",
        "noise",
        "layout",
        "Pretty-printed JSON (indent 2) with non-ASCII characters unescaped.",
    ),
    Variation(
        "noise_infra_headers",
        "noise",
        "headers",
        "Extra infrastructure headers a real API gateway adds (Server, Via, X-Request-Id, CF-Ray, "
        "Strict-Transport-Security, Cache-Control).",
    ),
)

VARIATIONS: dict[str, Variation] = {v.name: v for v in (*DEVIATIONS, *NOISES)}
DEVIATION_NAMES: tuple[str, ...] = tuple(v.name for v in DEVIATIONS)
NOISE_NAMES: tuple[str, ...] = tuple(v.name for v in NOISES)
