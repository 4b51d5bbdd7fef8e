"""Every error code a result line can carry, in one enum, with whether a re-run can help.

Codes are stable strings (they are counted downstream and appear in ``results.jsonl``
and ``summary.json``); :class:`ErrorCode` is a ``str`` enum so a code compares equal to
its text.

>>> ErrorCode.DUPLICATE_ID == "duplicate_id", ErrorCode("rate_limited").retryable
(True, True)
>>> sorted(c.value for c in ErrorCode if c.retryable)
['rate_limited', 'retries_exhausted']
"""

from __future__ import annotations

import enum


class ErrorCode(str, enum.Enum):
    """One per-line outcome that is not a success. ``retryable``: a later re-run may succeed."""

    # the line itself: never sent, a re-run gives the same answer
    INVALID_JSON = "invalid_json"
    INVALID_UTF8 = "invalid_utf8"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_ID = "missing_id"
    DUPLICATE_ID = "duplicate_id"
    UNKNOWN_URL = "unknown_url"
    UNSUPPORTED_METHOD = "unsupported_method"
    LINE_TOO_LONG = "line_too_long"
    INVALID_REQUEST = "invalid_request"
    MODEL_NOT_ALLOWED = "model_not_allowed"
    MISSING_CREDENTIALS = "missing_credentials"
    # the provider's answer
    PROVIDER_ERROR = "provider_error"
    RATE_LIMITED = "rate_limited"
    RETRIES_EXHAUSTED = "retries_exhausted"

    @property
    def retryable(self) -> bool:
        return self in (ErrorCode.RATE_LIMITED, ErrorCode.RETRIES_EXHAUSTED)

    def __str__(self) -> str:
        return self.value


INVALID_JSON = ErrorCode.INVALID_JSON.value
INVALID_UTF8 = ErrorCode.INVALID_UTF8.value
NOT_AN_OBJECT = ErrorCode.NOT_AN_OBJECT.value
MISSING_ID = ErrorCode.MISSING_ID.value
DUPLICATE_ID = ErrorCode.DUPLICATE_ID.value
UNKNOWN_URL = ErrorCode.UNKNOWN_URL.value
UNSUPPORTED_METHOD = ErrorCode.UNSUPPORTED_METHOD.value
LINE_TOO_LONG = ErrorCode.LINE_TOO_LONG.value
INVALID_REQUEST = ErrorCode.INVALID_REQUEST.value
MODEL_NOT_ALLOWED = ErrorCode.MODEL_NOT_ALLOWED.value
MISSING_CREDENTIALS = ErrorCode.MISSING_CREDENTIALS.value
PROVIDER_ERROR = ErrorCode.PROVIDER_ERROR.value
RATE_LIMITED = ErrorCode.RATE_LIMITED.value
RETRIES_EXHAUSTED = ErrorCode.RETRIES_EXHAUSTED.value
RETRYABLE_ERROR_CODES = tuple(c.value for c in ErrorCode if c.retryable)


# -- per-job outcomes: what ends an attempt, and the status the registry records --------
class JobFailed(Exception):
    """The job could not complete; the message is one line naming the reason.

    Everything already written stays: a rerun with the same output resumes.
    """

    status = "failed"


class JobRejected(JobFailed):
    """The job cannot start at all (its input is missing, replaced or not JSONL): it ends
    ``rejected`` before taking its lease, and rerunning it gives the same answer."""

    status = "rejected"


class JobSuperseded(JobFailed):
    """A newer attempt owns the job (this one's lease was taken over): this attempt stops
    and records nothing; the newer one's outcome is the job's. Never worth retrying."""

    status = ""
