"""Login, refresh, logout, the caller's own account, passwords and API keys."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from api import errors
from api.deps import WS, Caller, client_label, now
from api.v1.common import Id
from api.schemas import ApiKeyIn, ApiKeyOut, LoginIn, MeOut, Message, NewApiKeyOut, PasswordIn, RefreshIn, TokenOut
from governance.identity import service as identity

router = APIRouter(tags=["authentication"], responses=errors.responses(401, 422, 500))


@router.post("/auth/login", response_model=TokenOut, responses=errors.responses(429), summary="Log in with e-mail and password")
def login(body: LoginIn, request: Request, ws: WS) -> TokenOut:
    """Returns a short-lived access token and a refresh token. Failed attempts are audited and
    limited per account; too many in the window answer 429 with Retry-After."""
    result = ws.authenticator.login(email=body.email, password=body.password, now=now(), client=client_label(request))
    return TokenOut(access_token=result.access_token, refresh_token=result.refresh_token, expires_in=result.expires_in)


@router.post("/auth/refresh", response_model=TokenOut, summary="New tokens for a live session")
def refresh(body: RefreshIn, ws: WS) -> TokenOut:
    """The refresh token rotates; presenting one that was already used ends the session."""
    result = ws.authenticator.refresh(refresh_token=body.refresh_token, now=now())
    return TokenOut(access_token=result.access_token, refresh_token=result.refresh_token, expires_in=result.expires_in)


@router.post("/auth/logout", response_model=Message, summary="End the caller's session")
def logout(caller: Caller, ws: WS) -> Message:
    ws.authenticator.logout(principal=caller, now=now())
    return Message(detail="logged out; every token of this session has stopped working")


@router.get("/me", response_model=MeOut, summary="The caller's account and roles")
def me(caller: Caller, ws: WS) -> MeOut:
    user = identity.get_user(engine=ws, email=caller.email)
    roles = [{"role": r.value, "dataset": d} for r, d in sorted(caller.actor.roles)]
    return MeOut(id=user.id, email=user.email, email_verified=user.email_verified, organisation=user.organisation,
                 site=user.site, roles=roles, authenticated_by=caller.kind,  # type: ignore[arg-type]
                 key_datasets=sorted(caller.datasets) if caller.datasets is not None else None)


@router.put("/me/password", response_model=Message, responses=errors.responses(403), summary="Set the caller's password")
def set_password(body: PasswordIn, caller: Caller, ws: WS) -> Message:
    """Needs the current password; ends every session of the account."""
    ws.authenticator.set_password(actor=caller.actor, now=now(), email=caller.email, password=body.password,
                                  current=body.current_password)
    return Message(detail="password changed; log in again")


@router.get("/me/api-keys", response_model=list[ApiKeyOut], summary="The caller's API keys")
def list_api_keys(caller: Caller, ws: WS) -> list[ApiKeyOut]:
    return [ApiKeyOut.of(k) for k in ws.authenticator.list_api_keys(actor=caller.actor)]


@router.post("/me/api-keys", response_model=NewApiKeyOut, status_code=status.HTTP_201_CREATED, summary="Create an API key")
def create_api_key(body: ApiKeyIn, caller: Caller, ws: WS) -> NewApiKeyOut:
    """For loaders: the key is shown in this answer only. `datasets` limits what it may check."""
    record, key = ws.authenticator.create_api_key(actor=caller.actor, now=now(), name=body.name, datasets=body.datasets)
    return NewApiKeyOut.model_validate({**ApiKeyOut.of(record).model_dump(), "key": key})


@router.delete("/me/api-keys/{key_id}", response_model=ApiKeyOut, responses=errors.responses(404), summary="Revoke an API key")
def revoke_api_key(key_id: Id, caller: Caller, ws: WS) -> ApiKeyOut:
    return ApiKeyOut.of(ws.authenticator.revoke_api_key(actor=caller.actor, now=now(), key_id=key_id))
