"""OpenAI's error JSON ``{"error": {"message", "type", "param", "code"}}`` and the
mapping from misuan's exception tree to HTTP statuses."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.responses import JSONResponse

from .. import errors as E


@dataclass
class ApiError(Exception):
    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def unsupported(param: str, what: str) -> ApiError:
    return ApiError(400, f"{param}: {what} is not supported by misuan", param=param, code="unsupported_parameter")


def model_not_found(model: str) -> ApiError:
    return ApiError(404, f"The model {model!r} does not exist or you do not have access to it.", param="model", code="model_not_found")


def busy(retry_after: int, what: str = "the model is busy") -> ApiError:
    return ApiError(
        429,
        f"{what}; retry in {retry_after} s",
        type="rate_limit_error",
        code="rate_limit_exceeded",
        headers={"retry-after": str(retry_after)},
    )


#: leading words of the engines' InvalidInput messages -> the request field at fault
_PARAM_OF = (
    ("max_tokens", "max_tokens"),
    ("temperature", "temperature"),
    ("top_p", "top_p"),
    ("top-p", "top_p"),
    ("seed", "seed"),
    ("prompt", "messages"),
    ("empty prompt", "messages"),
    ("messages", "messages"),
    ("each message", "messages"),
)


def param_of(message: str) -> str | None:
    low = message.lower()
    return next((p for word, p in _PARAM_OF if low.startswith(word)), None)


def from_misuan(exc: BaseException, *, started: bool, retry_after: int) -> ApiError:
    """An error of the backend as the client sees it. Once an MPC job started, a
    failure is never worth retrying automatically (``x-should-retry: false``)."""
    no_retry = {"x-should-retry": "false"} if started else {}
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, E.InvalidInput):
        return ApiError(400, str(exc), param=param_of(str(exc)), headers=no_retry)
    if isinstance(exc, E.AuthError):
        return ApiError(401, f"the cluster refused the proxy's key: {exc}", type="authentication_error", headers=no_retry)
    if isinstance(exc, (E.PermissionDenied, E.NotFound)):
        return ApiError(404, str(exc), code="model_not_found", headers=no_retry)
    if started:
        return ApiError(500, f"the MPC job failed: {type(exc).__name__}: {exc}", type="server_error", code="mpc_failed", headers=no_retry)
    if isinstance(exc, (E.Conflict,)):
        return busy(retry_after, str(exc))
    if isinstance(exc, (E.NodeError, E.ClusterError)):
        return ApiError(
            503,
            f"the cluster is unavailable: {exc}",
            type="server_error",
            code="cluster_unavailable",
            headers={"retry-after": str(retry_after)},
        )
    return ApiError(500, f"{type(exc).__name__}: {exc}", type="server_error", headers={"x-should-retry": "false"})
