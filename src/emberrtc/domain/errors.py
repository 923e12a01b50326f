"""The one error catalogue: every failure a caller can see, with its SparkRTC code (spec 6.2).

Domain services raise these; the API layer maps each to its HTTP status and the
``{"error_code", "error_msg"}`` body. Nothing else decides a status code.
"""

from __future__ import annotations


class EmberError(Exception):
    """A failure with a SparkRTC error code, an HTTP status and a message for the caller."""

    code: str = "RTC.00002000"
    status: int = 500
    title: str = "InternalError"

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The ``error_msg``: the catalogue's title, then what exactly went wrong."""
        return f"{self.title}: {self.detail}" if self.detail else self.title


# --- 401/403/429: not in the 6.2 table; Ember's own codes in the same family -------------


class Unauthenticated(EmberError):
    """No credentials, or credentials that do not verify (spec 6.1: 401)."""

    code, status, title = "RTC.00001001", 401, "OperationUnauthorized"


class RateLimited(EmberError):
    """Table 1-2 throttling exceeded; the handler adds ``Retry-After``."""

    code, status, title = "RTC.00001023", 429, "TooManyRequests"

    def __init__(self, detail: str | None = None, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        super().__init__(detail)


class RouteNotFound(EmberError):
    code, status, title = "RTC.00001024", 404, "ResourceNotFound"


class MethodNotAllowed(EmberError):
    code, status, title = "RTC.00001025", 405, "MethodNotAllowed"


class RequestTimeout(EmberError):
    """The request's headers or body did not arrive in time (408); the connection is closed."""

    code, status, title = "RTC.00001031", 408, "RequestTimeout"


class PayloadTooLarge(EmberError):
    """A body over the configured limit (413), refused from ``Content-Length`` or while it streams."""

    code, status, title = "RTC.00001032", 413, "PayloadTooLarge"


class HeadersTooLarge(EmberError):
    """Request headers over the configured size or count (431)."""

    code, status, title = "RTC.00001033", 431, "RequestHeaderFieldsTooLarge"


class NotImplementedYet(EmberError):
    """A capability of the reference that this server does not provide yet (honest 501)."""

    code, status, title = "RTC.00002007", 501, "NotImplemented"


# --- spec 6.2, status 400 --------------------------------------------------------------


class MalformedRequestBody(EmberError):
    code, status, title = "RTC.00001002", 400, "MalformedRequestBody: json parsing failed"


class InvalidParameterValue(EmberError):
    code, status, title = "RTC.00001003", 400, "InvalidParameterValue"


class InvalidParameterCombination(EmberError):
    code, status, title = "RTC.00001004", 400, "InvalidParameterCombination"


class MissingParameter(EmberError):
    code, status, title = "RTC.00001005", 400, "MissingParameter"


class JobRunning(EmberError):
    code, status, title = "RTC.00001006", 400, "JobRunning: job exists and is not over"


class JobExceed(EmberError):
    code, status, title = "RTC.00001007", 400, "JobExceed"


class JobDone(EmberError):
    code, status, title = "RTC.00001009", 400, "JobDone: task canceled or completed"


class RuleInUse(EmberError):
    """A rule still referenced by the auto-record mode or a job that has not stopped (4.9.5)."""

    code, status, title = "RTC.00001013", 400, "RuleForbiddenDelete: rule is in use"


class RecordRuleExist(EmberError):
    """Another rule of the app already holds that ``obs_addr.location`` (4.9.1: one rule per location)."""

    code, status, title = "RTC.00001019", 400, "RecordRuleExist: record rule of the app exists"


class AppDeactivation(EmberError):
    code, status, title = "RTC.00001016", 400, "AppDeactivation: app is stopped"


class AppsExceed(EmberError):
    code, status, title = "RTC.00001017", 400, "AppsExceed: app num exceed"


class AppExist(EmberError):
    code, status, title = "RTC.00001020", 400, "AppExist: app exists"


class NoPermission(EmberError):
    code, status, title = "RTC.00001021", 403, "NoPermission: policy doesn't allow action to be performed"


class StatsParameterMissing(EmberError):
    """spec 5 (every statistics operation): a required query parameter is absent. SparkRTC answers these with
    its data service's code and a message of its own shape, ``Required String parameter 'app' is not
    present``, shown verbatim in every section-5 example."""

    code, status, title = "DATA.100011001", 400, "MissingParameter"

    def __init__(self, name: str, kind: str = "String") -> None:
        self.name = name
        super().__init__(f"Required {kind} parameter '{name}' is not present")

    @property
    def message(self) -> str:
        return self.detail or self.title


# --- spec 6.2, status 404 --------------------------------------------------------------


class JobNotExist(EmberError):
    code, status, title = "RTC.00001008", 404, "JobNotExist: job does not exist"


class RecordRuleNotExist(EmberError):
    code, status, title = "RTC.00001011", 404, "RecordRuleNotExist: record rule not exist under your app"


class BucketNotExist(EmberError):
    code, status, title = "RTC.00001014", 404, "BucketNotExist: bucket does not exist"


class AppNotExist(EmberError):
    code, status, title = "RTC.00001015", 404, "AppNotExist: app does not exist under your account"


class RoomNotExist(EmberError):
    """4.7.2: dismissing a room that is not running. 6.2 has no code of its own for it."""

    code, status, title = "RTC.00001026", 404, "RoomNotExist: room is not running"


# --- spec 6.2, status 500 --------------------------------------------------------------


class DbError(EmberError):
    code, status, title = "RTC.00002002", 500, "InternalError. DbErr"


class RecordingFault(EmberError):
    code, status, title = "RTC.00002006", 500, "InternalError. Live5xxError"


class InternalError(EmberError):
    code, status, title = "RTC.00002000", 500, "InternalError"
