"""AWS client settings shared by the sqs and sns sources: Argo's accessKey/secretKey/sessionToken, roleARN, endpoint."""

from __future__ import annotations

from typing import Any

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.secrets import SecretNotFound, Secrets


async def client_args(spec: Any, secrets: Secrets, where: str, source: str, session: Any) -> dict[str, Any]:
    """``create_client`` keyword arguments: keys from the secrets (else the default AWS chain:
    environment, profile, instance role), then the role's temporary keys when ``roleARN`` is set."""
    out: dict[str, Any] = {"region_name": spec.region}
    if spec.endpoint:
        out["endpoint_url"] = spec.endpoint
    try:
        if spec.access_key is not None:
            out["aws_access_key_id"] = secrets.get(spec.access_key, f"{where}.accessKey")
            out["aws_secret_access_key"] = secrets.get(spec.secret_key, f"{where}.secretKey")
            token = getattr(spec, "session_token", None)
            if token is not None:
                out["aws_session_token"] = secrets.get(token, f"{where}.sessionToken")
    except SecretNotFound as err:  # it names the field: end the run with that one line
        raise SpecError([("", str(err))], source=source) from None
    if spec.role_arn:
        async with session.create_client("sts", **out) as sts:
            creds = (await sts.assume_role(RoleArn=spec.role_arn, RoleSessionName=f"argo-events-{source}"))
        c = creds["Credentials"]
        out.update(aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                   aws_session_token=c["SessionToken"])
    return out
